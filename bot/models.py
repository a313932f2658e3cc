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
    content_html: str = ""  # kept so a story can be re-enriched when the code or artist data improves
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
