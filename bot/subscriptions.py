"""Subscriptions (which channel wants which stories) and the delivery queue they produce, with its health.

No Discord here: the delivery worker (bot/delivery.py) and the cogs call these functions with plain values.
A delivery is one (channel, story cluster) pair, unique, so a channel gets a story once whatever number of its
subscriptions match it; its nonce makes a resend after a crash idempotent on Discord's side.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from yarl import URL

from bot.address_guard import UnsafeAddress, check_public_url
from bot.config import DeliveryConfig, PollingConfig
from bot.fetch import Fetcher
from bot.models import Source
from bot.parse import FeedError, parse_feed
from bot.store import Store
from bot.text import truncate
from bot.timeutil import from_iso, to_iso, utcnow

log = logging.getLogger(__name__)

STATUS_OK, STATUS_UNHEALTHY, STATUS_PAUSED = "ok", "unhealthy", "paused"

MAX_FORBIDDEN_FAILURES = 4  # refusals (403) in a row before a subscription is paused until an admin acts
FORBIDDEN_BACKOFF = (timedelta(minutes=5), timedelta(hours=6))  # first retry after a 403, and the cap
MAX_SEND_ATTEMPTS = 8  # transient failures (5xx, network) before one delivery is given up
TRANSIENT_BACKOFF = (timedelta(seconds=2), timedelta(minutes=10))
MAX_ALSO_ON_EDITS = 3  # a message is edited for "Also on" a few times at most, not forever
MAX_ALSO_ON = 5  # outlets named in one "Also on" line
NONCE_MAX = 25  # Discord's limit on a message nonce
GUILD_LEFT_REASON = "the server that added it removed the bot"
UNUSED_REASON = "no subscription uses it any more"
REVIVABLE = (GUILD_LEFT_REASON, UNUSED_REASON)  # a server adding the feed again switches it back on
MAX_FEED_URL = 2000


class SubscriptionError(Exception):
    """A subscription request that cannot be done; the text says why and what to do (shown to the admin)."""


@dataclass
class Subscription:
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


@dataclass
class SubscribeResult:
    subscription: Subscription
    created: bool  # False: it existed; `changed` says whether only_trending or a pause was reset
    changed: bool = False


@dataclass
class Delivery:
    id: int
    story_id: int
    cluster_id: int
    guild_id: int
    channel_id: int
    subscription_id: int | None
    status: str  # pending | sent | failed | dropped
    attempts: int
    next_attempt_at: datetime | None
    nonce: str
    message_id: int | None
    last_error: str | None
    created_at: datetime | None
    sent_at: datetime | None
    also_on: list[str] = field(default_factory=list)
    edit_pending: bool = False
    edits: int = 0
    attempt_started_at: datetime | None = None


# --- subscriptions ------------------------------------------------------------------------------------------


def _subscription_from_row(row: Any) -> Subscription:
    keys = row.keys()
    return Subscription(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        artist_id=row["artist_id"],
        source_id=row["source_id"],
        only_trending=bool(row["only_trending"]),
        created_at=from_iso(row["created_at"]),
        start_story_id=row["start_story_id"],
        status=row["status"],
        last_error=row["last_error"],
        last_error_at=from_iso(row["last_error_at"]),
        failures=row["failures"],
        retry_at=from_iso(row["retry_at"]),
        last_post_at=from_iso(row["last_post_at"]),
        created_by=row["created_by"],
        source_name=row["source_name"] if "source_name" in keys else None,
    )


_SELECT_SUBSCRIPTIONS = (
    "SELECT s.*, src.name AS source_name FROM subscriptions s LEFT JOIN sources src ON src.id = s.source_id"
)


async def max_story_id(store: Store) -> int:
    async with store.db.execute("SELECT COALESCE(MAX(id), 0) FROM stories") as cursor:
        row = await cursor.fetchone()
    return int(row[0])


async def add_subscription(
    store: Store,
    *,
    guild_id: int,
    channel_id: int,
    artist_id: str | None = None,
    source_id: int | None = None,
    only_trending: bool = False,
    created_by: int | None = None,
) -> SubscribeResult:
    """Subscribe a channel. Stories stored before now are never posted to it (start_story_id).

    Subscribing again to the same (channel, artist, source) changes `only_trending` and resumes a paused or
    unhealthy subscription (the admin's way of saying "fixed, try again")."""
    existing = await find_subscription(store, channel_id=channel_id, artist_id=artist_id, source_id=source_id)
    if existing is not None:
        if existing.guild_id != guild_id:
            raise SubscriptionError("that channel belongs to another server")
        changed = existing.only_trending != only_trending or existing.status != STATUS_OK
        if changed:
            await store.db.execute(
                "UPDATE subscriptions SET only_trending = ?, status = ?, failures = 0, retry_at = NULL"
                " WHERE id = ?",
                (int(only_trending), STATUS_OK, existing.id),
            )
            # the channel's waiting deliveries may go now that an admin says the problem is fixed
            await store.db.execute(
                "UPDATE deliveries SET next_attempt_at = NULL WHERE channel_id = ? AND status = 'pending'",
                (channel_id,),
            )
            await store.db.commit()
            existing = await get_subscription(store, existing.id)
            assert existing is not None
        return SubscribeResult(existing, created=False, changed=changed)
    start = await max_story_id(store)
    cursor = await store.db.execute(
        "INSERT INTO subscriptions(guild_id, channel_id, artist_id, source_id, only_trending, created_by,"
        " created_at, start_story_id) VALUES (?,?,?,?,?,?,?,?)",
        (guild_id, channel_id, artist_id, source_id, int(only_trending), created_by, to_iso(utcnow()), start),
    )
    await store.db.commit()
    subscription = await get_subscription(store, cursor.lastrowid)
    assert subscription is not None
    return SubscribeResult(subscription, created=True, changed=True)


async def get_subscription(store: Store, subscription_id: int | None) -> Subscription | None:
    async with store.db.execute(_SELECT_SUBSCRIPTIONS + " WHERE s.id = ?", (subscription_id,)) as cursor:
        row = await cursor.fetchone()
    return _subscription_from_row(row) if row else None


async def find_subscription(
    store: Store, *, channel_id: int, artist_id: str | None, source_id: int | None
) -> Subscription | None:
    async with store.db.execute(
        _SELECT_SUBSCRIPTIONS + " WHERE s.channel_id = ? AND COALESCE(s.artist_id, '') = ?"
        " AND COALESCE(s.source_id, 0) = ?",
        (channel_id, artist_id or "", source_id or 0),
    ) as cursor:
        row = await cursor.fetchone()
    return _subscription_from_row(row) if row else None


async def list_subscriptions(
    store: Store, *, guild_id: int | None = None, channel_id: int | None = None
) -> list[Subscription]:
    """A server's (or a channel's) subscriptions, by channel then age."""
    where, args = [], []
    if guild_id is not None:
        where.append("s.guild_id = ?")
        args.append(guild_id)
    if channel_id is not None:
        where.append("s.channel_id = ?")
        args.append(channel_id)
    sql = _SELECT_SUBSCRIPTIONS + (" WHERE " + " AND ".join(where) if where else "")
    async with store.db.execute(sql + " ORDER BY s.channel_id, s.id", args) as cursor:
        return [_subscription_from_row(row) for row in await cursor.fetchall()]


async def remove_subscriptions(
    store: Store,
    *,
    guild_id: int,
    channel_id: int,
    artist_id: str | None = None,
    source_id: int | None = None,
) -> list[Subscription]:
    """Remove a channel's subscriptions: those with this artist and/or source when given, else all of them.

    Their deliveries not yet sent are dropped. Returns what was removed."""
    found = [
        s
        for s in await list_subscriptions(store, guild_id=guild_id, channel_id=channel_id)
        if (artist_id is None or s.artist_id == artist_id) and (source_id is None or s.source_id == source_id)
    ]
    if not found:
        return []
    ids = [s.id for s in found]
    marks = ",".join("?" * len(ids))
    await store.db.execute(
        "UPDATE deliveries SET status = 'dropped', last_error = 'unsubscribed'"
        f" WHERE status = 'pending' AND subscription_id IN ({marks})",
        ids,
    )
    await store.db.execute(f"DELETE FROM subscriptions WHERE id IN ({marks})", ids)
    await _retire_unused_feeds(store, guild_id, UNUSED_REASON)
    await store.db.commit()
    return found


async def _retire_unused_feeds(store: Store, guild_id: int, reason: str) -> None:
    """Stop polling the feeds this server added that no subscription uses any more (frees its quota)."""
    await store.db.execute(
        "UPDATE sources SET disabled_reason = ? WHERE owner_guild_id = ? AND disabled_reason IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE subscriptions.source_id = sources.id)",
        (reason, guild_id),
    )


async def remove_channel(store: Store, channel_id: int, *, reason: str) -> int:
    """The channel is gone (404 Unknown Channel, or deleted): drop its subscriptions and unsent deliveries."""
    await store.db.execute(
        "UPDATE deliveries SET status = 'dropped', last_error = ? WHERE status = 'pending' AND channel_id = ?",
        (reason, channel_id),
    )
    cursor = await store.db.execute("DELETE FROM subscriptions WHERE channel_id = ?", (channel_id,))
    await store.db.commit()
    if cursor.rowcount:
        log.info("removed %d subscription(s) of channel %d: %s", cursor.rowcount, channel_id, reason)
    return cursor.rowcount


async def remove_guild(store: Store, guild_id: int) -> int:
    """The bot left a server: drop its subscriptions and unsent deliveries, and stop polling its feeds."""
    await store.db.execute(
        "UPDATE deliveries SET status = 'dropped', last_error = 'the bot left the server'"
        " WHERE status = 'pending' AND guild_id = ?",
        (guild_id,),
    )
    cursor = await store.db.execute("DELETE FROM subscriptions WHERE guild_id = ?", (guild_id,))
    await _retire_unused_feeds(store, guild_id, GUILD_LEFT_REASON)
    await store.db.commit()
    log.info("left server %d: removed %d subscription(s)", guild_id, cursor.rowcount)
    return cursor.rowcount


def looks_like_url(text: str) -> bool:
    return text.strip().lower().startswith(("http://", "https://"))


async def add_feed_source(
    store: Store,
    fetcher: Fetcher,
    url: str,
    *,
    guild_id: int,
    config: DeliveryConfig,
    polling: PollingConfig,
    first_poll: Callable[[Source], Awaitable[object]],
    allow_private: bool = False,
) -> Source:
    """A feed URL given by a server admin: checked, then added as a source owned by that server.

    Refused (SubscriptionError, saying why): not http(s); a private, loopback or link-local address; no answer
    or not a feed; the server already has max_guild_sources feeds. A URL already known is used as it is.
    `first_poll(source)` then stores the stories the feed carries now, as backfill, so they are never posted.
    `allow_private` is for tests on loopback only."""
    url = url.strip()
    if not looks_like_url(url) or len(url) > MAX_FEED_URL:
        raise SubscriptionError(f"{url[:200]} is not a feed URL (it must start with https:// or http://)")
    try:
        url = str(URL(url))
    except ValueError:
        raise SubscriptionError(f"{url[:200]} is not a valid URL") from None
    existing = await store.sources.get_by_url(url)
    if existing is not None and (existing.owner_guild_id in (None, guild_id) or existing.enabled):
        if existing.enabled:
            return existing
        if existing.disabled_reason not in REVIVABLE:
            raise SubscriptionError(f"the feed {url} is switched off: {existing.disabled_reason}")
    if await count_guild_sources(store, guild_id) >= config.max_guild_sources:
        raise SubscriptionError(
            f"this server already added {config.max_guild_sources} feeds, the most it may; unsubscribe from one"
            " it no longer needs, or pick a source the bot already knows"
        )
    if not allow_private:
        try:
            await check_public_url(url)
        except UnsafeAddress as exc:
            raise SubscriptionError(
                f"refused: {exc.reason}. Feeds added from Discord must be on the public internet"
            ) from None
        except OSError as exc:
            raise SubscriptionError(f"the host of {url} cannot be found ({exc}); check the address") from None
    result = await fetcher.fetch(url, max_bytes=polling.max_feed_bytes, allow_private=allow_private)
    if not result.ok or result.body is None:
        raise SubscriptionError(f"the feed could not be read: {result.error or 'no content'}")
    try:
        feed = await asyncio.to_thread(
            functools.partial(parse_feed, result.body, url=result.url, content_type=result.content_type)
        )
    except FeedError as exc:
        raise SubscriptionError(f"{url} does not answer with a feed I can read: {exc}") from None
    name = feed.title.strip() or URL(url).host or url
    source = await store.sources.add(url, truncate(name, 100), owner_guild_id=guild_id)
    if not source.enabled:  # re-added by a server after the bot had left it
        await store.db.execute(
            "UPDATE sources SET disabled_reason = NULL, owner_guild_id = ? WHERE id = ?",
            (guild_id, source.id),
        )
        await store.db.commit()
        source = await store.sources.get(source.id) or source
    await first_poll(source)
    log.info("server %d added feed %s as source %d (%s)", guild_id, url, source.id, source.name)
    return source


# --- sources a server may use -------------------------------------------------------------------------------


async def sources_for_guild(store: Store, guild_id: int, *, enabled_only: bool = True) -> list[Source]:
    """The operator's sources and the feeds this server added, by name."""
    return sorted(
        (
            s
            for s in await store.sources.list(enabled_only=enabled_only)
            if s.owner_guild_id is None or s.owner_guild_id == guild_id
        ),
        key=lambda s: s.name.casefold(),
    )


async def count_guild_sources(store: Store, guild_id: int) -> int:
    async with store.db.execute(
        "SELECT COUNT(*) FROM sources WHERE owner_guild_id = ? AND disabled_reason IS NULL", (guild_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0])


# --- queueing deliveries ------------------------------------------------------------------------------------


def delivery_nonce(channel_id: int, story_key: str) -> str:
    """Discord's message nonce for a delivery: the same for every resend of it, at most 25 characters.

    Built from the channel and the story's key (not database ids) so it stays unique across databases."""
    digest = hashlib.sha256(f"{channel_id}\n{story_key}".encode()).hexdigest()
    return ("kn" + digest)[: NONCE_MAX - 1]


ExpandArtist = Callable[[str], Iterable[str]]


def _default_expand() -> ExpandArtist:
    from bot.artists import ArtistIndex  # data loaded once; imported late, as bot/store.py does

    index = ArtistIndex.load()
    return index.expand


@dataclass
class _StoryFacts:
    id: int
    key: str
    cluster_id: int
    source_name: str
    moment: datetime | None  # published, else first seen
    backfill: bool
    artists: set[str]
    sources: set[int]


async def _story_facts(store: Store, story_ids: list[int]) -> list[_StoryFacts]:
    facts: dict[int, _StoryFacts] = {}
    rows = await store.select_in(
        "SELECT id, story_key, COALESCE(cluster_id, id) AS cluster, source_name, published_at,"
        " first_seen_at, backfill, source_id FROM stories WHERE id IN ({marks})",
        story_ids,
    )
    for row in rows:
        facts[row["id"]] = _StoryFacts(
            id=row["id"],
            key=row["story_key"],
            cluster_id=row["cluster"],
            source_name=row["source_name"],
            moment=from_iso(row["published_at"]) or from_iso(row["first_seen_at"]),
            backfill=bool(row["backfill"]),
            artists=set(),
            sources={row["source_id"]} if row["source_id"] is not None else set(),
        )
    found = list(facts)
    for story_id, artist_id in await store.select_in(
        "SELECT story_id, artist_id FROM story_artists WHERE story_id IN ({marks})", found
    ):
        facts[story_id].artists.add(artist_id)
    for story_id, source_id in await store.select_in(
        "SELECT story_id, source_id FROM source_stories WHERE story_id IN ({marks})", found
    ):
        facts[story_id].sources.add(source_id)
    return [facts[i] for i in sorted(facts)]


async def queue_deliveries(
    store: Store,
    story_ids: list[int],
    *,
    config: DeliveryConfig,
    now: datetime | None = None,
    trending: bool = False,
    expand: ExpandArtist | None = None,
) -> int:
    """Queue one delivery per (channel, story cluster) for the subscriptions these stories match.

    A story matches a subscription when: its id is above the subscription's start_story_id; it is not
    backfill; it was published (else first seen) within max_age_hours; the subscription is not paused; its
    only_trending flag equals `trending`; its artist is one of the story's artists or a group one of them is in
    (`expand`, default the artist index's); its source carried the story. When a channel already has the
    story's cluster, an outlet new to it is added to the "Also on" list (and the sent message marked for an
    edit). Returns the number of deliveries queued."""
    if not story_ids:
        return 0
    now = now or utcnow()
    oldest = now - timedelta(hours=config.max_age_hours)
    stories = [
        s
        for s in await _story_facts(store, sorted(set(story_ids)))
        if not s.backfill and s.moment is not None and s.moment >= oldest
    ]
    if not stories:
        return 0
    async with store.db.execute(
        _SELECT_SUBSCRIPTIONS + " WHERE s.status != ? AND s.only_trending = ? AND s.start_story_id < ?"
        " ORDER BY s.id",
        (STATUS_PAUSED, int(trending), max(s.id for s in stories)),
    ) as cursor:
        subscriptions = [_subscription_from_row(row) for row in await cursor.fetchall()]
    if not subscriptions:
        return 0
    # index subscriptions by every artist id that satisfies them (a group's includes its members)
    by_artist: dict[str | None, list[Subscription]] = {}
    expansion: dict[str, set[str]] = {}
    for sub in subscriptions:
        if sub.artist_id is None:
            by_artist.setdefault(None, []).append(sub)
            continue
        if sub.artist_id not in expansion:
            expand = expand or _default_expand()
            expansion[sub.artist_id] = {sub.artist_id, *expand(sub.artist_id)}
        for artist_id in expansion[sub.artist_id]:
            by_artist.setdefault(artist_id, []).append(sub)

    queued = 0
    created = to_iso(now)
    for story in stories:
        candidates: dict[int, Subscription] = {}
        for key in (None, *story.artists):
            for sub in by_artist.get(key, ()):
                if sub.start_story_id < story.id and (
                    sub.source_id is None or sub.source_id in story.sources
                ):
                    candidates.setdefault(sub.id, sub)
        per_channel: dict[int, Subscription] = {}
        for sub in sorted(candidates.values(), key=lambda s: s.id):
            per_channel.setdefault(
                sub.channel_id, sub
            )  # the oldest matching subscription speaks for the channel
        for channel_id, sub in per_channel.items():
            # an unhealthy channel's new posts wait for its retry time, behind the ones already waiting
            wait = to_iso(sub.retry_at) if sub.retry_at and sub.retry_at > now else None
            cursor = await store.db.execute(
                "INSERT INTO deliveries(story_id, cluster_id, guild_id, channel_id, subscription_id, nonce,"
                " next_attempt_at, created_at) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(channel_id, cluster_id) DO NOTHING",
                (
                    story.id,
                    story.cluster_id,
                    sub.guild_id,
                    channel_id,
                    sub.id,
                    delivery_nonce(channel_id, story.key),
                    wait,
                    created,
                ),
            )
            if cursor.rowcount:
                queued += 1
            else:
                await _note_also_on(store, channel_id, story)
    await store.db.commit()
    if queued:
        log.info("queued %d deliveries for %d stories", queued, len(stories))
    return queued


async def _note_also_on(store: Store, channel_id: int, story: _StoryFacts) -> None:
    """Another outlet's story joined a cluster this channel has: name that outlet under the post."""
    async with store.db.execute(
        "SELECT d.id, d.story_id, d.status, d.also_on_json, d.edits, st.source_name FROM deliveries d"
        " JOIN stories st ON st.id = d.story_id WHERE d.channel_id = ? AND d.cluster_id = ?",
        (channel_id, story.cluster_id),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None or row["story_id"] == story.id:
        return
    also_on = json.loads(row["also_on_json"] or "[]")
    name = story.source_name
    if name == row["source_name"] or name in also_on or len(also_on) >= MAX_ALSO_ON:
        return
    also_on.append(name)
    # a pending post shows the list when it is sent; a sent one is edited, a few times at most
    edit = row["status"] == "sent" and row["edits"] < MAX_ALSO_ON_EDITS
    await store.db.execute(
        "UPDATE deliveries SET also_on_json = ?, edit_pending = CASE WHEN ? THEN 1 ELSE edit_pending END"
        " WHERE id = ?",
        (json.dumps(also_on, ensure_ascii=False), int(edit), row["id"]),
    )


# --- the delivery queue, for the worker ---------------------------------------------------------------------


def _delivery_from_row(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        story_id=row["story_id"],
        cluster_id=row["cluster_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        subscription_id=row["subscription_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=from_iso(row["next_attempt_at"]),
        nonce=row["nonce"],
        message_id=row["message_id"],
        last_error=row["last_error"],
        created_at=from_iso(row["created_at"]),
        sent_at=from_iso(row["sent_at"]),
        also_on=json.loads(row["also_on_json"] or "[]"),
        edit_pending=bool(row["edit_pending"]),
        edits=row["edits"],
        attempt_started_at=from_iso(row["attempt_started_at"]),
    )


async def get_delivery(store: Store, delivery_id: int) -> Delivery | None:
    async with store.db.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)) as cursor:
        row = await cursor.fetchone()
    return _delivery_from_row(row) if row else None


async def list_deliveries(store: Store, *, status: str | None = None) -> list[Delivery]:
    sql, args = "SELECT * FROM deliveries", []
    if status is not None:
        sql += " WHERE status = ?"
        args.append(status)
    async with store.db.execute(sql + " ORDER BY id", args) as cursor:
        return [_delivery_from_row(row) for row in await cursor.fetchall()]


async def due_deliveries(
    store: Store, *, now: datetime | None = None, channel_id: int | None = None, limit: int = 5000
) -> dict[int, list[Delivery]]:
    """Pending deliveries that may be sent now, per channel, oldest first.

    A channel whose oldest pending delivery waits (backoff) sends nothing: posts keep their order."""
    now = now or utcnow()
    sql, args = "SELECT * FROM deliveries WHERE status = 'pending'", []
    if channel_id is not None:
        sql += " AND channel_id = ?"
        args.append(channel_id)
    async with store.db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)) as cursor:
        rows = await cursor.fetchall()
    result: dict[int, list[Delivery]] = {}
    blocked: set[int] = set()
    for row in rows:
        delivery = _delivery_from_row(row)
        if delivery.channel_id in blocked:
            continue
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            blocked.add(delivery.channel_id)
            continue
        result.setdefault(delivery.channel_id, []).append(delivery)
    return result


