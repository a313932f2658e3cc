"""Story clusters as stored: what clustering keeps of each clustered story (cluster_features), the index that
finds a new story's candidates (cluster_keys), stories.cluster_id, merging two clusters into one (with what
other tables keep by cluster: deliveries, trending_crossings), and the reads of the trending ranking.

Deciding which stories are one story is bot/clustering.py's (pure functions); this table keeps and finds."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.models import Story
from bot.store.database import Database, marks
from bot.store.rows import brief_story_from_row
from bot.timeutil import to_iso

log = logging.getLogger(__name__)

# The deliveries table's "Also on" bookkeeping; the same limits as bot/delivery_queue.py's MAX_ALSO_ON and
# MAX_ALSO_ON_EDITS (tests/test_cluster_merges.py checks that they agree) until deliveries move into the store.
ALSO_ON_LIMIT = 5  # outlets named in one "Also on" line
ALSO_ON_EDITS = 3  # edits of one sent message for "Also on"
_NEAR_CHUNK = 100  # (key, time) probes per statement: two SELECTs each, under SQLite's 500 in one compound


@dataclass(frozen=True)
class ClusterMember:
    """One clustered story as clustering keeps it (a row of cluster_features)."""

    story_id: int
    cluster_id: int
    at: int  # the story's time (published, else first seen), Unix seconds
    cluster_at: int  # `at` of its cluster's first story
    artists: frozenset[str]  # artist ids
    title_terms: frozenset[str]  # the headline's event words
    body_terms: frozenset[str]  # the summary's event words that are not in the headline
    roundup: bool = False  # its headline lists acts "…, And More"
    kinds: frozenset[str] = frozenset()  # the kinds of event its headline names


@dataclass(frozen=True)
class ClusterSpan:
    """A cluster and the time of its first and last story (Unix seconds)."""

    cluster_id: int
    first_at: int
    last_at: int


@dataclass
class ClusterMerge:
    """What `ClusterTable.merge` did: the clusters merged into `into`, and the deliveries that had to give way."""

    into: int
    merged: list[int]
    deliveries_moved: list[int] = field(default_factory=list)  # re-pointed to `into`
    deliveries_dropped: list[int] = field(default_factory=list)  # a second pending post to one channel
    # a second post already sent to one channel: left as it is, under its old cluster id
    deliveries_kept_apart: list[int] = field(default_factory=list)


_MEMBER_COLUMNS = "story_id, cluster_id, at, cluster_at, artists, title_terms, body_terms, roundup, kinds"
# what the trending ranking reads of a story: no text, no artists; a story not yet clustered is its own cluster
_BRIEF_COLUMNS = (
    "id, COALESCE(cluster_id, id) AS cluster, title, url, source_name, published_at, first_seen_at, image_url,"
    " quotes_json"
)


class ClusterTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- clustering ---------------------------------------------------------------------------------------

    async def clusters_of(self, story_ids: list[int]) -> dict[int, int]:
        """{story id: cluster id} of those of these stories that are clustered already."""
        rows = await self._db.select_in(
            "SELECT story_id, cluster_id FROM cluster_features WHERE story_id IN ({marks})", story_ids
        )
        return {story_id: cluster_id for story_id, cluster_id in rows}

    async def near(
        self, probes: list[tuple[str, int]], *, window: int, per_side: int
    ) -> list[tuple[int, int, int]]:
        """For each (key, time) of `probes`, the clustered stories with that key nearest that time within
        `window` seconds: at most `per_side` at or before it (the latest first, then the highest id), and
        `per_side` after it (the earliest first, then the lowest id); each as (index in `probes`, at, story id).
        Each is a short walk down the (key, at, story_id) index, however many stories the key has: a whole
        batch's probes in a few statements."""
        found: list[tuple[int, int, int]] = []
        for start in range(0, len(probes), _NEAR_CHUNK):
            parts: list[str] = []
            params: list[object] = []
            for n, (key, at) in enumerate(probes[start : start + _NEAR_CHUNK], start):
                parts.append(
                    f"SELECT CAST(? AS INTEGER), at, story_id FROM (SELECT at, story_id FROM cluster_keys"
                    f" WHERE key = ? AND at BETWEEN ? AND ? ORDER BY at DESC, story_id DESC LIMIT ?) AS b{n}"
                )
                params += [n, key, at - window, at, per_side]
                parts.append(
                    f"SELECT CAST(? AS INTEGER), at, story_id FROM (SELECT at, story_id FROM cluster_keys"
                    f" WHERE key = ? AND at > ? AND at <= ? ORDER BY at, story_id LIMIT ?) AS a{n}"
                )
                params += [n, key, at, at + window, per_side]
            rows = await self._db.fetchall(" UNION ALL ".join(parts), params)
            found += [(row[0], row[1], row[2]) for row in rows]
        return found

    async def members(self, story_ids: list[int]) -> list[ClusterMember]:
        """The clustered stories among these ids, as clustering keeps them."""
        rows = await self._db.select_in(
            f"SELECT {_MEMBER_COLUMNS} FROM cluster_features WHERE story_id IN ({{marks}})", story_ids
        )
        return [
            ClusterMember(
                story_id=row[0],
                cluster_id=row[1],
                at=row[2],
                cluster_at=row[3],
                artists=_split(row[4]),
                title_terms=_split(row[5]),
                body_terms=_split(row[6]),
                roundup=bool(row[7]),
                kinds=_split(row[8]),
            )
            for row in rows
        ]

    async def spans_of(self, story_ids: list[int]) -> list[ClusterSpan]:
        """The clusters these stories are in, each with the time of its first and last story, oldest first."""
        rows = await self._db.select_in(
            "SELECT c.cluster_id, MIN(m.at), MAX(m.at) FROM cluster_features c"
            " JOIN cluster_features m ON m.cluster_id = c.cluster_id"
            " WHERE c.story_id IN ({marks}) GROUP BY c.cluster_id",
            story_ids,
        )
        return sorted((ClusterSpan(*row) for row in rows), key=lambda s: (s.first_at, s.cluster_id))

    async def spans_by_story(self, story_ids: list[int]) -> dict[int, ClusterSpan]:
        """{story id: its cluster, with the time of the cluster's first and last story} for these stories: their
        clusters, then each cluster's times once, each one step down the (cluster_id, at) index however big the
        cluster."""
        clusters = await self.clusters_of(story_ids)
        rows = await self._db.select_in(
            "SELECT k.cluster_id,"
            " (SELECT MIN(m.at) FROM cluster_features m WHERE m.cluster_id = k.cluster_id),"
            " (SELECT MAX(m.at) FROM cluster_features m WHERE m.cluster_id = k.cluster_id)"
            " FROM (SELECT DISTINCT cluster_id FROM cluster_features WHERE cluster_id IN ({marks})) k",
            sorted(set(clusters.values())),
        )
        spans = {row[0]: ClusterSpan(row[0], row[1], row[2]) for row in rows}
        return {
            story_id: spans[cluster_id] for story_id, cluster_id in clusters.items() if cluster_id in spans
        }

    async def clusters_and_held(self, story_ids: list[int]) -> tuple[dict[int, int], set[int]]:
        """For these stories, in one statement: {story id: cluster id} of those clustered already, and the ids of
        the others that deliveries or a trending crossing hold as a cluster id (a story delivered before it was
        clustered is held under its own id)."""
        rows = await self._db.select_in(
            "SELECT 0, story_id, cluster_id FROM cluster_features WHERE story_id IN ({marks})"
            " UNION ALL SELECT 1, cluster_id, cluster_id FROM deliveries WHERE cluster_id IN ({marks})"
            " UNION ALL SELECT 1, cluster_id, cluster_id FROM trending_crossings WHERE cluster_id IN ({marks})",
            story_ids,
        )
        clustered = {story_id: cluster_id for held, story_id, cluster_id in rows if not held}
        return clustered, {story_id for held, story_id, _ in rows if held and story_id not in clustered}

    async def add_many(self, members: list[ClusterMember], keys: list[list[str]]) -> None:
        """Record stories' clusters (stories.cluster_id), what clustering keeps of them, and their index keys
        (`keys[i]` are `members[i]`'s), a few statements for the lot. The clusters' times are `set_cluster_times`'s."""
        if not members:
            return
        async with self._db.transaction():
            await self._db.executemany(
                f"INSERT INTO cluster_features({_MEMBER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        m.story_id,
                        m.cluster_id,
                        m.at,
                        m.cluster_at,
                        " ".join(sorted(m.artists)),
                        " ".join(sorted(m.title_terms)),
                        " ".join(sorted(m.body_terms)),
                        int(m.roundup),
                        " ".join(sorted(m.kinds)),
                    )
                    for m in members
                ],
            )
            await self._db.executemany(
                "INSERT INTO cluster_keys(key, at, story_id) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                [
                    (key, m.at, m.story_id)
                    for m, story_keys in zip(members, keys, strict=True)
                    for key in story_keys
                ],
            )
            await self._db.executemany(
                "UPDATE stories SET cluster_id = ? WHERE id = ?",
                [(m.cluster_id, m.story_id) for m in members],
            )

    async def set_cluster_times(self, times: dict[int, int]) -> None:
        """{cluster id: the time of its first story}: cluster_at of every story of those clusters."""
        await self._db.executemany(
            "UPDATE cluster_features SET cluster_at = ? WHERE cluster_id = ? AND cluster_at <> ?",
            [(at, cluster_id, at) for cluster_id, at in sorted(times.items())],
        )

    async def merge(self, into: int, others: list[int]) -> ClusterMerge:
        """Make clusters `others` part of cluster `into`, with everything kept by cluster id: the stories and
        their clustering features, each channel's post (deliveries: a channel keeps ONE post for the merged
        cluster, which names the other outlets under "Also on"), and the trending crossing.

        Per channel, the post kept is the one already sent (the oldest), else the one being sent, else the oldest
        pending; another pending post is dropped and its outlet added to the kept post's "Also on" (a sent
        message is marked for an edit). A second post already sent stays as it is, under its old cluster id."""
        others = sorted(set(others) - {into})
        report = ClusterMerge(into, others)
        if not others:
            return report
        every = [into, *others]
        async with self._db.transaction():
            await self._merge_trending(into, others)  # first: it reads the clusters as they were
            first = await self._db.fetchval(
                f"SELECT MIN(at) FROM cluster_features WHERE cluster_id IN ({marks(len(every))})", every
            )
            if first is not None:
                await self._db.execute(
                    "UPDATE cluster_features SET cluster_id = ?, cluster_at = ?"
                    f" WHERE cluster_id IN ({marks(len(every))})",
                    [into, first, *every],
                )
            await self._db.execute(
                f"UPDATE stories SET cluster_id = ? WHERE cluster_id IN ({marks(len(others))})",
                [into, *others],
            )
            await self._merge_deliveries(report)
        log.info("clusters %s merged into cluster %d", others, into)
        return report

    async def _merge_deliveries(self, report: ClusterMerge) -> None:
        every = [report.into, *report.merged]
        rows = await self._db.fetchall(
            "SELECT d.id, d.channel_id, d.cluster_id, d.status, d.attempt_started_at, d.also_on_json, d.edits,"
            " d.edit_pending, s.source_name FROM deliveries d JOIN stories s ON s.id = d.story_id"
            f" WHERE d.cluster_id IN ({marks(len(every))}) ORDER BY d.id",
            every,
        )
        by_channel: dict[int, list[Any]] = {}
        for row in rows:
            by_channel.setdefault(row["channel_id"], []).append(row)
        for channel_rows in by_channel.values():
            kept = min(channel_rows, key=_post_rank)
            also_on: list[str] = json.loads(kept["also_on_json"] or "[]")
            before = list(also_on)
            for row in channel_rows:
                if row["id"] == kept["id"]:
                    continue
                for name in [row["source_name"], *json.loads(row["also_on_json"] or "[]")]:
                    if name != kept["source_name"] and name not in also_on and len(also_on) < ALSO_ON_LIMIT:
                        also_on.append(name)
                if row["status"] == "pending":
                    reason = (
                        f"its cluster was merged into cluster {report.into}, posted by delivery {kept['id']}"
                    )
                    await self._db.execute(
                        "UPDATE deliveries SET status = 'dropped', last_error = ? WHERE id = ?",
                        (reason, row["id"]),
                    )
                    report.deliveries_dropped.append(row["id"])
                elif row["status"] == "sent":
                    report.deliveries_kept_apart.append(row["id"])
            if kept["cluster_id"] != report.into:
                # (channel, cluster) is unique: the row holding `into` swaps ids with the kept one
                holder = next((r for r in channel_rows if r["cluster_id"] == report.into), None)
                if holder is not None:
                    await self._db.execute(
                        "UPDATE deliveries SET cluster_id = ? WHERE id = ?", (-holder["id"], holder["id"])
                    )
                await self._db.execute(
                    "UPDATE deliveries SET cluster_id = ? WHERE id = ?", (report.into, kept["id"])
                )
                if holder is not None:
                    await self._db.execute(
                        "UPDATE deliveries SET cluster_id = ? WHERE id = ?",
                        (kept["cluster_id"], holder["id"]),
                    )
                report.deliveries_moved.append(kept["id"])
            if also_on != before:
                edit = kept["status"] == "sent" and kept["edits"] < ALSO_ON_EDITS
                await self._db.execute(
                    "UPDATE deliveries SET also_on_json = ?,"
                    " edit_pending = CASE WHEN ? = 1 THEN 1 ELSE edit_pending END WHERE id = ?",
                    (json.dumps(also_on, ensure_ascii=False), int(edit), kept["id"]),
                )

    async def _merge_trending(self, into: int, others: list[int]) -> None:
        """One crossing for the merged cluster: the first crossing time, the most points, and the stories
        offered so far only those every merged cluster had offered (offering one again is harmless: a channel
        that has the cluster gets an "Also on")."""
        every = [into, *others]
        rows = await self._db.fetchall(
            f"SELECT cluster_id, crossed_at, points, last_story_id FROM trending_crossings"
            f" WHERE cluster_id IN ({marks(len(every))})",
            every,
        )
        if not rows:
            return
        crossed = {row["cluster_id"] for row in rows}
        offered = [row["last_story_id"] for row in rows]
        never = [c for c in every if c not in crossed]
        if never:  # stories of a merged cluster that had not crossed were never offered
            first_ids = await self._db.fetchall(
                "SELECT cluster_id, MIN(story_id) FROM cluster_features"
                f" WHERE cluster_id IN ({marks(len(never))}) GROUP BY cluster_id",
                never,
            )
            offered += [first_id - 1 for _, first_id in first_ids]
        await self._db.execute(
            f"DELETE FROM trending_crossings WHERE cluster_id IN ({marks(len(every))})", every
        )
        await self._db.execute(
            "INSERT INTO trending_crossings(cluster_id, crossed_at, points, last_story_id) VALUES (?,?,?,?)",
            (into, min(row["crossed_at"] for row in rows), max(row["points"] for row in rows), min(offered)),
        )

    async def unclustered_ids(self, after_id: int, limit: int) -> list[int]:
        """The next `limit` ids, after `after_id`, of stories that have no cluster yet."""
        rows = await self._db.fetchall(
            "SELECT id FROM stories WHERE id > ? AND cluster_id IS NULL ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [row[0] for row in rows]

    # --- trending -----------------------------------------------------------------------------------------

    async def recent_stories(self, since: datetime) -> list[Story]:
        """Every story of every cluster that has a story published or first seen since `since`, as the trending
        ranking reads them: without summary, content or artists; `cluster_id` is the story's cluster (its own
        id when it has none yet)."""
        low = to_iso(since)
        clusters = [
            row[0]
            for row in await self._db.fetchall(
                "SELECT DISTINCT COALESCE(cluster_id, id) FROM stories"
                " WHERE published_at >= ? OR first_seen_at >= ?",
                (low, low),
            )
        ]
        rows = await self._db.select_in(
            f"SELECT {_BRIEF_COLUMNS} FROM stories WHERE cluster_id IN ({{marks}})"
            f" UNION SELECT {_BRIEF_COLUMNS} FROM stories WHERE cluster_id IS NULL AND id IN ({{marks}})",
            clusters,
        )
        return [brief_story_from_row(row) for row in rows]


def _split(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _post_rank(row: Any) -> tuple[int, int]:
    """Which of a channel's posts of merged clusters stays its post: sent, then being sent, then pending, oldest
    first."""
    if row["status"] == "sent":
        return (0, row["id"])
    if row["status"] == "pending":
        return (1 if row["attempt_started_at"] else 2, row["id"])
    return (3, row["id"])
