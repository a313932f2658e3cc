"""Sources (the feeds polled) and their polling state and health."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from bot.config import SourceConfig
from bot.models import Source
from bot.store.database import Database, marks
from bot.store.rows import source_from_row
from bot.timeutil import from_iso, to_iso, utcnow

REMOVED_FROM_CONFIG: Final = "removed from the configuration"
ANY_STATE: Final = object()  # save_state: write the on/off state whatever is stored

# The sources the poller polls: enabled, or disabled by the poller and probed while someone still wants them
# (the operator's, or a server's feed some subscription uses).
_WANTED = (
    "(disabled_reason IS NULL OR (probe_at IS NOT NULL AND (owner_guild_id IS NULL"
    " OR EXISTS (SELECT 1 FROM subscriptions WHERE subscriptions.source_id = sources.id))))"
)
# When a wanted source is due: its next poll, or its next probe while disabled.
_DUE_AT = "CASE WHEN disabled_reason IS NULL THEN next_poll_at ELSE probe_at END"


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
        rows = await self._db.fetchall(f"SELECT * FROM sources WHERE {_WANTED} ORDER BY id")
        return [source_from_row(row) for row in rows]

    # --- claims: each source polled by one process at a time (several processes, one bot) -------------------

    async def unscheduled(self, *, overdue_before: datetime | None = None) -> list[Source]:
        """The enabled sources with no next poll yet (new, or enabled again), and with `overdue_before` those
        whose next poll is older than it (nobody polled them for a while: the bot was down), not claimed."""
        sql = "SELECT * FROM sources WHERE disabled_reason IS NULL AND claimed_by IS NULL AND (next_poll_at IS NULL"
        params: list[str | None] = []
        if overdue_before is not None:
            sql += " OR next_poll_at < ?"
            params.append(to_iso(overdue_before))
        rows = await self._db.fetchall(sql + ") ORDER BY id", params)
        return [source_from_row(row) for row in rows]

    async def schedule(self, slots: Sequence[tuple[Source, datetime]]) -> int:
        """Set each source's next poll, unless another process changed it since `source` was read (then theirs
        stands). Returns how many were set."""
        changed = 0
        async with self._db.transaction():
            for source, at in slots:
                changed += await self._db.execute(
                    "UPDATE sources SET next_poll_at = ? WHERE id = ? AND COALESCE(next_poll_at, '') = ?",
                    (to_iso(at), source.id, to_iso(source.next_poll_at) or ""),
                )
        return changed

    async def claim_due(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[Source]:
        """Claim up to `limit` sources due for a poll (or a probe) that no process holds, soonest due first, for
        `lease_seconds`: no other process takes them until the claim is released or its lease runs out (the
        process died). On PostgreSQL rows another process is claiming are skipped, not waited for."""
        if limit <= 0:
            return []
        moment = to_iso(now)
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        rows = await self._db.write_returning(
            "UPDATE sources SET claimed_by = ?, claim_until = ? WHERE id IN ("
            f"SELECT id FROM sources WHERE {_WANTED} AND {_DUE_AT} <= ?"
            " AND (claim_until IS NULL OR claim_until <= ?)"
            f" ORDER BY {_DUE_AT}, id LIMIT ?{skip_locked}) RETURNING *",
            (owner, to_iso(now + timedelta(seconds=lease_seconds)), moment, moment, limit),
        )
        claimed = [source_from_row(row) for row in rows]
        return sorted(
            claimed, key=lambda s: (to_iso(s.next_poll_at if s.enabled else s.probe_at) or "", s.id or 0)
        )

    async def claim(self, source_id: int, owner: str, now: datetime, lease_seconds: float) -> bool:
        """Claim one source now, due or not, unless a process holds it. Returns whether it is this owner's."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "UPDATE sources SET claimed_by = ?, claim_until = ? WHERE id = ?"
                " AND (claim_until IS NULL OR claim_until <= ? OR claimed_by = ?)",
                (owner, to_iso(now + timedelta(seconds=lease_seconds)), source_id, to_iso(now), owner),
            )
        return changed > 0

    async def renew_claims(self, owner: str, source_ids: Sequence[int], *, until: datetime) -> int:
        """Extend this owner's claims on these sources (polls still running). Returns how many it still held."""
        if not source_ids:
            return 0
        async with self._db.transaction():
            return await self._db.execute_in(
                "UPDATE sources SET claim_until = ? WHERE claimed_by = ? AND id IN ({marks})",
                source_ids,
                (to_iso(until), owner),
            )

    async def release(self, source_id: int, owner: str, *, now: datetime, fallback: datetime) -> None:
        """The poll is done: the source is free again. A next poll (or probe) still not in the future (its state
        could not be saved) is moved to `fallback`, so a failing save never polls the feed in a loop."""
        moment = to_iso(now)
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE sources SET claimed_by = NULL, claim_until = NULL,"
                " next_poll_at = CASE WHEN disabled_reason IS NULL AND (next_poll_at IS NULL OR next_poll_at <= ?)"
                " THEN ? ELSE next_poll_at END,"
                " probe_at = CASE WHEN probe_at IS NOT NULL AND probe_at <= ? THEN ? ELSE probe_at END"
                " WHERE id = ? AND claimed_by = ?",
                (moment, to_iso(fallback), moment, to_iso(fallback), source_id, owner),
            )

    async def release_all(self, owner: str) -> int:
        """Every claim of this owner given up at once (it stops): the others may take them over now."""
        async with self._db.transaction():
            return await self._db.execute(
                "UPDATE sources SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = ?", (owner,)
            )

    async def next_due_at(self, owner: str, now: datetime) -> datetime | None:
        """When a source may next be claimed by `owner`: the soonest next poll or probe of a source no process
        holds, or the end of another process's claim (it may have died). None: nothing is scheduled."""
        moment = to_iso(now)
        return from_iso(
            await self._db.fetchval(
                "SELECT MIN(CASE WHEN claim_until IS NULL OR claim_until <= ? THEN"
                f" {_DUE_AT} WHEN claimed_by <> ? THEN claim_until END) FROM sources WHERE {_WANTED}",
                (moment, owner),
            )
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
