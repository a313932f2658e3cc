"""Records that cross pipeline stages: plain values in, plain values out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PLATFORMS = ("twitter", "x", "bluesky", "tiktok", "instagram", "threads", "reddit")


@dataclass(frozen=True)
class ArtistRef:
    """An artist as a story or a search result names it (contract shape)."""

    id: str
    name: str
    group: str | None  # display name of the artist's main group; None for groups and soloists

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "group": self.group}


@dataclass(frozen=True)
class Quote:
    """The text of one social post that an article embeds: a fan quote."""

    text: str
    author: str
    handle: str
    platform: str  # one of PLATFORMS
    url: str
    score: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "author": self.author,
            "handle": self.handle,
            "platform": self.platform,
            "url": self.url,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quote:
        return cls(
            text=data["text"],
            author=data.get("author", ""),
            handle=data.get("handle", ""),
            platform=data.get("platform", ""),
            url=data.get("url", ""),
            score=float(data.get("score", 0.0)),
        )


@dataclass
class FeedEntry:
    """One item of a feed as parsed, before enrichment. HTML fields are raw (hostile) feed text."""

    title: str
    link: str
    guid: str | None = None
    guid_is_permalink: bool = False
    published: datetime | None = None  # timezone-aware UTC
    summary_html: str = ""
    content_html: str = ""
    categories: list[str] = field(default_factory=list)
    media_images: list[str] = field(default_factory=list)  # media:content / media:thumbnail, in feed order
    enclosure_images: list[str] = field(default_factory=list)
    author: str | None = None


@dataclass
class Story:
    """A story as stored and posted: one row per story, whatever number of feeds carry it."""

    key: str  # identity: the feed's guid where it is a real id, else the canonical link
    title: str  # plain text
    url: str
    source: str  # the outlet's display name, e.g. "Koreaboo"
    published: datetime | None = None
    summary: str = ""  # plain text, a few sentences, no HTML
    image: str | None = None
    quotes: list[Quote] = field(default_factory=list)
    artists: list[ArtistRef] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    # the article's clean text (bot.text.html_to_text), stored compressed for `kpopnews retag` until
    # `[storage] keep_text_days`; not read back with the story (StoryTable.texts_after reads it)
    text: str = ""
    canonical_url: str = ""
    id: int | None = None
    source_id: int | None = None
    first_seen: datetime | None = None
    cluster_id: int | None = None

    def to_json(self, embed: dict[str, Any] | None = None) -> dict[str, Any]:
        """The contract's `preview --json` / `search --json` shape."""
        data: dict[str, Any] = {
            "title": self.title,
            "url": self.url,
            "source": self.source,
            "published": self.published.isoformat() if self.published else None,
            "image": self.image,
            "summary": self.summary,
            "artists": [a.to_json() for a in self.artists],
            "quotes": [q.to_json() for q in self.quotes],
        }
        if embed is not None:
            data["embed"] = embed
        return data


@dataclass
class Source:
    """A feed the bot polls, with its fetch state and health."""

    url: str
    name: str
    id: int | None = None
    owner_guild_id: int | None = None  # None: the operator's configuration; else the server that added it
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_status: str | None = None  # "ok", "not_modified", "error"
    last_error: str | None = None
    last_fetched_at: datetime | None = None
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    next_poll_at: datetime | None = None
    disabled_reason: str | None = None
    color: int | None = None
    probe_at: datetime | None = (
        None  # disabled by the poller (failures, 410): its next probe; None: not probed
    )
    probes: int = 0  # probes that failed since it was disabled
    redirect_to: str | None = None  # where its feed redirected permanently at the last polls (not moved yet)
    redirects_seen: int = 0  # polls in a row that answered that redirect
    moved_from: str | None = None  # the address it had before a permanent redirect moved it
    moved_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None


STATUS_OK, STATUS_UNHEALTHY, STATUS_PAUSED = "ok", "unhealthy", "paused"  # a subscription's health
# Where a channel's posts land: a message, a message that is then published, or a forum post of its own.
CHANNEL_TEXT, CHANNEL_ANNOUNCEMENT, CHANNEL_FORUM = "text", "announcement", "forum"
CHANNEL_KINDS = (CHANNEL_TEXT, CHANNEL_ANNOUNCEMENT, CHANNEL_FORUM)


@dataclass
class Subscription:
    """A channel's wish for stories: every story, or one artist's, or one source's; all of them or trending."""

    id: int
    guild_id: int
    channel_id: int
    artist_id: str | None  # None: every artist
    source_id: int | None  # None: every source
    only_trending: bool
    created_at: datetime | None
    start_story_id: int  # stories with an id up to this were stored before it and are never posted to it
    status: str = STATUS_OK  # ok | unhealthy | paused
    last_error: str | None = None  # what went wrong and what to do
    last_error_at: datetime | None = None
    failures: int = 0
    retry_at: datetime | None = None
    last_post_at: datetime | None = None
    created_by: int | None = None
    source_name: str | None = None  # joined from sources for display
    kind: str = (
        CHANNEL_TEXT  # text | announcement | forum (CHANNEL_KINDS), as the channel was when subscribed
    )
    ping_role_id: int | None = None  # a role mentioned with each post
    keywords: list[str] = field(default_factory=list)  # words or phrases, any one of which a story must name
    exclude: list[str] = field(default_factory=list)  # words or phrases a story must not name
    threads: bool = False  # open a discussion thread on each post
    publish_limited_at: datetime | None = None  # the channel last hit Discord's publish limit then
    publish_resumes_at: datetime | None = None  # and publishes nothing before this


