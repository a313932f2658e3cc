"""Sources (the feeds polled) and their polling state and health."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from bot.config import SourceConfig
from bot.models import Source
from bot.store.database import Database, marks
from bot.store.rows import source_from_row
from bot.timeutil import to_iso, utcnow

REMOVED_FROM_CONFIG: Final = "removed from the configuration"
ANY_STATE: Final = object()  # save_state: write the on/off state whatever is stored


class SourceTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync_config(self, configured: tuple[SourceConfig, ...] | list[SourceConfig]) -> list[Source]:
        """Make the operator's sources match the configuration: add new, rename, re-enable, retire removed.

        A configured URL that a permanent redirect moved elsewhere is still that source (matched by the address
        it moved from), so a configuration that still names the old address neither re-adds nor retires it."""
        now = to_iso(utcnow())
        urls = {s.url for s in configured}
        kept: list[str] = []
        async with self._db.transaction():
            for source in configured:
                moved = None
                if await self._db.fetchval("SELECT id FROM sources WHERE url = ?", (source.url,)) is None:
                    moved = await self._db.fetchone(
                        "SELECT id, url FROM sources WHERE moved_from = ? AND owner_guild_id IS NULL ORDER BY id",
                        (source.url,),
                    )
                if moved is not None:
                    if moved["url"] not in urls:  # also configured under its new address: that entry names it
                        await self._db.execute(
                            "UPDATE sources SET name = ?, color = ?, disabled_reason = CASE"
                            " WHEN disabled_reason = ? THEN NULL ELSE disabled_reason END WHERE id = ?",
                            (source.name, source.color, REMOVED_FROM_CONFIG, moved["id"]),
                        )
                    kept.append(moved["url"])
                    continue
                await self._db.execute(
                    "INSERT INTO sources(url, name, color, owner_guild_id, created_at) VALUES (?, ?, ?, NULL, ?)"
                    " ON CONFLICT(url) DO UPDATE SET name = excluded.name, color = excluded.color,"
                    " owner_guild_id = NULL,"
                    " disabled_reason = CASE WHEN sources.disabled_reason = ?"
                    " THEN NULL ELSE sources.disabled_reason END",
                    (source.url, source.name, source.color, now, REMOVED_FROM_CONFIG),
                )
                kept.append(source.url)
            # retired whether enabled or disabled by the poller: a removed source is not probed either
            in_list = marks(len(kept)) or "''"
            await self._db.execute(
                "UPDATE sources SET disabled_reason = ?, probe_at = NULL, probes = 0 WHERE owner_guild_id IS NULL"
                f" AND (disabled_reason IS NULL OR probe_at IS NOT NULL) AND url NOT IN ({in_list})",
                [REMOVED_FROM_CONFIG, *kept],
            )
            wanted = set(kept)
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
                "UPDATE sources SET disabled_reason = NULL, probe_at = NULL, probes = 0, owner_guild_id = ? WHERE id = ?",
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

    async def list_to_poll(self) -> list[Source]:
        """The enabled sources, and the disabled ones the poller probes (whenever their probe is due) that are
        still wanted: the operator's, or a server's feed some subscription uses."""
        rows = await self._db.fetchall(
            "SELECT * FROM sources WHERE disabled_reason IS NULL OR (probe_at IS NOT NULL AND (owner_guild_id IS NULL"
            " OR EXISTS (SELECT 1 FROM subscriptions WHERE subscriptions.source_id = sources.id))) ORDER BY id"
        )
        return [source_from_row(row) for row in rows]

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

    async def story_counts(self) -> dict[int, int]:
        """Stories stored per source id (each story its feed carried, wherever it was first seen)."""
        rows = await self._db.fetchall("SELECT source_id, COUNT(*) FROM source_stories GROUP BY source_id")
        return {source_id: count for source_id, count in rows}

    async def save_state(self, source: Source, *, expected_reason: str | None | object = ANY_STATE) -> None:
        """Persist a source's fetch state and health after a poll.

        With `expected_reason` (the disabled_reason the poll started from), its on/off state (disabled_reason,
        probe) is written only if the stored one is still that: a source switched off or on by someone else
        while it was polled stays as they left it, and `source` is updated to match."""
        async with self._db.transaction():
            if expected_reason is not ANY_STATE:
                row = await self._db.fetchone("SELECT * FROM sources WHERE id = ?", (source.id,))
                if row is None:
                    return  # deleted meanwhile
                stored = source_from_row(row)
                if stored.disabled_reason != expected_reason:
                    source.disabled_reason, source.probe_at = stored.disabled_reason, stored.probe_at
                    source.probes = stored.probes
            await self._db.execute(
                "UPDATE sources SET etag = ?, last_modified = ?, body_hash = ?, last_status = ?, last_error = ?,"
                " last_fetched_at = ?, last_success_at = ?, consecutive_failures = ?, next_poll_at = ?,"
                " disabled_reason = ?, probe_at = ?, probes = ?, redirect_to = ?, redirects_seen = ?"
                " WHERE id = ?",
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
                    to_iso(source.probe_at),
                    source.probes,
                    source.redirect_to,
                    source.redirects_seen,
                    source.id,
                ),
            )

    async def move(self, source: Source, new_url: str, *, at: datetime) -> Source | None:
        """Poll `source` at `new_url` from now on (its feed moved there for good), keeping the address it first
        had as moved_from; `source` is updated. When `new_url` is already another source's, nothing moves (the
        URL is unique): returns that other source."""
        async with self._db.transaction():
            row = await self._db.fetchone(
                "SELECT * FROM sources WHERE url = ? AND id <> ?", (new_url, source.id)
            )
            if row is not None:
                return source_from_row(row)
            first = source.moved_from or source.url
            source.moved_from = first if first != new_url else None  # moved back: no longer moved
            source.url, source.moved_at = new_url, at
            source.redirect_to, source.redirects_seen = None, 0
            await self._db.execute(
                "UPDATE sources SET url = ?, moved_from = ?, moved_at = ?, redirect_to = NULL, redirects_seen = 0"
                " WHERE id = ?",
                (source.url, source.moved_from, to_iso(at), source.id),
            )
        return None

    async def disable(self, source_id: int, reason: str) -> None:
        """Switch a source off for a person's reason: not polled, not probed, until enabled again."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE sources SET disabled_reason = ?, probe_at = NULL, probes = 0 WHERE id = ?",
                (reason, source_id),
            )

    async def enable(self, source_id: int) -> None:
        """Switch a disabled source back on now: polled at the next pass, its failure count cleared."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE sources SET disabled_reason = NULL, probe_at = NULL, probes = 0, consecutive_failures = 0,"
                " next_poll_at = NULL WHERE id = ?",
                (source_id,),
            )
