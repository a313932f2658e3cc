"""Follows (/follow): which member follows which artist, and each follower's DM state (locale, DM channel, pause)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.models import STATUS_OK, STATUS_PAUSED, Follow, Follower
from bot.store.database import Database
from bot.store.rows import follow_from_row, follower_from_row
from bot.timeutil import to_iso

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FollowTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- reads ---------------------------------------------------------------------------------------------

    async def follower(self, user_id: int) -> Follower | None:
        row = await self._db.fetchone("SELECT * FROM followers WHERE user_id = ?", (user_id,))
        return follower_from_row(row) if row else None

    async def of_user(self, user_id: int) -> list[Follow]:
        """A member's follows, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM follows WHERE user_id = ? ORDER BY created_at, artist_id", (user_id,)
        )
        return [follow_from_row(row) for row in rows]

    async def count(self, user_id: int) -> int:
        return int(await self._db.fetchval("SELECT COUNT(*) FROM follows WHERE user_id = ?", (user_id,)) or 0)

    async def followed_artists(self) -> list[str]:
        """Every artist someone follows (a few thousand at most, whatever the number of follows)."""
        rows = await self._db.fetchall("SELECT DISTINCT artist_id FROM follows ORDER BY artist_id")
        return [row[0] for row in rows]

    async def to_match(self, *, artist_ids: Sequence[str], below_story_id: int) -> list[Follow]:
        """The follows of these artists that may take a story with an id up to `below_story_id`: their member
        is not paused; oldest first."""
        rows = await self._db.select_in(
            "SELECT f.* FROM follows f JOIN followers u ON u.user_id = f.user_id"
            " WHERE f.artist_id IN ({marks}) AND u.status != ? AND f.start_story_id < ?",
            artist_ids,
            (STATUS_PAUSED, below_story_id),
        )
        follows = [follow_from_row(row) for row in rows]
        return sorted(follows, key=lambda f: (f.created_at or _EPOCH, f.user_id, f.artist_id))

    async def needs_notice(self, user_id: int) -> bool:
        """Whether the member is paused and has not been told yet."""
        found = await self._db.fetchval(
            "SELECT 1 FROM followers WHERE user_id = ? AND status = ? AND told_at IS NULL",
            (user_id, STATUS_PAUSED),
        )
        return found is not None

    # --- writes --------------------------------------------------------------------------------------------

    async def add(self, user_id: int, artist_id: str, *, locale: str | None, at: datetime) -> bool:
        """Follow an artist (the member's row is made, or its locale updated). Stories stored before now (ids
        up to the newest) are never DMed for it. False when the member followed it already."""
        async with self._db.transaction():
            await self._db.execute(
                "INSERT INTO followers(user_id, locale, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET locale = COALESCE(excluded.locale, followers.locale)",
                (user_id, locale, to_iso(at)),
            )
            added = await self._db.execute(
                "INSERT INTO follows(user_id, artist_id, created_at, start_story_id)"
                " SELECT ?, ?, ?, COALESCE(MAX(id), 0) FROM stories WHERE true"  # WHERE: SQLite's upsert rule
                " ON CONFLICT(user_id, artist_id) DO NOTHING",
                (user_id, artist_id, to_iso(at)),
            )
        return added > 0

    async def remove(self, user_id: int, artist_id: str) -> bool:
        async with self._db.transaction():
            removed = await self._db.execute(
                "DELETE FROM follows WHERE user_id = ? AND artist_id = ?", (user_id, artist_id)
            )
        return removed > 0

    async def pause(self, user_id: int, *, reason: str, at: datetime) -> bool:
        """The member cannot be reached (DMs closed): nothing is sent to them until they resume. False when
        they were paused already (the first reason and time stay)."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "UPDATE followers SET status = ?, paused_at = ?, paused_reason = ?, told_at = NULL"
                " WHERE user_id = ? AND status != ?",
                (STATUS_PAUSED, to_iso(at), reason, user_id, STATUS_PAUSED),
            )
        return changed > 0

    async def resume(self, user_id: int) -> bool:
        """DMs go to the member again. False when they were not paused."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "UPDATE followers SET status = ?, paused_at = NULL, paused_reason = NULL, told_at = NULL"
                " WHERE user_id = ? AND status = ?",
                (STATUS_OK, user_id, STATUS_PAUSED),
            )
        return changed > 0

    async def claim_notice(self, user_id: int, *, at: datetime) -> bool:
        """Mark a paused member as told; True for the one caller that should tell them."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "UPDATE followers SET told_at = ? WHERE user_id = ? AND status = ? AND told_at IS NULL",
                (to_iso(at), user_id, STATUS_PAUSED),
            )
        return changed > 0

    async def release_notice(self, user_id: int) -> None:
        """Telling them failed: the next command tells them."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE followers SET told_at = NULL WHERE user_id = ? AND status = ?",
                (user_id, STATUS_PAUSED),
            )

    async def set_dm_channel(self, user_id: int, channel_id: int | None) -> None:
        """The bot's DM channel with the member (None: forget it, it is opened again at the next DM)."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE followers SET dm_channel_id = ? WHERE user_id = ?", (channel_id, user_id)
            )
