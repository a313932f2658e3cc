"""The followers' direct-message queue: one row per member and story cluster (`dm_deliveries`), and one
summary per member and day for the stories past the daily cap (`dm_summaries`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.models import DM_MESSAGE, DM_SUMMARY, DailySummary, DirectMessage, Outgoing
from bot.store.database import Database
from bot.store.rows import daily_summary_from_row, direct_message_from_row
from bot.timeutil import from_iso, to_iso

PENDING = "pending"
_MESSAGES, _SUMMARIES = "dm_deliveries", "dm_summaries"


def _table(item: Outgoing) -> str:
    return _SUMMARIES if isinstance(item, DailySummary) else _MESSAGES


class DirectMessageTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- reads ---------------------------------------------------------------------------------------------

    async def get(self, dm_id: int) -> DirectMessage | None:
        row = await self._db.fetchone("SELECT * FROM dm_deliveries WHERE id = ?", (dm_id,))
        return direct_message_from_row(row) if row else None

    async def get_summary(self, summary_id: int) -> DailySummary | None:
        row = await self._db.fetchone("SELECT * FROM dm_summaries WHERE id = ?", (summary_id,))
        return daily_summary_from_row(row) if row else None

    async def reread(self, item: Outgoing) -> Outgoing | None:
        """The item as stored now."""
        if isinstance(item, DailySummary):
            return await self.get_summary(item.id)
        return await self.get(item.id)

    async def pending_messages(self, *, user_id: int | None = None, limit: int) -> list[DirectMessage]:
        """Story DMs not sent yet (due or waiting), oldest first."""
        if user_id is None:
            rows = await self._db.fetchall(
                "SELECT * FROM dm_deliveries WHERE status = ? AND kind = ? ORDER BY id LIMIT ?",
                (PENDING, DM_MESSAGE, limit),
            )
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM dm_deliveries WHERE status = ? AND kind = ? AND user_id = ? ORDER BY id LIMIT ?",
                (PENDING, DM_MESSAGE, user_id, limit),
            )
        return [direct_message_from_row(row) for row in rows]

    async def due_summaries(
        self, *, now: datetime, user_id: int | None = None, limit: int
    ) -> list[DailySummary]:
        """Summaries whose day is over (and whose retry time, if any, has come), oldest first."""
        if user_id is None:
            rows = await self._db.fetchall(
                "SELECT * FROM dm_summaries WHERE status = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (PENDING, to_iso(now), limit),
            )
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM dm_summaries WHERE status = ? AND next_attempt_at <= ? AND user_id = ?"
                " ORDER BY id LIMIT ?",
                (PENDING, to_iso(now), user_id, limit),
            )
        return [daily_summary_from_row(row) for row in rows]

    async def next_due_at(self) -> datetime | None:
        """When the earliest waiting DM or summary becomes due (None: nothing waits)."""
        waiting = [
            from_iso(
                await self._db.fetchval(
                    "SELECT MIN(next_attempt_at) FROM dm_deliveries"
                    " WHERE status = ? AND kind = ? AND next_attempt_at IS NOT NULL",
                    (PENDING, DM_MESSAGE),
                )
            ),
            from_iso(
                await self._db.fetchval(
                    "SELECT MIN(next_attempt_at) FROM dm_summaries WHERE status = ?", (PENDING,)
                )
            ),
        ]
        found = [moment for moment in waiting if moment is not None]
        return min(found) if found else None

    async def messages_of_day(self, user_ids: Sequence[int], day: str) -> dict[int, int]:
        """How many DMs of their own (not summary lines) these members were queued on that day."""
        rows = await self._db.select_in(
            "SELECT user_id, COUNT(*) FROM dm_deliveries WHERE user_id IN ({marks}) AND day = ? AND kind = ?"
            " GROUP BY user_id",
            user_ids,
            (day, DM_MESSAGE),
        )
        return {row[0]: row[1] for row in rows}

    async def summary_lines(self, user_id: int, day: str) -> list[DirectMessage]:
        """The stories waiting in a member's summary of that day, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM dm_deliveries WHERE user_id = ? AND day = ? AND kind = ? AND status = ? ORDER BY id",
            (user_id, day, DM_SUMMARY, PENDING),
        )
        return [direct_message_from_row(row) for row in rows]

    async def pending_of_user(self, user_id: int) -> list[DirectMessage]:
        """Every DM and summary line of the member not sent yet, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM dm_deliveries WHERE user_id = ? AND status = ? ORDER BY id", (user_id, PENDING)
        )
        return [direct_message_from_row(row) for row in rows]

    # --- queueing ------------------------------------------------------------------------------------------

    async def add(self, dm: DirectMessage) -> bool:
        """Queue a DM or summary line; False when the member has that story cluster already."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "INSERT INTO dm_deliveries(user_id, cluster_id, story_id, artist_id, day, kind, nonce,"
                " next_attempt_at, created_at) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(user_id, cluster_id) DO NOTHING",
                (
                    dm.user_id,
                    dm.cluster_id,
                    dm.story_id,
                    dm.artist_id,
                    dm.day,
                    dm.kind,
                    dm.nonce,
                    to_iso(dm.next_attempt_at),
                    to_iso(dm.created_at),
                ),
            )
        return changed > 0

    async def add_summary(self, summary: DailySummary) -> bool:
        """The member's summary of that day, unless it exists already."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "INSERT INTO dm_summaries(user_id, day, nonce, next_attempt_at, created_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT(user_id, day) DO NOTHING",
                (
                    summary.user_id,
                    summary.day,
                    summary.nonce,
                    to_iso(summary.next_attempt_at),
                    to_iso(summary.created_at),
                ),
            )
        return changed > 0

    async def set_artist(self, dm_id: int, artist_id: str) -> None:
        """Another of the member's follows speaks for the DM (the one that queued it is gone)."""
        async with self._db.transaction():
            await self._db.execute("UPDATE dm_deliveries SET artist_id = ? WHERE id = ?", (artist_id, dm_id))

    # --- the outcome of a send -----------------------------------------------------------------------------

    async def mark_attempt(self, item: Outgoing, *, at: datetime) -> None:
        """Committed before a send: after a crash the DM is known to be in doubt (the nonce settles it)."""
        async with self._db.transaction():
            await self._db.execute(
                f"UPDATE {_table(item)} SET attempts = attempts + 1, attempt_started_at = ? WHERE id = ?",
                (to_iso(at), item.id),
            )

    async def mark_sent(self, item: Outgoing, message_id: int, *, at: datetime) -> None:
        """The DM is on Discord; a summary takes its lines with it."""
        async with self._db.transaction():
            await self._db.execute(
                f"UPDATE {_table(item)} SET status = 'sent', message_id = ?, sent_at = ?, last_error = NULL"
                " WHERE id = ?",
                (message_id, to_iso(at), item.id),
            )
            if isinstance(item, DailySummary):
                await self._db.execute(
                    "UPDATE dm_deliveries SET status = 'sent', message_id = ?, sent_at = ?"
                    " WHERE user_id = ? AND day = ? AND kind = ? AND status = ?",
                    (message_id, to_iso(at), item.user_id, item.day, DM_SUMMARY, PENDING),
                )

    async def retry_later(self, item: Outgoing, *, at: datetime, error: str) -> None:
        async with self._db.transaction():
            await self._db.execute(
                f"UPDATE {_table(item)} SET next_attempt_at = ?, last_error = ? WHERE id = ?",
                (to_iso(at), error, item.id),
            )

    async def finish(self, item: Outgoing, *, status: str, error: str) -> None:
        """Never sent: 'failed' (Discord refused it, or too many tries) or 'dropped' (no longer wanted);
        a summary's lines go with it."""
        async with self._db.transaction():
            await self._db.execute(
                f"UPDATE {_table(item)} SET status = ?, last_error = ? WHERE id = ? AND status = ?",
                (status, error, item.id, PENDING),
            )
            if isinstance(item, DailySummary):
                await self._db.execute(
                    "UPDATE dm_deliveries SET status = ?, last_error = ?"
                    " WHERE user_id = ? AND day = ? AND kind = ? AND status = ?",
                    (status, error, item.user_id, item.day, DM_SUMMARY, PENDING),
                )

    async def drop(self, dm_ids: Sequence[int], *, reason: str) -> int:
        """These DMs or summary lines, if not sent yet, never will be."""
        async with self._db.transaction():
            return await self._db.execute_in(
                "UPDATE dm_deliveries SET status = 'dropped', last_error = ? WHERE status = ? AND id IN ({marks})",
                dm_ids,
                (reason, PENDING),
            )

    async def drop_user(self, user_id: int, *, reason: str) -> int:
        """Nothing waiting for the member is sent: their DMs, summary lines and summaries."""
        async with self._db.transaction():
            dropped = await self._db.execute(
                "UPDATE dm_deliveries SET status = 'dropped', last_error = ? WHERE user_id = ? AND status = ?",
                (reason, user_id, PENDING),
            )
            await self._db.execute(
                "UPDATE dm_summaries SET status = 'dropped', last_error = ? WHERE user_id = ? AND status = ?",
                (reason, user_id, PENDING),
            )
        return dropped

    async def summaries(self, *, user_id: int | None = None) -> list[DailySummary]:
        """Every daily summary (or a member's), oldest first."""
        if user_id is None:
            rows = await self._db.fetchall("SELECT * FROM dm_summaries ORDER BY id")
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM dm_summaries WHERE user_id = ? ORDER BY id", (user_id,)
            )
        return [daily_summary_from_row(row) for row in rows]

    # last in the class: below it, `list` in an annotation would name this method
    async def list(self, *, user_id: int | None = None) -> list[DirectMessage]:
        """Every DM and summary line (or a member's), oldest first."""
        if user_id is None:
            rows = await self._db.fetchall("SELECT * FROM dm_deliveries ORDER BY id")
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM dm_deliveries WHERE user_id = ? ORDER BY id", (user_id,)
            )
        return [direct_message_from_row(row) for row in rows]
