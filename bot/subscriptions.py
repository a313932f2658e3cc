"""Subscribing: which channels want which stories, the rules of subscribing and unsubscribing, and which
sources a server may pick.

No Discord and no SQL here: the cogs call these functions with plain values, and they go to the store's
tables (`store.subscriptions`, `store.deliveries`, `store.sources`). Queueing the stories a subscription wants
is the delivery queue's part (bot/delivery_queue.py); both match a story to subscriptions with
`SubscriptionIndex`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.models import STATUS_OK, STATUS_PAUSED, Source, StoryFacts, Subscription
from bot.store import Store
from bot.timeutil import utcnow

log = logging.getLogger(__name__)

GUILD_LEFT_REASON = "the server that added it removed the bot"
UNUSED_REASON = "no subscription uses it any more"
REVIVABLE = (GUILD_LEFT_REASON, UNUSED_REASON)  # a server adding the feed again switches it back on
UNSUBSCRIBED = "unsubscribed"

# The artist ids that satisfy a subscription to an artist: a group's members (the artist index's `expand`).
ExpandArtist = Callable[[str], Iterable[str]]


class SubscriptionError(Exception):
    """A subscription request that cannot be done; the text says why and what to do (shown to the admin)."""


@dataclass
class SubscribeResult:
    subscription: Subscription
    created: bool  # False: it existed; `changed` says whether only_trending or a pause was reset
    changed: bool = False


# --- matching a story -----------------------------------------------------------------------------------------


class SubscriptionIndex:
    """Subscriptions by every artist id that satisfies them (a group's includes its members), to find those a
    story matches without trying each one. `expand` None: no artist index, an artist's own id only."""

    def __init__(self, subscriptions: Iterable[Subscription], expand: ExpandArtist | None) -> None:
        self._by_artist: dict[str | None, list[Subscription]] = {}
        expansion: dict[str, set[str]] = {}
        for sub in subscriptions:
            if sub.artist_id is None:
                self._by_artist.setdefault(None, []).append(sub)
                continue
            if sub.artist_id not in expansion:
                members = expand(sub.artist_id) if expand is not None else ()
                expansion[sub.artist_id] = {sub.artist_id, *members}
            for artist_id in expansion[sub.artist_id]:
                self._by_artist.setdefault(artist_id, []).append(sub)

    def matching(self, story: StoryFacts) -> list[Subscription]:
        """The subscriptions the story matches, oldest first: it was stored after the subscription, is about
        its artist (or a member of its group) and came from its source, where it names them."""
        found: dict[int, Subscription] = {}
        for key in (None, *story.artists):
            for sub in self._by_artist.get(key, ()):
                if sub.start_story_id < story.id and (
                    sub.source_id is None or sub.source_id in story.sources
                ):
                    found.setdefault(sub.id, sub)
        return sorted(found.values(), key=lambda s: s.id)


# --- subscribing and unsubscribing ----------------------------------------------------------------------------


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
    unhealthy subscription (the admin's way of saying "fixed, try again"). A switched-off source is refused."""
    async with store.transaction():
        if source_id is not None:
            source = await store.sources.get(source_id)
            if source is None:
                raise SubscriptionError("that source is not there any more")
            if not source.enabled:
                raise SubscriptionError(f"the source {source.name} is switched off: {source.disabled_reason}")
        existing = await store.subscriptions.find(
            channel_id=channel_id, artist_id=artist_id, source_id=source_id
        )
        if existing is None:
            created = await store.subscriptions.add(
                guild_id=guild_id,
                channel_id=channel_id,
                artist_id=artist_id,
                source_id=source_id,
                only_trending=only_trending,
                created_by=created_by,
                at=utcnow(),
            )
            return SubscribeResult(created, created=True, changed=True)
        if existing.guild_id != guild_id:
            raise SubscriptionError("that channel belongs to another server")
        changed = existing.only_trending != only_trending or existing.status != STATUS_OK
        if changed:
            existing = await store.subscriptions.resume(existing.id, only_trending=only_trending) or existing
            # the channel's waiting deliveries may go now that an admin says the problem is fixed
            await store.deliveries.release_channel(channel_id)
        return SubscribeResult(existing, created=False, changed=changed)


async def remove_subscriptions(
    store: Store,
    *,
    guild_id: int,
    channel_id: int,
    artist_id: str | None = None,
    source_id: int | None = None,
    expand: ExpandArtist | None = None,
) -> list[Subscription]:
    """Remove a channel's subscriptions: those with this artist and/or source when given, else all of them.

    A story they queued that is not sent yet still goes when another subscription of the channel matches it
    (`expand`: the artist index's, as for queueing); otherwise it is dropped. Feeds the server added that
    nothing uses any more stop being polled. Returns what was removed."""
    async with store.transaction():
        channel = await store.subscriptions.list(guild_id=guild_id, channel_id=channel_id)
        found = [
            s
            for s in channel
            if (artist_id is None or s.artist_id == artist_id)
            and (source_id is None or s.source_id == source_id)
        ]
        if not found:
            return []
        gone = {s.id for s in found}
        await _hand_over_waiting(store, gone, [s for s in channel if s.id not in gone], expand)
        await store.subscriptions.delete(sorted(gone))
        await store.sources.retire_unused(guild_id, reason=UNUSED_REASON)
    return found


async def _hand_over_waiting(
    store: Store, gone: set[int], remaining: list[Subscription], expand: ExpandArtist | None
) -> None:
    """The unsent deliveries of the subscriptions in `gone`: each goes to the oldest remaining subscription
    that matches its story, or is dropped when none does."""
    waiting = await store.deliveries.pending_of(sorted(gone))
    if not waiting:
        return
    active = [s for s in remaining if s.status != STATUS_PAUSED]
    trending = await store.deliveries.trending_crossings(sorted({d.cluster_id for d in waiting}))
    plain = SubscriptionIndex([s for s in active if not s.only_trending], expand)
    trending_only = SubscriptionIndex([s for s in active if s.only_trending], expand)
    stories = {s.id: s for s in await store.deliveries.story_facts(sorted({d.story_id for d in waiting}))}
    dropped: list[int] = []
    for delivery in waiting:
        story = stories.get(delivery.story_id)
        heirs = plain.matching(story) if story is not None else []
        if story is not None and delivery.cluster_id in trending:
            heirs = sorted([*heirs, *trending_only.matching(story)], key=lambda s: s.id)
        if heirs:
            await store.deliveries.reassign(delivery.id, heirs[0].id)
        else:
            dropped.append(delivery.id)
    await store.deliveries.drop(dropped, reason=UNSUBSCRIBED)


async def remove_channel(store: Store, channel_id: int, *, reason: str) -> int:
    """The channel is gone (404 Unknown Channel, or deleted): drop its subscriptions and unsent deliveries."""
    async with store.transaction():
        await store.deliveries.drop_channel(channel_id, reason=reason)
        removed = await store.subscriptions.delete_channel(channel_id)
    if removed:
        log.info("removed %d subscription(s) of channel %d: %s", removed, channel_id, reason)
    return removed


async def remove_guild(store: Store, guild_id: int) -> int:
    """The bot left a server: drop its subscriptions and unsent deliveries, and stop polling its feeds."""
    async with store.transaction():
        await store.deliveries.drop_guild(guild_id, reason="the bot left the server")
        removed = await store.subscriptions.delete_guild(guild_id)
        await store.sources.retire_unused(guild_id, reason=GUILD_LEFT_REASON)
    log.info("left server %d: removed %d subscription(s)", guild_id, removed)
    return removed


# --- sources a server may use ---------------------------------------------------------------------------------


def looks_like_url(text: str) -> bool:
    return text.strip().lower().startswith(("http://", "https://"))


async def sources_for_guild(store: Store, guild_id: int | None, *, enabled_only: bool = True) -> list[Source]:
    """The operator's sources and the feeds this server added (guild_id None, a direct message: none), by name."""
    return sorted(
        (
            s
            for s in await store.sources.list(enabled_only=enabled_only)
            if s.owner_guild_id is None or s.owner_guild_id == guild_id
        ),
        key=lambda s: s.name.casefold(),
    )


async def find_guild_source(store: Store, guild_id: int, text: str) -> Source | None:
    """The source of this server's (switched off or not) that `text` names: its id (an autocomplete choice),
    its name in any case, or its URL."""
    text = text.strip()
    for source in await sources_for_guild(store, guild_id, enabled_only=False):
        if text == str(source.id) or text.casefold() == source.name.casefold() or text == source.url:
            return source
    return None


async def suggest_sources(store: Store, guild_id: int, text: str) -> list[Source]:
    """This server's sources whose name or URL contains `text` (any case), by name."""
    needle = text.strip().casefold()
    return [
        s
        for s in await sources_for_guild(store, guild_id)
        if needle in s.name.casefold() or needle in s.url.casefold()
    ]
