"""Personal follows: a member follows artists (/follow) and gets a direct message when a story about one of
them is posted.

No Discord and no SQL here: the cog (cogs/follows.py) calls these functions with plain values, the pipeline
queues (bot/pipeline.py), the DM worker (`DirectMessageWorker` in bot/delivery.py) sends and reports back, and
the rows live in the store (`store.follows`, `store.direct_messages`).

What a follower gets:
- A story is DMed when it may be posted at all: stored after the follow, not backfill, published (else first
  seen) within max_age_hours. Whether a channel of a server the member is in subscribes to it does not matter:
  a follow is the member's own subscription, global, not per server.
- One DM per story cluster, whatever number of their follows match (V and BTS: one DM for a V story). The DM
  names the followed artist the story is about, one the story names itself first (V rather than BTS).
- At most `max_dms_per_day` DMs of their own per UTC day; the day's further stories go into one summary DM
  (headlines with links), sent when the day ends.
- Discord refuses a DM (403: 50007, DMs closed): the member is paused. What waits for them is dropped, nothing
  is queued or retried, and they are told once, in an ephemeral reply to their next command; /follow resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bot.config import DeliveryConfig
from bot.delivery_queue import (
    DUE_LIMIT,
    MAX_SEND_ATTEMPTS,
    TRANSIENT_BACKOFF,
    _backoff,
    delivery_nonce,
    postable_stories,
)
from bot.embed import build_headlines_embed
from bot.i18n import text
from bot.models import (
    DM_MESSAGE,
    DM_SUMMARY,
    DailySummary,
    DirectMessage,
    Follow,
    Follower,
    Outgoing,
    Story,
    StoryFacts,
)
from bot.store import Store
from bot.subscriptions import ExpandArtist
from bot.text import escape_discord, one_line
from bot.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_FOLLOWS = 25  # artists one member may follow: /following stays one short list, /unfollow one choice list
DMS_CLOSED = 50007  # Discord: "Cannot send messages to this user"
PAUSED = "direct messages paused"


class TooManyFollows(Exception):
    """The member follows MAX_FOLLOWS artists already."""

    def __init__(self, most: int = MAX_FOLLOWS) -> None:
        super().__init__(f"a member may follow {most} artists")
        self.most = most


@dataclass
class FollowResult:
    created: bool  # False: they followed the artist already
    resumed: bool  # their DMs were paused and are back on


# --- the day a DM counts against ------------------------------------------------------------------------------


def utc_day(moment: datetime) -> str:
    """The UTC day of a moment, as the queue keeps it (YYYY-MM-DD)."""
    return moment.astimezone(UTC).date().isoformat()


def day_end(day: str) -> datetime:
    """When a UTC day ends: its summary is due then."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(), tzinfo=UTC)


def dm_nonce(user_id: int, story_key: str) -> str:
    """The nonce of a member's DM of a story: the same for every resend (the recipient stands for the channel)."""
    return delivery_nonce(user_id, "dm\n" + story_key)


def summary_nonce(user_id: int, day: str) -> str:
    return delivery_nonce(user_id, "summary\n" + day)


# --- matching a story -----------------------------------------------------------------------------------------


class FollowIndex:
    """Follows by every artist id that satisfies them (a group's includes its members), as SubscriptionIndex
    does for channels; `expand` None: no artist index, an artist's own id only."""

    def __init__(self, follows: Iterable[Follow], expand: ExpandArtist | None) -> None:
        self._by_artist: dict[str, list[Follow]] = {}
        expansion: dict[str, set[str]] = {}
        for follow in follows:
            if follow.artist_id not in expansion:
                members = expand(follow.artist_id) if expand is not None else ()
                expansion[follow.artist_id] = {follow.artist_id, *members}
            for artist_id in expansion[follow.artist_id]:
                self._by_artist.setdefault(artist_id, []).append(follow)

    def matching(self, story: StoryFacts) -> dict[int, Follow]:
        """Per member, the follow that speaks for the story's DM: among theirs that it matches (stored after
        the follow, about its artist or a member of its group), one whose artist the story names itself, then
        the oldest."""
        best: dict[int, Follow] = {}
        for artist_id in story.artists:
            for follow in self._by_artist.get(artist_id, ()):
                if follow.start_story_id >= story.id:
                    continue
                current = best.get(follow.user_id)
                if current is None or _rank(follow, story) < _rank(current, story):
                    best[follow.user_id] = follow
        return best


def _covers(artist_id: str, named: set[str], expand: ExpandArtist | None) -> bool:
    """Whether a follow of `artist_id` matches a story naming `named` (itself, or a member of the group)."""
    return artist_id in named or (expand is not None and not named.isdisjoint(expand(artist_id)))


