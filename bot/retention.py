"""Old stories' text: a story's clean text is kept `[storage] keep_text_days` after it was first stored (what
`kpopnews retag` tags it from), then dropped. Its title, summary, link, image, artists and quotes stay: it is
still posted, listed and found by search (which reads titles and summaries), and a retag then reads its summary.

Run by the bot every hour (a service) and by `kpopnews poll --once` after its pass. A run deletes the texts past
the age by an index on when each was stored: it costs the texts it drops, not the stories stored.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from bot.store import Store
from bot.timeutil import utcnow

log = logging.getLogger(__name__)

EVERY_SECONDS = 3600.0  # the bot's runs: texts age by days, an hour late is nothing


async def drop_old_texts(store: Store, keep_days: float, *, now: datetime | None = None) -> int:
    """Drop the text of every story first stored more than `keep_days` ago (0: keep every text). Returns how
    many texts went."""
    if keep_days <= 0:
        return 0
    dropped = await store.stories.drop_texts_seen_before((now or utcnow()) - timedelta(days=keep_days))
    if dropped:
        log.info("dropped the text of %d stories first stored over %g days ago", dropped, keep_days)
    return dropped


async def drop_old_texts_hourly(store: Store, keep_days: float, *, every: float = EVERY_SECONDS) -> None:
    """The bot's service: `drop_old_texts` now and every `every` seconds, until cancelled (a run cancelled
    mid-way rolls back and is done again by the next)."""
    if keep_days <= 0:
        return
    while True:
        try:
            await drop_old_texts(store, keep_days)
        except Exception:  # a busy or briefly unreachable database: the next run catches up
            log.exception("dropping old stories' text failed; trying again in %.0f s", every)
        await asyncio.sleep(every)
