"""The delivery queue (one row per channel and story cluster) and the trending crossings offered to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot.models import (
    FOLLOW_UP_ATTEMPTED,
    FOLLOW_UP_DONE,
    FOLLOW_UP_PENDING,
    PUBLISH_LIMITED,
    Delivery,
    HeldPost,
    StoryFacts,
    TrendingOffer,
)
from bot.store.database import Database
from bot.store.rows import delivery_from_row, held_post_from_row
from bot.timeutil import from_iso, to_iso

_SELECT = (
    "SELECT d.*, st.source_name AS story_source FROM deliveries d LEFT JOIN stories st ON st.id = d.story_id"
)
PENDING = "pending"
_INSERT = (
    "INSERT INTO deliveries(story_id, cluster_id, guild_id, channel_id, subscription_id, nonce, next_attempt_at,"
    " created_at, kind, ping_roles_json, thread_state, publish_state, also_on_json)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(channel_id, cluster_id) DO NOTHING"
)
_T = TypeVar("_T")
OFF_LOOP_ROWS = 100  # more rows than this are made or read in a worker thread
_FOLLOW_UP_OPEN = (
    f"(d.thread_state IN ('{FOLLOW_UP_PENDING}', '{FOLLOW_UP_ATTEMPTED}')"
    f" OR d.publish_state IN ('{FOLLOW_UP_PENDING}', '{FOLLOW_UP_ATTEMPTED}'))"
)
_UNCLAIMED = "(claim_until IS NULL OR claim_until <= ?)"  # no process holds it, or its lease ran out
_RELEASE = "claimed_by = NULL, claim_until = NULL"


class DeliveryTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- what the queue needs of stories -------------------------------------------------------------------

    async def story_facts(self, story_ids: Sequence[int]) -> list[StoryFacts]:
        """The facts of these stored stories that decide who gets them, in id order."""
        facts: dict[int, StoryFacts] = {}
        rows = await self._db.select_in(
            "SELECT id, story_key, COALESCE(cluster_id, id) AS cluster, source_name, published_at,"
            " first_seen_at, backfill, source_id, title, summary FROM stories WHERE id IN ({marks})",
            story_ids,
        )
        for row in rows:
            facts[row["id"]] = StoryFacts(
                id=row["id"],
                key=row["story_key"],
                cluster_id=row["cluster"],
                source_name=row["source_name"],
                moment=from_iso(row["published_at"]) or from_iso(row["first_seen_at"]),
                backfill=bool(row["backfill"]),
                artists=set(),
                sources={row["source_id"]} if row["source_id"] is not None else set(),
                title=row["title"] or "",
                summary=row["summary"] or "",
            )
        found = list(facts)
        for story_id, artist_id in await self._db.select_in(
            "SELECT story_id, artist_id FROM story_artists WHERE story_id IN ({marks})", found
        ):
            facts[story_id].artists.add(artist_id)
        for story_id, source_id in await self._db.select_in(
            "SELECT story_id, source_id FROM source_stories WHERE story_id IN ({marks})", found
        ):
            facts[story_id].sources.add(source_id)
        return [facts[i] for i in sorted(facts)]

    # --- reads ---------------------------------------------------------------------------------------------

    async def get(self, delivery_id: int) -> Delivery | None:
        row = await self._db.fetchone(_SELECT + " WHERE d.id = ?", (delivery_id,))
        return delivery_from_row(row) if row else None

    async def pending(self, *, channel_id: int | None = None, limit: int) -> list[Delivery]:
        """Deliveries not sent yet (due or waiting), oldest first."""
        if channel_id is None:
            rows = await self._db.fetchall(
                _SELECT + " WHERE d.status = ? ORDER BY d.id LIMIT ?", (PENDING, limit)
            )
        else:
            rows = await self._db.fetchall(
                _SELECT + " WHERE d.status = ? AND d.channel_id = ? ORDER BY d.id LIMIT ?",
                (PENDING, channel_id, limit),
            )
        return [delivery_from_row(row) for row in rows]

    async def pending_of(self, subscription_ids: Sequence[int]) -> list[Delivery]:
        """The deliveries not sent yet that these subscriptions queued, oldest first."""
        rows = await self._db.select_in(
            _SELECT + " WHERE d.subscription_id IN ({marks}) AND d.status = ?", subscription_ids, (PENDING,)
        )
        return sorted((delivery_from_row(row) for row in rows), key=lambda d: d.id)

    async def next_due_at(self, owner: str = "") -> datetime | None:
        """When the earliest waiting delivery becomes due, or another process's claim on a pending one runs out
        (it may have died): None when nothing waits."""
        return from_iso(
            await self._db.fetchval(
                "SELECT MIN(CASE WHEN claimed_by IS NOT NULL AND claimed_by <> ?"
                " AND claim_until > COALESCE(next_attempt_at, '') THEN claim_until ELSE next_attempt_at END)"
                " FROM deliveries WHERE status = ? AND (next_attempt_at IS NOT NULL OR claimed_by <> ?)",
                (owner, PENDING, owner),
            )
        )

    async def pending_edits(self, *, limit: int) -> list[Delivery]:
        """Sent posts whose "Also on" line changed, oldest first."""
        rows = await self._db.fetchall(
            _SELECT + " WHERE d.edit_pending = 1 AND d.status = 'sent' AND d.message_id IS NOT NULL"
            " ORDER BY d.id LIMIT ?",
            (limit,),
        )
        return [delivery_from_row(row) for row in rows]

    async def follow_up_channels(self) -> list[int]:
        """Channels with sent posts whose discussion thread or publishing is still to do (a crash cut it
        short), oldest first."""
        rows = await self._db.fetchall(
            "SELECT d.channel_id, MIN(d.id) AS first FROM deliveries d WHERE d.status = 'sent' AND "
            + _FOLLOW_UP_OPEN
            + " GROUP BY d.channel_id ORDER BY first"
        )
        return [row[0] for row in rows]

    async def follow_ups(self, channel_id: int) -> list[Delivery]:
        """The channel's sent posts whose discussion thread or publishing is still to do, oldest first."""
        rows = await self._db.fetchall(
            _SELECT
            + " WHERE d.channel_id = ? AND d.status = 'sent' AND "
            + _FOLLOW_UP_OPEN
            + " ORDER BY d.id",
            (channel_id,),
        )
        return [delivery_from_row(row) for row in rows]

    async def unpublished_since(self, channel_id: int, since: datetime) -> int:
        """The channel's posts left unpublished by the publish limit since then."""
        found = await self._db.fetchval(
            "SELECT COUNT(*) FROM deliveries WHERE channel_id = ? AND publish_state = ? AND sent_at >= ?",
            (channel_id, PUBLISH_LIMITED, to_iso(since)),
        )
        return int(found or 0)

    # --- queueing ------------------------------------------------------------------------------------------

    async def add(self, delivery: Delivery) -> bool:
        """Queue a delivery; False when the channel has that story cluster already (nothing is written)."""
        async with self._db.transaction():
            changed = await self._db.execute(_INSERT, _delivery_rows([delivery])[0])
        return changed > 0

    async def in_clusters(self, cluster_ids: Sequence[int]) -> dict[tuple[int, int], HeldPost]:
        """Every channel's post of these story clusters, whatever its status: {(channel id, cluster id): it}.
        Only what queueing reads (every feed's new stories ask this of their clusters: a busy story's has a post
        per channel, and whole deliveries were a tenth of the bot's ingest)."""
        rows = await self._db.select_in(
            "SELECT d.id, d.channel_id, d.cluster_id, d.story_id, st.source_name, d.status, d.also_on_json,"
            " d.edits, d.edit_pending FROM deliveries d LEFT JOIN stories st ON st.id = d.story_id"
            " WHERE d.cluster_id IN ({marks})",
            list(cluster_ids),
        )
        found = await _off_loop_if_many(lambda: [held_post_from_row(row) for row in rows], len(rows))
        return {(p.channel_id, p.cluster_id): p for p in found}

    async def add_many(self, deliveries: Sequence[Delivery]) -> None:
        """Queue deliveries, a few statements for all; one whose channel has that story cluster already (queued
        by another process meanwhile) is left out."""
        if not deliveries:
            return
        rows = await _off_loop_if_many(lambda: _delivery_rows(deliveries), len(deliveries))
        async with self._db.transaction():
            await self._db.executemany(_INSERT, rows)

    async def set_also_on_many(self, changes: Sequence[tuple[int, list[str], bool]]) -> None:
        """(delivery id, the outlets named under the post, whether the sent message must be edited) for each."""
        if not changes:
            return
        async with self._db.transaction():
            await self._db.executemany(
                "UPDATE deliveries SET also_on_json = ?, edit_pending = CASE WHEN ? = 1 THEN 1 ELSE edit_pending END"
                " WHERE id = ?",
                [(json.dumps(also_on, ensure_ascii=False), int(edit), i) for i, also_on, edit in changes],
            )

    async def reassign(
        self, delivery_id: int, subscription_id: int, *, ping_role_ids: list[int], thread: bool
    ) -> None:
        """Other subscriptions of the channel speak for the unsent delivery (the one that queued it is going):
        the oldest of them, with their pings and thread."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE deliveries SET subscription_id = ?, ping_roles_json = ?, thread_state = ?"
                " WHERE id = ? AND status = ?",
                (
                    subscription_id,
                    json.dumps(ping_role_ids),
                    FOLLOW_UP_PENDING if thread else None,
                    delivery_id,
                    PENDING,
                ),
            )

    # --- claims: each delivery sent by one process, each channel's in order (several processes, one bot) ---

    async def claim_due(
        self, owner: str, now: datetime, lease_seconds: float, limit: int, *, channel_id: int | None = None
    ) -> list[Delivery]:
        """Claim up to `limit` deliveries to send now, oldest first, for `lease_seconds`: each the oldest pending
        delivery of its channel (so a channel's posts go out one at a time and in order, whichever process
        sends them), due, and held by no process. On PostgreSQL rows another process is claiming are skipped."""
        if limit <= 0:
            return []
        moment = to_iso(now)
        channel = " AND d.channel_id = ?" if channel_id is not None else ""
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        rows = await self._db.write_returning(
            "UPDATE deliveries SET claimed_by = ?, claim_until = ? WHERE id IN ("
            "SELECT d.id FROM deliveries d WHERE d.status = ?"
            " AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
            " AND (d.claim_until IS NULL OR d.claim_until <= ?)" + channel + " AND NOT EXISTS (SELECT 1 FROM"
            " deliveries e WHERE e.channel_id = d.channel_id AND e.status = ? AND e.id < d.id)"
            f" ORDER BY d.id LIMIT ?{skip_locked}) RETURNING id",
            (
                owner,
                to_iso(now + timedelta(seconds=lease_seconds)),
                PENDING,
                moment,
                moment,
                *([channel_id] if channel_id is not None else []),
                PENDING,
                limit,
            ),
        )
        return await self._by_ids([row[0] for row in rows])

    async def claim_edits(
        self, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[Delivery]:
        """Claim up to `limit` sent posts whose "Also on" line changed, oldest first, held by no process."""
        if limit <= 0:
            return []
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        rows = await self._db.write_returning(
            "UPDATE deliveries SET claimed_by = ?, claim_until = ? WHERE id IN (SELECT id FROM deliveries"
            f" WHERE edit_pending = 1 AND status = 'sent' AND message_id IS NOT NULL AND {_UNCLAIMED}"
            f" ORDER BY id LIMIT ?{skip_locked}) RETURNING id",
            (owner, to_iso(now + timedelta(seconds=lease_seconds)), to_iso(now), limit),
        )
        return await self._by_ids([row[0] for row in rows])

    async def renew_claims(self, owner: str, delivery_ids: Sequence[int], *, until: datetime) -> int:
        """Extend this owner's claims (sends still under way). Returns how many it still held."""
        if not delivery_ids:
            return 0
        async with self._db.transaction():
            return await self._db.execute_in(
                "UPDATE deliveries SET claim_until = ? WHERE claimed_by = ? AND id IN ({marks})",
                delivery_ids,
                (to_iso(until), owner),
            )

    async def release(self, owner: str, delivery_ids: Sequence[int] | None = None) -> int:
        """Give up this owner's claims (these, or all of them): any process may take them now."""
        async with self._db.transaction():
            if delivery_ids is None:
                return await self._db.execute(
                    f"UPDATE deliveries SET {_RELEASE} WHERE claimed_by = ?", (owner,)
                )
            return await self._db.execute_in(
                f"UPDATE deliveries SET {_RELEASE} WHERE claimed_by = ? AND id IN ({{marks}})",
                delivery_ids,
                (owner,),
            )

    async def _by_ids(self, delivery_ids: Sequence[int]) -> list[Delivery]:
        rows = await self._db.select_in(_SELECT + " WHERE d.id IN ({marks})", delivery_ids)
        return sorted((delivery_from_row(row) for row in rows), key=lambda d: d.id)

    # --- the outcome of a send -----------------------------------------------------------------------------

    async def mark_attempt(self, delivery_id: int, *, at: datetime) -> None:
        """Committed before a send: after a crash the delivery is known to be in doubt (the nonce settles it)."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, attempt_started_at = ? WHERE id = ?",
                (to_iso(at), delivery_id),
            )

    async def mark_sent(
        self, delivery_id: int, message_id: int, *, at: datetime, thread_id: int | None = None
    ) -> None:
        """Posted: the message (a forum post's first message, with the post as `thread_id`)."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE deliveries SET status = 'sent', message_id = ?, sent_at = ?, last_error = NULL,"
                f" next_attempt_at = NULL, thread_id = COALESCE(?, thread_id), {_RELEASE} WHERE id = ?",
                (message_id, to_iso(at), thread_id, delivery_id),
            )

    async def set_thread_state(self, delivery_id: int, state: str, *, thread_id: int | None = None) -> None:
        """The discussion thread on the post: attempted (committed before the request), done or failed."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE deliveries SET thread_state = ?, thread_id = COALESCE(?, thread_id) WHERE id = ?",
                (state, thread_id, delivery_id),
            )

    async def set_publish_state(self, delivery_id: int, state: str) -> bool:
        """The post's publishing: attempted (committed before the request), done, limited or failed. False
        when it was done already (a publish is counted once, whatever number of requests it took)."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "UPDATE deliveries SET publish_state = ? WHERE id = ? AND COALESCE(publish_state, '') != ?",
                (state, delivery_id, FOLLOW_UP_DONE),
            )
        return changed > 0

    async def retry_later(self, delivery_id: int, *, at: datetime, error: str) -> None:
        async with self._db.transaction():
            await self._db.execute(
                f"UPDATE deliveries SET next_attempt_at = ?, last_error = ?, {_RELEASE} WHERE id = ?",
                (to_iso(at), error, delivery_id),
            )

    async def mark_failed(self, delivery_id: int, error: str) -> None:
        """Never retried."""
        async with self._db.transaction():
            await self._db.execute(
                f"UPDATE deliveries SET status = 'failed', last_error = ?, next_attempt_at = NULL, {_RELEASE}"
                " WHERE id = ?",
                (error, delivery_id),
            )

    async def mark_edited(self, delivery_id: int, *, edits: int | None = None) -> None:
        """The "Also on" edit is done: one more edit counted, or `edits` set (to stop further ones)."""
        async with self._db.transaction():
            await self._db.execute(
                f"UPDATE deliveries SET edit_pending = 0, edits = COALESCE(?, edits + 1), {_RELEASE} WHERE id = ?",
                (edits, delivery_id),
            )

    # --- a channel's waiting deliveries --------------------------------------------------------------------

    async def hold_channel(self, channel_id: int, *, until: datetime, error: str) -> None:
        """The channel's waiting deliveries wait until then (Discord refused a post there)."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE deliveries SET next_attempt_at = ?, last_error = ? WHERE channel_id = ? AND status = ?",
                (to_iso(until), error, channel_id, PENDING),
            )

    async def release_channel(self, channel_id: int) -> None:
        """The channel's waiting deliveries are due now."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE deliveries SET next_attempt_at = NULL WHERE channel_id = ? AND status = ?",
                (channel_id, PENDING),
            )

    async def drop(self, delivery_ids: Sequence[int], *, reason: str) -> int:
        """These deliveries, if not sent yet, never will be."""
        async with self._db.transaction():
            return await self._db.execute_in(
                "UPDATE deliveries SET status = 'dropped', last_error = ? WHERE status = ? AND id IN ({marks})",
                delivery_ids,
                (reason, PENDING),
            )

    async def drop_channel(self, channel_id: int, *, reason: str) -> int:
        async with self._db.transaction():
            return await self._db.execute(
                "UPDATE deliveries SET status = 'dropped', last_error = ? WHERE status = ? AND channel_id = ?",
                (reason, PENDING, channel_id),
            )

    async def drop_guild(self, guild_id: int, *, reason: str) -> int:
        async with self._db.transaction():
            return await self._db.execute(
                "UPDATE deliveries SET status = 'dropped', last_error = ? WHERE status = ? AND guild_id = ?",
                (reason, PENDING, guild_id),
            )

    # --- trending crossings --------------------------------------------------------------------------------

    async def trending_crossings(self, cluster_ids: Sequence[int]) -> dict[int, int]:
        """Which of these clusters crossed the trending line: {cluster id: its newest story offered so far}."""
        rows = await self._db.select_in(
            "SELECT cluster_id, last_story_id FROM trending_crossings WHERE cluster_id IN ({marks})",
            cluster_ids,
        )
        return {row[0]: row[1] for row in rows}

    async def record_trending(self, offer: TrendingOffer, *, at: datetime) -> None:
        """The offer was queued: a first crossing is recorded with its time and points, a later one moves on
        the newest story offered."""
        async with self._db.transaction():
            await self._db.execute(
                "INSERT INTO trending_crossings(cluster_id, crossed_at, points, last_story_id) VALUES (?,?,?,?)"
                " ON CONFLICT(cluster_id) DO UPDATE SET last_story_id = excluded.last_story_id",
                (offer.cluster_id, to_iso(at), offer.points, offer.last_story_id),
            )

    # last in the class: below it, `list` in an annotation would name this method
    async def list(self, *, status: str | None = None) -> list[Delivery]:
        """Every delivery (or those with this status), oldest first."""
        if status is None:
            rows = await self._db.fetchall(_SELECT + " ORDER BY d.id")
        else:
            rows = await self._db.fetchall(_SELECT + " WHERE d.status = ? ORDER BY d.id", (status,))
        return [delivery_from_row(row) for row in rows]


async def _off_loop_if_many(work: Callable[[], _T], rows: int) -> _T:
    """`work()`, in a worker thread when it handles many rows: a story for every channel is thousands of rows, CPU
    work that would stall the event loop."""
    return await asyncio.to_thread(work) if rows > OFF_LOOP_ROWS else work()


def _delivery_rows(deliveries: Sequence[Delivery]) -> list[tuple[Any, ...]]:
    return [
        (
            d.story_id,
            d.cluster_id,
            d.guild_id,
            d.channel_id,
            d.subscription_id,
            d.nonce,
            to_iso(d.next_attempt_at),
            to_iso(d.created_at),
            d.kind,
            json.dumps(d.ping_role_ids),
            d.thread_state,
            d.publish_state,
            json.dumps(d.also_on, ensure_ascii=False),
        )
        for d in deliveries
    ]