def _rank(follow: Follow, story: StoryFacts) -> tuple[bool, str, str]:
    created = follow.created_at.isoformat() if follow.created_at else ""
    return (follow.artist_id not in story.artists, created, follow.artist_id)


# --- queueing -------------------------------------------------------------------------------------------------


async def queue_direct_messages(
    store: Store,
    story_ids: Sequence[int],
    *,
    config: DeliveryConfig,
    expand: ExpandArtist | None,
    now: datetime | None = None,
) -> int:
    """Queue one DM per (member, story cluster) for the follows these stories match (see the module
    docstring): a DM of its own while the member's DMs queued today are under `config.max_dms_per_day`, else
    a line of the day's summary. One transaction. Returns the number queued (DMs and summary lines)."""
    if not story_ids:
        return 0
    now = now or utcnow()
    stories = await postable_stories(store, list(story_ids), config=config, now=now)
    if not stories:
        return 0
    day = utc_day(now)
    queued = 0
    async with store.transaction():
        # only the follows of artists these stories are about (a group's follow: about one of its members)
        named = {artist_id for story in stories for artist_id in story.artists}
        wanted = [a for a in await store.follows.followed_artists() if _covers(a, named, expand)]
        if not wanted:
            return 0
        follows = await store.follows.to_match(artist_ids=wanted, below_story_id=max(s.id for s in stories))
        if not follows:
            return 0
        index = FollowIndex(follows, expand)
        matches = [(story, index.matching(story)) for story in stories]
        members = sorted({user_id for _, found in matches for user_id in found})
        today = await store.direct_messages.messages_of_day(members, day)
        for story, found in matches:
            for user_id, follow in found.items():
                kind = DM_MESSAGE if today.get(user_id, 0) < config.max_dms_per_day else DM_SUMMARY
                dm = DirectMessage(
                    user_id=user_id,
                    cluster_id=story.cluster_id,
                    story_id=story.id,
                    artist_id=follow.artist_id,
                    day=day,
                    kind=kind,
                    nonce=dm_nonce(user_id, story.key),
                    created_at=now,
                )
                if not await store.direct_messages.add(dm):
                    continue  # the member has that story cluster already
                queued += 1
                if kind == DM_MESSAGE:
                    today[user_id] = today.get(user_id, 0) + 1
                else:
                    await store.direct_messages.add_summary(
                        DailySummary(
                            user_id=user_id,
                            day=day,
                            nonce=summary_nonce(user_id, day),
                            next_attempt_at=day_end(day),
                            created_at=now,
                        )
                    )
    if queued:
        log.info("queued %d direct messages for %d stories", queued, len(stories))
    return queued


# --- following and unfollowing --------------------------------------------------------------------------------


async def follow_artist(
    store: Store, user_id: int, artist_id: str, *, locale: str | None, now: datetime | None = None
) -> FollowResult:
    """Follow an artist: stories stored from now on are DMed. Following (again, or anything) resumes a
    paused member, and their locale is the DMs' from now on. TooManyFollows past MAX_FOLLOWS."""
    now = now or utcnow()
    async with store.transaction():
        follows = await store.follows.of_user(user_id)
        if len(follows) >= MAX_FOLLOWS and all(f.artist_id != artist_id for f in follows):
            raise TooManyFollows()
        created = await store.follows.add(user_id, artist_id, locale=locale, at=now)
        resumed = await store.follows.resume(user_id)
    if resumed:
        log.info("member %d resumed their direct messages", user_id)
    return FollowResult(created=created, resumed=resumed)


async def unfollow_artist(
    store: Store, user_id: int, artist_id: str, *, expand: ExpandArtist | None = None
) -> bool:
    """Stop following an artist. A DM it queued that is not sent yet still goes when another of the member's
    follows matches its story (`expand`: the artist index's); otherwise it is dropped. False when the member
    did not follow the artist."""
    async with store.transaction():
        if not await store.follows.remove(user_id, artist_id):
            return False
        waiting = [
            dm for dm in await store.direct_messages.pending_of_user(user_id) if dm.artist_id == artist_id
        ]
        if not waiting:
            return True
        index = FollowIndex(await store.follows.of_user(user_id), expand)
        stories = {s.id: s for s in await store.deliveries.story_facts(sorted({d.story_id for d in waiting}))}
        dropped: list[int] = []
        for dm in waiting:
            story = stories.get(dm.story_id)
            heir = index.matching(story).get(user_id) if story is not None else None
            if heir is not None:
                await store.direct_messages.set_artist(dm.id, heir.artist_id)
            else:
                dropped.append(dm.id)
        await store.direct_messages.drop(dropped, reason="unfollowed")
    return True


async def member_follows(store: Store, user_id: int) -> tuple[Follower | None, list[Follow]]:
    """The member (None: never followed anyone) and their follows, oldest first."""
    return await store.follows.follower(user_id), await store.follows.of_user(user_id)


