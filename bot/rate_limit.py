"""Discord's global request limit (50 per second per bot, all processes and shards together), kept by the bot.

`bot.global_limiter` is the one limiter every sender acquires before a request (deliveries, direct messages,
forum posts, edits). One process (SQLite): an in-process token bucket. Several processes on one PostgreSQL:
slots one 47th of a second apart, reserved in the database (`store.rates`) on its clock, so together they stay
under the limit with no proxy in front of Discord. Slots, not counts per second: Discord (like the tests' server)
counts any one second, not calendar seconds, and a count per calendar second lets 48 go at the end of one and 48
more at the start of the next.

Requests a sender did not acquire for (logging in, syncing commands, a cog's REST call) are counted too:
`request_trace` hooks discord.py's HTTP session (its public `http_trace` option) and acquires before any
request that carries the bot token, unless the task acquired for it already. Interaction answers carry no
token and are exempt, as on Discord.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from aiolimiter import AsyncLimiter

from bot.store import Store

# 48 requests/s with a bucket of 2: a late wake-up is caught up (a bucket of 1 loses it, ~46/s in practice),
# and any one-second window still holds at most 2 + 48 = 50 requests: the bot never causes a global 429.
LOCAL_RATE = 48.0
LOCAL_BURST = 2
# Shared: one request every 1/47 s, so at most 48 in any second when each goes at its slot, and 2 to spare for
# requests that reach Discord a little late (a busy process).
SHARED_RATE = 47.0
SHARED_SCOPE = "discord"

# Set by acquire(): the task's next request to Discord is paid for, so the HTTP hook does not count it again.
_prepaid: contextvars.ContextVar[bool] = contextvars.ContextVar("kpopnews_limiter_prepaid", default=False)


class GlobalLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait until one more request to Discord keeps the bot under the global limit; the task's next
        request to Discord is that one."""


class LocalLimiter:
    """One process: a token bucket in memory."""

    def __init__(self, rate: float = LOCAL_RATE, burst: int = LOCAL_BURST) -> None:
        self._bucket = AsyncLimiter(burst, burst / rate)

    async def acquire(self) -> None:
        await self._bucket.acquire()
        _prepaid.set(True)


class SharedLimiter:
    """Every process on one database: each request waits for its slot, reserved in the database."""

    def __init__(self, store: Store, *, rate: float = SHARED_RATE, scope: str = SHARED_SCOPE) -> None:
        self._store = store
        self.rate, self.scope = rate, scope

    async def acquire(self) -> None:
        wait = await self._store.rates.reserve(self.scope, 1.0 / self.rate)
        if wait > 0:
            await asyncio.sleep(wait)
        _prepaid.set(True)


def limiter_for(store: Store) -> GlobalLimiter:
    """The global limiter for a process using `store`: shared when other processes may use it too."""
    return SharedLimiter(store) if store.shared else LocalLimiter()


def request_trace(limiter: Callable[[], GlobalLimiter]) -> aiohttp.TraceConfig:
    """A trace for discord.py's HTTP session (`http_trace=`): every request carrying the bot token waits for
    `limiter()` unless its task acquired already."""

    async def on_request_start(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
        if "Authorization" not in params.headers:  # interaction answers, webhooks, the gateway: exempt
            return
        if not _prepaid.get():
            await limiter().acquire()
        _prepaid.set(False)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return trace
