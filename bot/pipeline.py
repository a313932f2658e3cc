"""What follows storing new stories: cluster them, then (in the bot) queue their deliveries and wake the worker.

The poller calls `after_store` with the stories it has just stored. `kpopnews poll --once` posts nothing to
Discord, so it passes `deliver=False`: its stories are stored and clustered, and no delivery is queued for them.
With `deliver`, clusters that became trending are also offered to the trending-only subscriptions, and the
members who follow a story's artists get it by direct message (bot/follows.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bot import clustering, trending
from bot.config import DeliveryConfig
from bot.delivery_queue import offer_trending, queue_deliveries
from bot.follows import queue_direct_messages
from bot.models import Story
from bot.store import Store
from bot.subscriptions import ExpandArtist

log = logging.getLogger(__name__)


async def after_store(
    store: Store,
    stories: Sequence[Story],
    *,
    config: DeliveryConfig,
    deliver: bool = True,
    wake: Callable[[], None] | None = None,
    expand: ExpandArtist | None = None,
) -> int:
    """Cluster `stories` (new, stored, with ids) and, when `deliver`, queue deliveries and call `wake`.
    `expand` is the artist index's (a group subscription gets its members' stories); None without one.

    Returns the number of channel deliveries queued (the followers' DMs are logged). A clustering failure is logged and does not stop delivery:
    an unclustered story is its own cluster."""
    stored = [s for s in stories if s.id is not None]
    if not stored:
        return 0
    try:
        async with store.transaction():  # a failure leaves no story half-clustered
            # processes storing two outlets' copies of one event at once must see each other's: one at a time
            await store.locks.serialize("clustering")
            await clustering.assign_clusters(store, list(stored))
    except Exception:
        log.exception("clustering %d new stories failed; they are delivered unclustered", len(stored))
    if not deliver:
        return 0
    queued = await queue_deliveries(
        store, [s.id for s in stored if s.id is not None], config=config, expand=expand
    )
    if await store.subscriptions.any_trending():  # most servers have none: skip the ranking then
        # a cluster these stories made trending goes to the trending-only channels (each cluster once)
        try:
            async with store.transaction():  # read what was offered before, and offer, as one
                offers = await trending.trending_offers(store, max_age_hours=config.max_age_hours)
                queued += await offer_trending(store, offers, config=config, expand=expand)
        except Exception:
            log.exception("offering trending clusters to trending-only subscriptions failed")
    try:  # a follower's DM never holds up the channels' posts
        await queue_direct_messages(
            store, [s.id for s in stored if s.id is not None], config=config, expand=expand
        )
    except Exception:
        log.exception("queueing direct messages to followers failed")
    if wake is not None:
        wake()  # also when nothing was queued: a story joining a posted cluster may ask for an "Also on" edit
    return queued