@dataclass(frozen=True)
class PostOptions:
    """What a subscription asks for besides which stories: where they land and what comes with them."""

    kind: str = CHANNEL_TEXT  # the channel's kind (CHANNEL_KINDS)
    ping_role_id: int | None = None
    keywords: tuple[str, ...] = ()  # as parsed by bot.keywords.parse_keywords
    exclude: tuple[str, ...] = ()
    threads: bool = False  # a discussion thread on each post (text channels; a forum post is one already)


@dataclass
class Delivery:
    """One story cluster for one channel: posted once, whatever number of the channel's subscriptions match."""

    story_id: int
    cluster_id: int
    guild_id: int
    channel_id: int
    subscription_id: int | None  # the oldest subscription that matched; None once it is gone
    nonce: str  # the same for every resend, so Discord makes the message once
    id: int = 0  # 0 until stored
    status: str = "pending"  # pending | sent | failed | dropped
    attempts: int = 0
    next_attempt_at: datetime | None = None  # None: due now
    message_id: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
    also_on: list[str] = field(default_factory=list)  # other outlets that carried the cluster
    edit_pending: bool = False  # the sent message must be edited to show `also_on`
    edits: int = 0
    attempt_started_at: datetime | None = None  # set before a send: after a crash, it may be on Discord
    story_source: str | None = None  # the outlet of its story (joined from stories)
    kind: str = CHANNEL_TEXT  # how it is posted (the channel's kind, CHANNEL_KINDS)
    ping_role_ids: list[int] = field(default_factory=list)  # roles mentioned with the post
    thread_id: int | None = None  # the forum post, or the discussion thread opened on the message
    thread_state: str | None = None  # None: no discussion thread asked; else a FOLLOW_UP_* state
    publish_state: str | None = (
        None  # None: not an announcement channel; else a FOLLOW_UP_* or PUBLISH_* state
    )


@dataclass
class HeldPost:
    """A channel's post of a story cluster, as queueing reads it: enough to know the channel has the cluster and
    to name another outlet under the post (a Delivery has much more; a busy story's cluster has thousands)."""

    id: int
    channel_id: int
    cluster_id: int
    story_id: int
    story_source: str | None  # the outlet of its story
    status: str
    also_on: list[str]
    edits: int
    edit_pending: bool


# What happens after a post, each exactly once: a discussion thread opened on it, its publishing.
FOLLOW_UP_PENDING = "pending"  # to do once the post is sent
FOLLOW_UP_ATTEMPTED = "attempted"  # the request may have reached Discord (committed before it is made)
FOLLOW_UP_DONE = "done"
FOLLOW_UP_FAILED = "failed"  # Discord refused; not tried again (the reason is on the subscription)
PUBLISH_LIMITED = "limited"  # the channel's publish limit was reached: the post stays unpublished


@dataclass
class StoryFacts:
    """What matching a stored story to subscriptions needs to know of it."""

    id: int
    key: str
    cluster_id: int  # its cluster, or its own id while unclustered
    source_name: str
    moment: datetime | None  # published, else first seen
    backfill: bool
    artists: set[str]
    sources: set[int]  # every source that carried it
    title: str = ""  # keyword filters look at the headline and the summary
    summary: str = ""


@dataclass(frozen=True)
class TrendingOffer:
    """A cluster for the trending-only subscriptions: it just crossed the trending line (all its stories are
    offered), or it crossed earlier and has stories new since then (only those are)."""

    cluster_id: int
    story_ids: list[int]  # in id order: the first one leads
    last_story_id: int  # the cluster's newest story: once offered, only later ones are offered again
    points: float  # its trend points when it crossed


DM_MESSAGE, DM_SUMMARY = "message", "summary"  # a followed story's DM: its own message, or a summary line


@dataclass
class Follower:
    """A member who follows artists (/follow): what their direct messages need."""

    user_id: int
    locale: str | None = None  # their Discord locale at their last /follow: the DMs' fixed words
    dm_channel_id: int | None = None  # the bot's DM channel with them, once opened
    status: str = STATUS_OK  # ok | paused (their DMs are closed: nothing is sent until they /follow again)
    paused_at: datetime | None = None
    paused_reason: str | None = None
    told_at: datetime | None = None  # when they were told of the pause
    created_at: datetime | None = None

    @property
    def paused(self) -> bool:
        return self.status == STATUS_PAUSED


@dataclass
class Follow:
    """A member's wish for a direct message when a story about an artist (or a member of the group) is posted."""

    user_id: int
    artist_id: str
    created_at: datetime | None
    start_story_id: int  # stories with an id up to this were stored before the follow: never DMed for it


@dataclass
class DirectMessage:
    """One story cluster for one member: a DM of its own, or (kind summary) a line of that day's summary."""

    user_id: int
    cluster_id: int
    story_id: int
    artist_id: str  # the followed artist the DM names
    day: str  # the UTC day it was queued, YYYY-MM-DD
    kind: str  # DM_MESSAGE | DM_SUMMARY
    nonce: str
    id: int = 0  # 0 until stored
    status: str = "pending"  # pending | sent | failed | dropped
    attempts: int = 0
    next_attempt_at: datetime | None = None  # None: due now
    attempt_started_at: datetime | None = None  # set before a send: after a crash, it may be on Discord
    message_id: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None


@dataclass
class DailySummary:
    """One member's summary DM of a day's stories past the daily cap; due when the day ends."""

    user_id: int
    day: str
    nonce: str
    next_attempt_at: datetime
    id: int = 0
    status: str = "pending"
    attempts: int = 0
    attempt_started_at: datetime | None = None
    message_id: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None


Outgoing = DirectMessage | DailySummary  # what one DM send carries: a story, or a day's summary