async def next_due_at(store: Store) -> datetime | None:
    """When the earliest waiting delivery or edit becomes due (None: nothing waits)."""
    async with store.db.execute(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND next_attempt_at IS NOT NULL"
    ) as cursor:
        row = await cursor.fetchone()
    return from_iso(row[0]) if row and row[0] else None


async def mark_attempt(store: Store, delivery_id: int, *, now: datetime | None = None) -> None:
    """Committed before a send: after a crash the delivery is known to be in doubt (the nonce settles it)."""
    await store.db.execute(
        "UPDATE deliveries SET attempts = attempts + 1, attempt_started_at = ? WHERE id = ?",
        (to_iso(now or utcnow()), delivery_id),
    )
    await store.db.commit()


async def record_sent(
    store: Store, delivery: Delivery, message_id: int, *, now: datetime | None = None
) -> None:
    """The post is on Discord: mark it sent with its message id (one statement, so one transaction), then
    note the channel's subscriptions healthy."""
    moment = to_iso(now or utcnow())
    await store.db.execute(
        "UPDATE deliveries SET status = 'sent', message_id = ?, sent_at = ?, last_error = NULL,"
        " next_attempt_at = NULL WHERE id = ?",
        (message_id, moment, delivery.id),
    )
    await store.db.execute(
        "UPDATE subscriptions SET last_post_at = ?, status = CASE WHEN status = 'paused' THEN status ELSE 'ok'"
        " END, failures = 0, retry_at = NULL WHERE channel_id = ?",
        (moment, delivery.channel_id),
    )
    await store.db.commit()


