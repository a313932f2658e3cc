"""Request counts shared by every process: fixed windows of time per scope (table rate_windows, migration 0900).

A limiter asks `take(scope, limit, window_seconds)` before each request; granted while the current window has
room, else it waits for the next window. On PostgreSQL the window is read from the database's clock, so processes
on several machines agree on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.store.database import Database

KEEP_WINDOWS_MS = 60_000  # windows older than this are deleted (when a new one opens)


@dataclass(frozen=True)
class Taken:
    granted: bool  # counted in the current window, which had room
    wait: (
        float  # seconds until the next window opens (when not granted: how long to wait before asking again)
    )


class RateTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def take(self, scope: str, limit: int, window_seconds: float) -> Taken:
        """Count one request in the current window of `scope`; granted when it is among the first `limit`."""
        window_ms = max(1, round(window_seconds * 1000))
        async with self._db.transaction():  # one short statement: committed at once
            if self._db.dialect == "postgresql":
                row = await self._db.fetchone(
                    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms)"
                    " INSERT INTO rate_windows AS w (scope, window_start, count)"
                    " SELECT ?, ms - ms % ?, 1 FROM clock"
                    " ON CONFLICT (scope, window_start) DO UPDATE SET count = w.count + 1"
                    " RETURNING w.count, w.window_start, (SELECT ms FROM clock)",
                    (scope, window_ms),
                )
            else:
                now_ms = int(time.time() * 1000)
                row = await self._db.fetchone(
                    "INSERT INTO rate_windows(scope, window_start, count) VALUES (?, ?, 1)"
                    " ON CONFLICT(scope, window_start) DO UPDATE SET count = count + 1"
                    " RETURNING count, window_start, ?",
                    (scope, now_ms - now_ms % window_ms, now_ms),
                )
            assert row is not None
            count, start, now = int(row[0]), int(row[1]), int(row[2])
            if count == 1:  # a new window: forget the old ones
                await self._db.execute(
                    "DELETE FROM rate_windows WHERE scope = ? AND window_start < ?",
                    (scope, start - KEEP_WINDOWS_MS),
                )
        return Taken(count <= limit, max(0.0, (start + window_ms - now) / 1000))

    async def counts(self, scope: str) -> dict[int, int]:
        """The windows kept for `scope`: {window start in ms: requests counted (refused ones too)}."""
        rows = await self._db.fetchall(
            "SELECT window_start, count FROM rate_windows WHERE scope = ? ORDER BY window_start", (scope,)
        )
        return {int(start): int(count) for start, count in rows}
