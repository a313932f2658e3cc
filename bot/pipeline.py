"""What follows storing new stories: cluster them, then (in the bot) queue their deliveries and wake the worker.

The poller calls `after_store` with the stories it has just stored. `kpopnews poll --once` posts nothing to
Discord, so it passes `deliver=False`: its stories are stored and clustered, and no delivery is queued for them.
With `deliver`, clusters that became trending are also offered to the trending-only subscriptions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from bot import clustering, trending
from bot.config import DeliveryConfig
from bot.models import Story
from bot.store import Store
from bot.subscriptions import queue_deliveries

log = logging.getLogger(__name__)


async def after_store(
    store: Store,
    stories: Sequence[Story],
    *,
    config: DeliveryConfig,
    deliver: bool = True,
    wake: Callable[[], None] | None = None,
    expand: Callable[[str], Iterable[str]] | None = None,
) -> int:
    """Cluster `stories` (new, stored, with ids) and, when `deliver`, queue deliveries and call `wake`.

    Returns the number of deliveries queued. A clustering failure is logged and does not stop delivery:
    an unclustered story is its own cluster."""
    stored = [s for s in stories if s.id is not None]
    if not stored:
        return 0
    try:
        await clustering.assign_clusters(store, list(stored))
    except Exception:
        log.exception("clustering %d new stories failed; they are delivered unclustered", len(stored))
    if not deliver:
        return 0
    queued = await queue_deliveries(
        store, [s.id for s in stored if s.id is not None], config=config, expand=expand
    )
    if await _has_trending_subscriptions(store):
        # a cluster these stories made trending goes to the trending-only channels (each cluster once)
        try:
            queued += await trending.notify_trending(store, config=config)
        except Exception:
            log.exception("offering trending clusters to trending-only subscriptions failed")
    if wake is not None:
        wake()  # also when nothing was queued: a story joining a posted cluster may ask for an "Also on" edit
    return queued


async def _has_trending_subscriptions(store: Store) -> bool:
    """Whether any trending-only subscription is active (most servers have none: skip the ranking then)."""
    async with store.db.execute(
        "SELECT 1 FROM subscriptions WHERE only_trending = 1 AND status != 'paused' LIMIT 1"
    ) as cursor:
        return await cursor.fetchone() is not None
