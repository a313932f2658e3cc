"""A request rate shared by every process: each request takes the next free slot of its scope (table rate_slots,
migration 0900), slots one interval apart, so all processes together send at most one request per interval.

On PostgreSQL the slots are read on the database's clock, so processes on several machines agree on them. A slot
is a reservation: the caller waits until it comes (`reserve` says when), so processes are served in the order
they asked, and nobody polls a full window.
"""

from __future__ import annotations

import time

from bot.store.database import Database


class RateTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, scope: str, interval_seconds: float) -> float:
        """Take the next slot of `scope` (the one after the last taken, or now if that is past) and move the
        next one `interval_seconds` later. Returns when the slot is, in seconds since the epoch (on PostgreSQL
        the database's clock: compare it with `time.time()` on machines whose clocks are synchronised)."""
        interval_ms = interval_seconds * 1000
        if self._db.dialect == "postgresql":
            rows = await self._db.write_returning(
                "WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS ms)"
                " INSERT INTO rate_slots AS r (scope, next_at) SELECT ?, ms + ? FROM clock"
                " ON CONFLICT (scope) DO UPDATE SET next_at = GREATEST(r.next_at, (SELECT ms FROM clock)) + ?"
                " RETURNING r.next_at",
                (scope, interval_ms, interval_ms),
            )
        else:
            now_ms = time.time() * 1000
            rows = await self._db.write_returning(
                "INSERT INTO rate_slots(scope, next_at) VALUES (?, ?) ON CONFLICT(scope) DO UPDATE"
                " SET next_at = MAX(next_at, ?) + ? RETURNING next_at",
                (scope, now_ms + interval_ms, now_ms, interval_ms),
            )
        return (float(rows[0][0]) - interval_ms) / 1000
