"""Discord's global request limit (50 per second per bot, all processes and shards together), kept by the bot.

`bot.global_limiter` is the one limiter every sender acquires before a request (deliveries, direct messages,
forum posts, edits): requests go in slots one 47th of a second apart. One process (SQLite): the slots are kept in
memory. Several processes on one PostgreSQL: they are reserved in the database (`store.rates`) on its clock, so
all processes together stay under the limit with no proxy in front of Discord. Slots, not counts per second:
Discord (like the tests' server) counts any one second, not calendar seconds, and a count per calendar second
lets 48 go at the end of one and 48 more at the start of the next.

Requests a sender did not acquire for (logging in, syncing commands, a cog's REST call) are counted too:
`request_trace` hooks discord.py's HTTP session (its public `http_trace` option) and acquires before any
request that carries the bot token, unless the task acquired for it already. Interaction answers carry no
token and are exempt, as on Discord.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from bot.store import Store

log = logging.getLogger(__name__)

# One request every 1/47 s, all processes together. A request starts at its slot or within one slot after it,
# else it takes a new one: a busy process (or discord.py holding requests back after a 429) never sends a late
# bunch. So at most 48 start in any one second, and 2 to spare for the way to Discord (the time between the
# start and Discord's count varies with each machine's load).
RATE = 47.0
SHARED_SCOPE = "discord"

# Set by acquire(): until when (wall clock) the task's next request to Discord may use the slot it waited for;
# the HTTP hook lets that request go without a slot of its own. None: nothing paid for.
_paid_until: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "kpopnews_limiter_paid", default=None
)


class GlobalLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait until one more request to Discord keeps the bot under the global limit; the task's next
        request to Discord is that one."""


class SlotLimiter:
    """Requests one interval apart: each takes the next free slot (`_reserve`) and waits for it. Slots are wall
    clock times (`time.time()`), so processes on one machine, or on machines with synchronised clocks, agree on
    them however long the answer took to reach each of them."""

    def __init__(self, rate: float = RATE) -> None:
        self.rate = rate
        self.late = 0  # slots given up because the request could not go in time (for the log)

    async def _reserve(self, interval: float) -> float:
        """Take the next slot: when it is, in seconds since the epoch."""
        raise NotImplementedError

    async def acquire(self) -> None:
        interval = 1.0 / self.rate
        while True:
            slot = await self._reserve(interval)
            wait = slot - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.time() <= slot + interval:
                _paid_until.set(slot + interval)
                return
            self.late += 1  # woke too late: going now would bunch with the requests of the slots after it
            if self.late % 100 == 1:
                log.info("%d request slots given up so far: this process woke too late for them", self.late)


class LocalLimiter(SlotLimiter):
    """One process (SQLite): the slots in memory."""

    def __init__(self, rate: float = RATE) -> None:
        super().__init__(rate)
        self._next = 0.0

    async def _reserve(self, interval: float) -> float:
        slot = max(self._next, time.time())
        self._next = slot + interval
        return slot


class SharedLimiter(SlotLimiter):
    """Every process on one database: the slots reserved in the database, on its clock."""

    def __init__(self, store: Store, *, rate: float = RATE, scope: str = SHARED_SCOPE) -> None:
        super().__init__(rate)
        self._store, self.scope = store, scope

    async def _reserve(self, interval: float) -> float:
        return await self._store.rates.reserve(self.scope, interval)


def limiter_for(store: Store) -> GlobalLimiter:
    """The global limiter for a process using `store`: shared when other processes may use it too."""
    return SharedLimiter(store) if store.shared else LocalLimiter()


def request_trace(limiter: Callable[[], GlobalLimiter]) -> aiohttp.TraceConfig:
    """A trace for discord.py's HTTP session (`http_trace=`): every request carrying the bot token goes in its
    slot: the one its task acquired, if the request starts in time, else one it waits for here."""

    async def on_request_start(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
        if "Authorization" not in params.headers:  # interaction answers, webhooks, the gateway: exempt
            return
        paid = _paid_until.get()
        while paid is None or time.time() > paid:  # nothing paid, or discord.py held it back past its slot
            await limiter().acquire()
            paid = _paid_until.get()
        _paid_until.set(None)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return trace
