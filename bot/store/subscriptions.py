"""Subscriptions: which channel wants which stories, and each one's health."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.models import STATUS_OK, STATUS_PAUSED, PostOptions, Subscription
from bot.store.database import Database
from bot.store.rows import subscription_from_row, words_to_json
from bot.timeutil import from_iso, to_iso

_SELECT = (
    "SELECT s.*, src.name AS source_name FROM subscriptions s LEFT JOIN sources src ON src.id = s.source_id"
)


class SubscriptionTable:
    def __init__(self, db: Database) -> None:
        self._db = db
        # Every feed's new stories are matched against every subscription (`to_match`): on SQLite the list is kept
        # between feeds instead of read and built again (a thousand rows a feed was a fifth of the bot's ingest).
        # Every write to subscriptions goes through this table and drops the kept lists; one is used only when no
        # rollback and no other connection's commit came since it was read (see `to_match`).
        self._kept: dict[bool, tuple[tuple[int, int], list[Subscription]]] = {}

    # --- reads ---------------------------------------------------------------------------------------------

    async def get(self, subscription_id: int) -> Subscription | None:
        row = await self._db.fetchone(_SELECT + " WHERE s.id = ?", (subscription_id,))
        return subscription_from_row(row) if row else None

    async def find(
        self, *, channel_id: int, artist_id: str | None, source_id: int | None
    ) -> Subscription | None:
        """The channel's subscription to exactly this artist and source (None: every one)."""
        row = await self._db.fetchone(
            _SELECT
            + " WHERE s.channel_id = ? AND COALESCE(s.artist_id, '') = ? AND COALESCE(s.source_id, 0) = ?",
            (channel_id, artist_id or "", source_id or 0),
        )
        return subscription_from_row(row) if row else None

    async def to_match(self, *, only_trending: bool, below_story_id: int) -> list[Subscription]:
        """The subscriptions that may take a story with an id up to `below_story_id`: not paused, trending-only
        or not as asked, oldest first. Shared objects: read them, do not change them.

        Inside a transaction on SQLite (the caller holds this process's only writer: no write of it is half done)
        the list read last is given again while nothing changed it: no write through this table, no rollback,
        and no commit by another connection to the file (`PRAGMA data_version`: another Store, `poll --once`).
        Everything matching and queueing read is then current (`last_post_at` and `source_name` may be older)."""
        keep = self._db.dialect == "sqlite" and self._db.in_transaction()
        stamp = (self._db.rollbacks, await self._db.fetchval("PRAGMA data_version") if keep else 0)
        kept = self._kept.get(only_trending) if keep else None
        if kept is not None and kept[0] == stamp:
            subscriptions = kept[1]
        else:
            rows = await self._db.fetchall(
                _SELECT + " WHERE s.status != ? AND s.only_trending = ? ORDER BY s.id",
                (STATUS_PAUSED, int(only_trending)),
            )
            subscriptions = [subscription_from_row(row) for row in rows]
            if keep:
                self._kept[only_trending] = (stamp, subscriptions)
        return [s for s in subscriptions if s.start_story_id < below_story_id]

    def _changed(self) -> None:
        self._kept.clear()

    async def any_trending(self) -> bool:
        """Whether any trending-only subscription is active (most servers have none)."""
        found = await self._db.fetchval(
            "SELECT 1 FROM subscriptions WHERE only_trending = 1 AND status != ? LIMIT 1", (STATUS_PAUSED,)
        )
        return found is not None

    async def channel_failures(self, channel_id: int) -> int:
        """The refusals in a row of the channel's most refused subscription."""
        found = await self._db.fetchval(
            "SELECT COALESCE(MAX(failures), 0) FROM subscriptions WHERE channel_id = ?", (channel_id,)
        )
        return int(found or 0)

    async def publish_resumes_at(self, channel_id: int) -> datetime | None:
        """Until when the channel may publish nothing (its publish limit was reached), if it was reached."""
        return from_iso(
            await self._db.fetchval(
                "SELECT MAX(publish_resumes_at) FROM subscriptions WHERE channel_id = ?", (channel_id,)
            )
        )

    # --- writes --------------------------------------------------------------------------------------------

    async def add(
        self,
        *,
        guild_id: int,
        channel_id: int,
        artist_id: str | None,
        source_id: int | None,
        only_trending: bool,
        created_by: int | None,
        at: datetime,
        options: PostOptions | None = None,
    ) -> Subscription:
        """A new subscription; stories stored before it (ids up to the newest now) are never posted to it."""
        options = options or PostOptions()
        async with self._db.transaction():
            self._changed()
            new_id = await self._db.insert(
                "INSERT INTO subscriptions(guild_id, channel_id, artist_id, source_id, only_trending, created_by,"
                " created_at, kind, ping_role_id, keywords_json, exclude_json, threads, start_story_id)"
                " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(MAX(id), 0) FROM stories",
                (
                    guild_id,
                    channel_id,
                    artist_id,
                    source_id,
                    int(only_trending),
                    created_by,
                    to_iso(at),
                    options.kind,
                    options.ping_role_id,
                    words_to_json(list(options.keywords)),
                    words_to_json(list(options.exclude)),
                    int(options.threads),
                ),
            )
            subscription = await self.get(new_id)
        assert subscription is not None
        return subscription

    async def resume(
        self, subscription_id: int, *, only_trending: bool, options: PostOptions | None = None
    ) -> Subscription | None:
        """Set `only_trending` and the options (None: as they are), and make the subscription healthy again
        (an admin says the problem is fixed)."""
        async with self._db.transaction():
            self._changed()
            await self._db.execute(
                "UPDATE subscriptions SET only_trending = ?, status = ?, failures = 0, retry_at = NULL WHERE id = ?",
                (int(only_trending), STATUS_OK, subscription_id),
            )
            if options is not None:
                await self._db.execute(
                    "UPDATE subscriptions SET kind = ?, ping_role_id = ?, keywords_json = ?, exclude_json = ?,"
                    " threads = ? WHERE id = ?",
                    (
                        options.kind,
                        options.ping_role_id,
                        words_to_json(list(options.keywords)),
                        words_to_json(list(options.exclude)),
                        int(options.threads),
                        subscription_id,
                    ),
                )
            return await self.get(subscription_id)

    async def set_channel_kind(self, channel_id: int, kind: str) -> None:
        """The channel's kind as Discord says it is now, on every subscription of the channel."""
        async with self._db.transaction():
            self._changed()
            await self._db.execute(
                "UPDATE subscriptions SET kind = ? WHERE channel_id = ? AND kind != ?",
                (kind, channel_id, kind),
            )

    async def record_publish_limit(self, channel_id: int, *, at: datetime, resumes_at: datetime) -> None:
        """The channel reached Discord's publish limit: nothing is published there before `resumes_at`."""
        async with self._db.transaction():
            self._changed()
            await self._db.execute(
                "UPDATE subscriptions SET publish_limited_at = ?, publish_resumes_at = ? WHERE channel_id = ?",
                (to_iso(at), to_iso(resumes_at), channel_id),
            )

    async def delete(self, subscription_ids: Sequence[int]) -> int:
        async with self._db.transaction():
            self._changed()
            return await self._db.execute_in(
                "DELETE FROM subscriptions WHERE id IN ({marks})", subscription_ids
            )

    async def delete_channel(self, channel_id: int) -> int:
        async with self._db.transaction():
            self._changed()
            return await self._db.execute("DELETE FROM subscriptions WHERE channel_id = ?", (channel_id,))

    async def delete_guild(self, guild_id: int) -> int:
        async with self._db.transaction():
            self._changed()
            return await self._db.execute("DELETE FROM subscriptions WHERE guild_id = ?", (guild_id,))

    async def record_post(self, channel_id: int, *, at: datetime) -> None:
        """A post reached the channel: its subscriptions are healthy (a paused one stays paused)."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE subscriptions SET last_post_at = ? WHERE channel_id = ?", (to_iso(at), channel_id)
            )
            # a change only when one was unhealthy: posts come many a second, and the kept list (see `to_match`)
            # need not be read again for each
            healed = await self._db.execute(
                "UPDATE subscriptions SET status = CASE WHEN status = ? THEN status ELSE ? END, failures = 0,"
                " retry_at = NULL WHERE channel_id = ? AND (status NOT IN (?, ?) OR failures != 0 OR retry_at IS"
                " NOT NULL)",
                (STATUS_PAUSED, STATUS_OK, channel_id, STATUS_PAUSED, STATUS_OK),
            )
            if healed:
                self._changed()

    async def record_refusal(
        self,
        channel_id: int,
        *,
        status: str,
        failures: int,
        error: str,
        at: datetime,
        retry_at: datetime | None,
    ) -> None:
        """Discord refused a post to the channel: its subscriptions not paused yet take this health."""
        async with self._db.transaction():
            self._changed()
            await self._db.execute(
                "UPDATE subscriptions SET status = ?, failures = ?, last_error = ?, last_error_at = ?, retry_at = ?"
                " WHERE channel_id = ? AND status != ?",
                (status, failures, error, to_iso(at), to_iso(retry_at), channel_id, STATUS_PAUSED),
            )

    async def record_error(self, subscription_id: int, error: str, *, at: datetime) -> None:
        """Something the admin should read in /subscriptions, without changing the subscription's health."""
        async with self._db.transaction():
            self._changed()
            await self._db.execute(
                "UPDATE subscriptions SET last_error = ?, last_error_at = ? WHERE id = ?",
                (error, to_iso(at), subscription_id),
            )

    # last in the class: below it, `list` in an annotation would name this method
    async def list(self, *, guild_id: int | None = None, channel_id: int | None = None) -> list[Subscription]:
        """Every subscription, or a server's, or a channel's: by channel, then oldest first."""
        where: list[str] = []
        args: list[int] = []
        if guild_id is not None:
            where.append("s.guild_id = ?")
            args.append(guild_id)
        if channel_id is not None:
            where.append("s.channel_id = ?")
            args.append(channel_id)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.channel_id, s.id"
        return [subscription_from_row(row) for row in await self._db.fetchall(sql, args)]