async def take_pause_notice(store: Store, user_id: int, *, now: datetime | None = None) -> bool:
    """True once for a paused member who has not been told (the caller tells them). A read first: nearly every
    member is not paused, and a command should not wait for the write lock to learn that."""
    if not await store.follows.needs_notice(user_id):
        return False
    return await store.follows.claim_notice(user_id, at=now or utcnow())


async def give_back_pause_notice(store: Store, user_id: int) -> None:
    """Telling them failed: their next command tells them."""
    await store.follows.release_notice(user_id)


# --- what a DM says (the member's locale; the story's own text stays as the outlet wrote it) -----------------


def story_dm_text(artist_label: str, locale: object) -> str:
    """The words above a story DM's embed (the embed is the channel post's, its words in the member's locale)."""
    return text("follow.dm_intro", locale, artist=escape_discord(one_line(artist_label)))


def summary_dm(stories: Sequence[Story], locale: object, *, most_per_day: int) -> tuple[str, dict[str, Any]]:
    """A daily summary DM: its words, and the embed listing the day's other stories (headline, link, outlet)."""
    embed = build_headlines_embed(
        text("follow.summary_title", locale),
        stories,
        more=lambda count: text("common.and_more", locale, count=count),
        locale=locale,
    )
    return text("follow.summary", locale, max=most_per_day), embed


# --- sending --------------------------------------------------------------------------------------------------


async def due_direct_messages(
    store: Store, *, now: datetime | None = None, user_id: int | None = None, limit: int = DUE_LIMIT
) -> dict[int, list[Outgoing]]:
    """What may be sent now, per member, oldest first: their story DMs, then their summaries whose day is over.
    A member whose oldest DM waits (backoff) gets nothing: their DMs keep their order."""
    now = now or utcnow()
    result: dict[int, list[Outgoing]] = {}
    blocked: set[int] = set()
    for dm in await store.direct_messages.pending_messages(user_id=user_id, limit=limit):
        if dm.user_id in blocked:
            continue
        if dm.next_attempt_at is not None and dm.next_attempt_at > now:
            blocked.add(dm.user_id)
            continue
        result.setdefault(dm.user_id, []).append(dm)
    for summary in await store.direct_messages.due_summaries(now=now, user_id=user_id, limit=limit):
        if summary.user_id not in blocked:
            result.setdefault(summary.user_id, []).append(summary)
    return result


async def record_dm_sent(
    store: Store, item: Outgoing, message_id: int, *, now: datetime | None = None
) -> None:
    """The DM is on Discord (a summary: with every line it carried)."""
    await store.direct_messages.mark_sent(item, message_id, at=now or utcnow())


async def record_dms_closed(store: Store, user_id: int, reason: str, *, now: datetime | None = None) -> bool:
    """Discord refused a DM to the member (their DMs are closed): pause them and drop what waits for them;
    nothing is retried until they /follow again. Returns False when they were paused already."""
    async with store.transaction():
        paused = await store.follows.pause(user_id, reason=reason, at=now or utcnow())
        await store.direct_messages.drop_user(user_id, reason=f"{PAUSED}: {reason}")
    if paused:
        log.info(
            "member %d cannot be reached by direct message (%s): their follows are paused", user_id, reason
        )
    return paused


async def record_dm_transient_failure(
    store: Store,
    item: Outgoing,
    error: str,
    *,
    retry_after: float | None = None,
    now: datetime | None = None,
) -> bool:
    """A 429, 5xx or network failure: retry later (the server's delay when it gave one, else backoff), up to
    MAX_SEND_ATTEMPTS, as for channel posts. Returns True when it will be retried, False when given up."""
    now = now or utcnow()
    attempts = max(item.attempts, 1)
    if attempts >= MAX_SEND_ATTEMPTS:
        await record_dm_finished(
            store, item, status="failed", error=f"gave up after {attempts} attempts: {error}"
        )
        return False
    delay = (
        timedelta(seconds=retry_after) if retry_after is not None else _backoff(attempts, TRANSIENT_BACKOFF)
    )
    await store.direct_messages.retry_later(item, at=now + delay, error=error)
    return True


async def record_dm_finished(store: Store, item: Outgoing, *, status: str, error: str) -> None:
    """Never sent: `failed` (Discord refused it: a 400, or too many tries) or `dropped` (no longer wanted)."""
    await store.direct_messages.finish(item, status=status, error=error)
    if status == "failed":
        log.warning("direct message %s to member %d failed: %s", _describe(item), item.user_id, error)


def _describe(item: Outgoing) -> str:
    if isinstance(item, DailySummary):
        return f"summary of {item.day}"
    return f"of story {item.story_id}"
