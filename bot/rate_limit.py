"""Discord's global request limit (50 per second per bot, all processes and shards together), kept by the bot.

`bot.global_limiter` is the one limiter every sender acquires before a request (deliveries, direct messages,
forum posts, edits). One process (SQLite): an in-process token bucket. Several processes on one PostgreSQL: a
count per one-second window in the database (`store.rates`), shared by all of them, read on the database's
clock, so together they stay under the limit with no proxy in front of Discord.

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
# Shared: 48 in each one-second window of the database's clock, 2 below Discord's 50 for requests that reach
# Discord in the next second.
SHARED_LIMIT = 48
SHARED_WINDOW_SECONDS = 1.0
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
    """Every process on one database: at most `limit` requests in each window, counted in the database."""

    def __init__(
        self,
        store: Store,
        *,
        limit: int = SHARED_LIMIT,
        window_seconds: float = SHARED_WINDOW_SECONDS,
        scope: str = SHARED_SCOPE,
    ) -> None:
        self._store = store
        self.limit, self.window_seconds, self.scope = limit, window_seconds, scope
        self._turn = asyncio.Lock()  # this process's tasks ask the database one at a time, in order

    async def acquire(self) -> None:
        async with self._turn:
            while True:
                taken = await self._store.rates.take(self.scope, self.limit, self.window_seconds)
                if taken.granted:
                    break
                await asyncio.sleep(taken.wait + 0.002)  # the window is full: ask again when the next opens
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
