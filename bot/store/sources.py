"""Sources (the feeds polled) and their polling state and health."""

from __future__ import annotations

from bot.config import SourceConfig
from bot.models import Source
from bot.store.database import Database, marks
from bot.store.rows import source_from_row
from bot.timeutil import to_iso, utcnow


class SourceTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync_config(self, configured: tuple[SourceConfig, ...] | list[SourceConfig]) -> list[Source]:
        """Make the operator's sources match the configuration: add new, rename, re-enable, retire removed."""
        now = to_iso(utcnow())
        urls = [s.url for s in configured]
        in_list = marks(len(urls)) or "''"
        async with self._db.transaction():
            for source in configured:
                await self._db.execute(
                    "INSERT INTO sources(url, name, color, owner_guild_id, created_at) VALUES (?, ?, ?, NULL, ?)"
                    " ON CONFLICT(url) DO UPDATE SET name = excluded.name, color = excluded.color,"
                    " owner_guild_id = NULL,"
                    " disabled_reason = CASE WHEN sources.disabled_reason = 'removed from the configuration'"
                    " THEN NULL ELSE sources.disabled_reason END",
                    (source.url, source.name, source.color, now),
                )
            await self._db.execute(
                "UPDATE sources SET disabled_reason = 'removed from the configuration'"
                f" WHERE owner_guild_id IS NULL AND disabled_reason IS NULL AND url NOT IN ({in_list})",
                urls,
            )
            wanted = set(urls)
            return [s for s in await self.list() if s.url in wanted]

    async def add(self, url: str, name: str, *, owner_guild_id: int | None) -> Source:
        """Add a feed (or return the one already known by that URL)."""
        async with self._db.transaction():
            await self._db.execute(
                "INSERT INTO sources(url, name, owner_guild_id, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(url) DO NOTHING",
                (url, name, owner_guild_id, to_iso(utcnow())),
            )
            source = await self.get_by_url(url)
        assert source is not None
        return source

    # --- feeds a server added from Discord -----------------------------------------------------------------

    async def count_owned(self, guild_id: int) -> int:
        """The feeds this server added that are polled (its quota counts these)."""
        found = await self._db.fetchval(
            "SELECT COUNT(*) FROM sources WHERE owner_guild_id = ? AND disabled_reason IS NULL", (guild_id,)
        )
        return int(found or 0)

    async def revive(self, source_id: int, *, owner_guild_id: int) -> Source | None:
        """Poll a switched-off feed again, as this server's (a server added it again)."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE sources SET disabled_reason = NULL, owner_guild_id = ? WHERE id = ?",
                (owner_guild_id, source_id),
            )
            return await self.get(source_id)

    async def retire_unused(self, guild_id: int, *, reason: str) -> int:
        """Stop polling the feeds this server added that no subscription uses any more (frees its quota)."""
        async with self._db.transaction():
            return await self._db.execute(
                "UPDATE sources SET disabled_reason = ? WHERE owner_guild_id = ? AND disabled_reason IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE subscriptions.source_id = sources.id)",
                (reason, guild_id),
            )

    async def list(self, *, enabled_only: bool = False) -> list[Source]:
        sql = "SELECT * FROM sources"
        if enabled_only:
            sql += " WHERE disabled_reason IS NULL"
        return [source_from_row(row) for row in await self._db.fetchall(sql + " ORDER BY id")]

    async def get(self, source_id: int) -> Source | None:
        row = await self._db.fetchone("SELECT * FROM sources WHERE id = ?", (source_id,))
        return source_from_row(row) if row else None

    async def get_by_url(self, url: str) -> Source | None:
        row = await self._db.fetchone("SELECT * FROM sources WHERE url = ?", (url,))
        return source_from_row(row) if row else None

    async def save_state(self, source: Source) -> None:
        """Persist a source's fetch state and health after a poll."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE sources SET etag = ?, last_modified = ?, body_hash = ?, last_status = ?, last_error = ?,"
                " last_fetched_at = ?, last_success_at = ?, consecutive_failures = ?, next_poll_at = ?,"
                " disabled_reason = ? WHERE id = ?",
                (
                    source.etag,
                    source.last_modified,
                    source.body_hash,
                    source.last_status,
                    source.last_error,
                    to_iso(source.last_fetched_at),
                    to_iso(source.last_success_at),
                    source.consecutive_failures,
                    to_iso(source.next_poll_at),
                    source.disabled_reason,
                    source.id,
                ),
            )
