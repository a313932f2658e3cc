"""Story clusters as stored: what clustering keeps of each clustered story (cluster_features), the index that
finds a new story's candidates (cluster_keys), stories.cluster_id, and the reads of the trending ranking.

Deciding which stories are one story is bot/clustering.py's (pure functions); this table keeps and finds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.models import Story
from bot.store.database import Database
from bot.store.rows import brief_story_from_row
from bot.timeutil import to_iso


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


_MEMBER_COLUMNS = "story_id, cluster_id, at, cluster_at, artists, title_terms, body_terms"
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

    async def candidates(
        self, keys: list[str], *, low: int, high: int, min_shared_keys: int, limit: int
    ) -> list[int]:
        """Ids of the clustered stories, timed within [low, high], that have an artist key ("a:…") among `keys`
        or at least `min_shared_keys` of them: those sharing the most keys first, then the newest, `limit` at
        most (a busy artist has hundreds of stories in two days)."""
        if not keys:
            return []
        rows = await self._db.select_in(
            "SELECT story_id FROM cluster_keys WHERE key IN ({marks}) AND at BETWEEN ? AND ?"
            " GROUP BY story_id"
            " HAVING SUM(CASE WHEN key LIKE 'a:%' THEN 1 ELSE 0 END) > 0 OR COUNT(*) >= ?"
            " ORDER BY COUNT(*) DESC, story_id DESC LIMIT ?",
            keys,
            (low, high, min_shared_keys, limit),
        )
        return [row[0] for row in rows]

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
            )
            for row in rows
        ]

    async def add(self, member: ClusterMember, keys: list[str]) -> None:
        """Record a story's cluster (stories.cluster_id), what clustering keeps of it, and its index keys."""
        async with self._db.transaction():
            await self._db.execute(
                f"INSERT INTO cluster_features({_MEMBER_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (
                    member.story_id,
                    member.cluster_id,
                    member.at,
                    member.cluster_at,
                    " ".join(sorted(member.artists)),
                    " ".join(sorted(member.title_terms)),
                    " ".join(sorted(member.body_terms)),
                ),
            )
            await self._db.executemany(
                "INSERT INTO cluster_keys(key, at, story_id) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                [(key, member.at, member.story_id) for key in keys],
            )
            await self._db.execute(
                "UPDATE stories SET cluster_id = ? WHERE id = ?", (member.cluster_id, member.story_id)
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
                "SELECT DISTINCT COALESCE(cluster_id, id) FROM stories WHERE published_at >= ? OR first_seen_at >= ?",
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