def _backoff(failures: int, bounds: tuple[timedelta, timedelta]) -> timedelta:
    first, cap = bounds
    return min(cap, first * (2 ** max(0, failures - 1)))


async def record_forbidden(
    store: Store, delivery: Delivery, reason: str, *, now: datetime | None = None
) -> Subscription | None:
    """Discord refused the post (403): the channel's subscriptions become unhealthy and retry with backoff;
    after MAX_FORBIDDEN_FAILURES refusals in a row they are paused (an admin resumes with /subscribe).
    Returns the delivery's subscription as updated."""
    now = now or utcnow()
    async with store.db.execute(
        "SELECT COALESCE(MAX(failures), 0) FROM subscriptions WHERE channel_id = ?", (delivery.channel_id,)
    ) as cursor:
        failures = int((await cursor.fetchone())[0]) + 1
    paused = failures >= MAX_FORBIDDEN_FAILURES
    retry_at = now + _backoff(failures, FORBIDDEN_BACKOFF)
    todo = "give the bot View Channel, Send Messages and Embed Links in that channel"
    if paused:
        todo += ", then run /subscribe again with the same options to resume"
    text = f"Discord refused the post: {reason}. " + (
        f"Paused after {failures} refusals: {todo}." if paused else f"Retrying automatically; {todo}."
    )
    await store.db.execute(
        "UPDATE subscriptions SET status = ?, failures = ?, last_error = ?, last_error_at = ?, retry_at = ?"
        " WHERE channel_id = ? AND status != 'paused'",
        (
            STATUS_PAUSED if paused else STATUS_UNHEALTHY,
            failures,
            text,
            to_iso(now),
            None if paused else to_iso(retry_at),
            delivery.channel_id,
        ),
    )
    if paused:
        # what piled up while refused is stale by the time an admin fixes it: drop it
        await store.db.execute(
            "UPDATE deliveries SET status = 'dropped', last_error = ? WHERE channel_id = ? AND status = 'pending'",
            (text, delivery.channel_id),
        )
    else:
        await store.db.execute(
            "UPDATE deliveries SET next_attempt_at = ?, last_error = ? WHERE channel_id = ? AND status = 'pending'",
            (to_iso(retry_at), text, delivery.channel_id),
        )
    await store.db.commit()
    log.warning("channel %d refused delivery %d: %s", delivery.channel_id, delivery.id, text)
    return await get_subscription(store, delivery.subscription_id)


async def record_transient_failure(
    store: Store,
    delivery: Delivery,
    error: str,
    *,
    retry_after: float | None = None,
    now: datetime | None = None,
) -> bool:
    """A 429, 5xx or network failure: retry later (the server's delay when it gave one, else backoff), up to
    MAX_SEND_ATTEMPTS. Returns True when it will be retried, False when given up."""
    now = now or utcnow()
    attempts = max(delivery.attempts, 1)
    if attempts >= MAX_SEND_ATTEMPTS:
        await record_failed(store, delivery, f"gave up after {attempts} attempts: {error}", now=now)
        return False
    delay = (
        timedelta(seconds=retry_after) if retry_after is not None else _backoff(attempts, TRANSIENT_BACKOFF)
    )
    await store.db.execute(
        "UPDATE deliveries SET next_attempt_at = ?, last_error = ? WHERE id = ?",
        (to_iso(now + delay), error, delivery.id),
    )
    await store.db.commit()
    return True


async def record_failed(store: Store, delivery: Delivery, error: str, *, now: datetime | None = None) -> None:
    """Never retried (a 400, or too many transient failures); the reason shows on the subscription."""
    now = now or utcnow()
    await store.db.execute(
        "UPDATE deliveries SET status = 'failed', last_error = ?, next_attempt_at = NULL WHERE id = ?",
        (error, delivery.id),
    )
    if delivery.subscription_id is not None:
        await store.db.execute(
            "UPDATE subscriptions SET last_error = ?, last_error_at = ? WHERE id = ?",
            (f"a story could not be posted: {error}", to_iso(now), delivery.subscription_id),
        )
    await store.db.commit()
    log.warning("delivery %d to channel %d failed: %s", delivery.id, delivery.channel_id, error)


async def pending_edits(store: Store, *, limit: int = 500) -> list[Delivery]:
    """Sent posts whose "Also on" line changed, oldest first."""
    async with store.db.execute(
        "SELECT * FROM deliveries WHERE edit_pending = 1 AND status = 'sent' AND message_id IS NOT NULL"
        " ORDER BY id LIMIT ?",
        (limit,),
    ) as cursor:
        return [_delivery_from_row(row) for row in await cursor.fetchall()]


async def record_edited(store: Store, delivery: Delivery, *, gave_up: bool = False) -> None:
    """The edit is done (or cannot be done: message deleted, 400): no more pending."""
    await store.db.execute(
        "UPDATE deliveries SET edit_pending = 0, edits = CASE WHEN ? THEN ? ELSE edits + 1 END WHERE id = ?",
        (int(gave_up), MAX_ALSO_ON_EDITS, delivery.id),
    )
    await store.db.commit()
