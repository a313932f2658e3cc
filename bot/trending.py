"""Trending: which story clusters are spreading now, ranked by a documented score; trending-only subscriptions.

The trend score of a cluster (stories.cluster_id, see bot/clustering.py) is, in the manner of Hacker News:

    points = OUTLET_POINTS × distinct outlets + QUOTE_POINTS × min(distinct fan posts, MAX_QUOTES_COUNTED)
    score  = SCORE_SCALE × points / (age_hours + AGE_OFFSET_HOURS) ** GRAVITY

- outlets: the different sites that ran the story (by link host: two feeds of one site count once);
- fan posts: the distinct embedded social posts (tweets, Bluesky, TikTok… quoted by the stories), by link;
- age: hours since the cluster's first story appeared (its earliest publication time, never later than when we
  first saw it), counted from `now`, so the score is deterministic for a fixed clock.

Hacker News divides by (age + 2) ** 1.8, which buries an item within hours. Most K-pop stories are told by one
outlet, and a story spreads to others over hours, so the age is offset by AGE_OFFSET_HOURS = 6 and the gravity
is GRAVITY = 1.2: a story two outlets carry ranks above a single outlet's story of this very minute for about
4.5 hours, one three outlets carry for about 9 hours (3 / 15^1.2 = 0.116 against 1 / 6^1.2 = 0.116), and a day
later it has sunk below a single outlet's story from two hours ago.

A cluster is *trending* once its points reach TRENDING_POINTS (three outlets, or two outlets and two fan
posts…) while it is younger than the delivery age limit. `trending_offers` finds clusters crossing that line;
the delivery queue offers their stories to trending-only subscriptions once and records each in
trending_crossings (migration 0501).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from yarl import URL

from bot.artists import load_artist_index
from bot.clustering import cluster_unclustered
from bot.models import ArtistRef, Quote, TrendingOffer
from bot.store import Store
from bot.timeutil import from_iso, to_iso, utcnow

log = logging.getLogger(__name__)

OUTLET_POINTS = 1.0
QUOTE_POINTS = 0.5
MAX_QUOTES_COUNTED = (
    6  # fan posts beyond this say little more: one viral thread must not outrank wide coverage
)
GRAVITY = 1.2
AGE_OFFSET_HOURS = 6.0
SCORE_SCALE = 100.0  # so scores read as numbers like 24.7 rather than 0.247
TRENDING_POINTS = 3.0
DEFAULT_HOURS = 24.0
DEFAULT_LIMIT = 10


@dataclass
class ClusterStory:
    """A story as the trending list shows it (contract: the `stories` items of `trending --json`)."""

    id: int
    title: str
    url: str
    source: str
    published: datetime | None
    moment: datetime  # published (never later than first seen), else first seen
    image: str | None = None
    quotes: list[Quote] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "url": self.url,
            "source": self.source,
            "published": self.published.isoformat() if self.published else None,
        }


@dataclass
class TrendingCluster:
    rank: int
    score: float
    points: float
    cluster_id: int
    title: str  # the first outlet's headline
    url: str  # the first outlet's link
    artists: list[ArtistRef]
    outlets: list[str]  # display names, in the order they ran it
    first_seen: datetime
    stories: list[ClusterStory]
    fan_posts: int
    image: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The contract's `trending --json` shape."""
        return {
            "rank": self.rank,
            "score": float(
                f"{self.score:.4g}"
            ),  # 4 significant digits: old stories' tiny scores still differ
            "title": self.title,
            "url": self.url,
            "artists": [a.to_json() for a in self.artists],
            "outlets": self.outlets,
            "first_seen": to_iso(self.first_seen),
            "stories": [s.to_json() for s in self.stories],
        }


# --- the score ---------------------------------------------------------------------------------------------


def trend_points(outlets: int, fan_posts: int) -> float:
    return OUTLET_POINTS * outlets + QUOTE_POINTS * min(fan_posts, MAX_QUOTES_COUNTED)


def trend_score(outlets: int, fan_posts: int, age: timedelta) -> float:
    """The module docstring's score: points over (age in hours + offset) ** gravity. A future age counts as 0."""
    hours = max(age.total_seconds() / 3600.0, 0.0)
    return SCORE_SCALE * trend_points(outlets, fan_posts) / (hours + AGE_OFFSET_HOURS) ** GRAVITY


def outlet_name(source_name: str) -> str:
    """How a feed's name reads as an outlet: "SCMP K-pop: BTS" → "SCMP", "NME K-pop" → "NME"."""
    name = source_name.split(":", 1)[0].strip() or source_name.strip()
    for suffix in (" K-pop", " Kpop", " K-Pop", " KPOP"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)].strip()
    return name or "?"


def outlet_key(url: str, source_name: str) -> str:
    """Which site ran a story: its link's host without www., else its outlet name."""
    try:
        host = URL(url).host or ""
    except (ValueError, TypeError):
        host = ""
    host = host.lower().removeprefix("www.").removeprefix("m.")
    return host or outlet_name(source_name).casefold()


def _moment(published: datetime | None, first_seen: datetime | None) -> datetime | None:
    if published and first_seen:
        return min(published, first_seen)  # a publication time after we saw the story is a feed's mistake
    return published or first_seen


# --- clusters from the store -------------------------------------------------------------------------------


@dataclass
class _Cluster:
    cluster_id: int
    stories: list[ClusterStory]
    outlets: list[str]
    fan_posts: int

    @property
    def first(self) -> ClusterStory:
        return self.stories[0]

    @property
    def points(self) -> float:
        return trend_points(len(self.outlets), self.fan_posts)


_COLUMNS = (
    "id, COALESCE(cluster_id, id) AS cluster, title, url, source_name, published_at, first_seen_at, image_url,"
    " quotes_json"
)


def _quotes(text: str | None) -> list[Quote]:
    try:
        return [Quote.from_json(q) for q in json.loads(text or "[]") if isinstance(q, dict) and q.get("text")]
    except (ValueError, KeyError, TypeError):
        return []  # a damaged row is no reason to fail the whole list


async def _recent_clusters(store: Store, since: datetime, now: datetime) -> list[_Cluster]:
    """Every cluster with a story that appeared in [since, now], with all its stories, oldest first."""
    low = to_iso(since)
    async with store.db.execute(
        "SELECT DISTINCT COALESCE(cluster_id, id) FROM stories WHERE published_at >= ? OR first_seen_at >= ?",
        (low, low),
    ) as cursor:
        candidates = [row[0] for row in await cursor.fetchall()]
    rows = await store.select_in(
        f"SELECT {_COLUMNS} FROM stories WHERE cluster_id IN ({{marks}})"
        f" UNION SELECT {_COLUMNS} FROM stories WHERE cluster_id IS NULL AND id IN ({{marks}})",
        candidates,
    )
    by_cluster: dict[int, list[ClusterStory]] = {}
    for row in rows:
        published = from_iso(row["published_at"])
        moment = _moment(published, from_iso(row["first_seen_at"]))
        if moment is None:
            continue
        by_cluster.setdefault(row["cluster"], []).append(
            ClusterStory(
                id=row["id"],
                title=row["title"],
                url=row["url"],
                source=row["source_name"],
                published=published,
                moment=moment,
                image=row["image_url"],
                quotes=_quotes(row["quotes_json"]),
            )
        )
    clusters: list[_Cluster] = []
    for cluster_id, stories in by_cluster.items():
        stories.sort(key=lambda s: (s.moment, s.id))
        if not any(since <= s.moment <= now for s in stories):
            continue  # its recent story is dated outside the window (or in the future)
        if stories[0].moment > now:
            continue
        outlets: dict[str, str] = {}
        posts: set[str] = set()
        for story in stories:
            outlets.setdefault(outlet_key(story.url, story.source), outlet_name(story.source))
            posts.update(q.url or f"{q.platform}:{q.handle}:{q.text}" for q in story.quotes)
        clusters.append(_Cluster(cluster_id, stories, list(outlets.values()), len(posts)))
    return clusters


def _artists(story_ids: list[int], known: dict[int, list[ArtistRef]]) -> list[ArtistRef]:
    """A cluster's artists: those named by the most of its stories first, then in the order first named."""
    counts: dict[str, int] = {}
    refs: dict[str, ArtistRef] = {}
    for story_id in story_ids:
        for ref in known.get(story_id, []):
            counts[ref.id] = counts.get(ref.id, 0) + 1
            refs.setdefault(ref.id, ref)
    order = list(refs)
    return [refs[a] for a in sorted(order, key=lambda a: (-counts[a], order.index(a)))]


async def trending_clusters(
    store: Store, *, hours: float = DEFAULT_HOURS, limit: int = DEFAULT_LIMIT, now: datetime | None = None
) -> list[TrendingCluster]:
    """The `limit` best clusters with a story from the last `hours`, best first (score, then outlets, then
    the fresher, then the older cluster id: a total order, so the same clock gives the same list)."""
    if not hours > 0 or limit < 1:
        return []
    now = now or utcnow()
    try:
        since = now - timedelta(hours=hours)
    except OverflowError:  # more hours than a calendar holds: everything stored
        since = datetime.min.replace(tzinfo=UTC)
    clusters = await _recent_clusters(store, since, now)
    scored = [(trend_score(len(c.outlets), c.fan_posts, now - c.first.moment), c) for c in clusters]
    scored.sort(
        key=lambda pair: (
            -pair[0],
            -len(pair[1].outlets),
            -pair[1].first.moment.timestamp(),
            pair[1].cluster_id,
        )
    )
    top = scored[:limit]
    ids = [s.id for _, c in top for s in c.stories]
    known = await store.stories.artists_of(ids) if ids else {}
    result: list[TrendingCluster] = []
    for rank, (score, cluster) in enumerate(top, 1):
        first = cluster.first
        result.append(
            TrendingCluster(
                rank=rank,
                score=score,
                points=cluster.points,
                cluster_id=cluster.cluster_id,
                title=first.title,
                url=first.url,
                artists=_artists([s.id for s in cluster.stories], known),
                outlets=cluster.outlets,
                first_seen=first.moment,
                stories=cluster.stories,
                fan_posts=cluster.fan_posts,
                image=next((s.image for s in cluster.stories if s.image), None),
            )
        )
    return result


# --- trending-only subscriptions ---------------------------------------------------------------------------


async def trending_offers(
    store: Store, *, max_age_hours: float, now: datetime | None = None
) -> list[TrendingOffer]:
    """The clusters to offer to the trending-only subscriptions, each cluster once: those that crossed
    TRENDING_POINTS since the last offer (all their stories), and those offered before that have new stories
    (only the new ones, so a channel that has the cluster names their outlets under its post).

    Call it after new stories were clustered; only clusters younger than `max_age_hours` are considered (older
    stories are never posted). It writes nothing: bot.delivery_queue.offer_trending queues the offers and
    records them, in the transaction this was read in."""
    now = now or utcnow()
    clusters = await _recent_clusters(store, now - timedelta(hours=max_age_hours), now)
    if not clusters:
        return []
    offered = await store.deliveries.trending_crossings([c.cluster_id for c in clusters])
    offers: list[TrendingOffer] = []
    for cluster in sorted(clusters, key=lambda c: c.cluster_id):
        story_ids = sorted(s.id for s in cluster.stories)
        if cluster.cluster_id in offered:
            fresh = [i for i in story_ids if i > offered[cluster.cluster_id]]
            if fresh:
                offers.append(TrendingOffer(cluster.cluster_id, fresh, story_ids[-1], cluster.points))
        elif cluster.points >= TRENDING_POINTS:
            offers.append(TrendingOffer(cluster.cluster_id, story_ids, story_ids[-1], cluster.points))
            log.info(
                "cluster %d is trending (%s outlets, %d fan posts): %s",
                cluster.cluster_id,
                len(cluster.outlets),
                cluster.fan_posts,
                cluster.first.title,
            )
    return offers


# --- shell output ------------------------------------------------------------------------------------------


def ago(moment: datetime, now: datetime) -> str:
    """ "just now", "12 min ago", "2 h ago", "3 d ago"."""
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def outlets_label(count: int) -> str:
    return f"{count} outlet" if count == 1 else f"{count} outlets"


def artist_label(ref: ArtistRef) -> str:
    return f"{ref.name} ({ref.group})" if ref.group else ref.name


def hours_label(hours: float) -> str:
    return f"{hours:g} h"


def render_text(clusters: list[TrendingCluster], *, hours: float, now: datetime) -> str:
    """Readable shell output: "1. Title — 3 outlets · 2 h ago", then the artists, outlets, link and the
    other outlets' headlines."""
    if not clusters:
        return f"Nothing trending in the last {hours_label(hours)}: no stories stored from that time."
    lines = [f"Trending in the last {hours_label(hours)}:"]
    width = len(str(len(clusters)))
    for cluster in clusters:
        lines.append(
            f"{cluster.rank:>{width}}. {_one_line(cluster.title)} — {outlets_label(len(cluster.outlets))}"
            f" · {ago(cluster.first_seen, now)}"
        )
        pad = " " * (width + 2)
        about = ", ".join(artist_label(a) for a in cluster.artists)
        lines.append(pad + " · ".join(x for x in (about, ", ".join(cluster.outlets)) if x))
        lines.append(pad + cluster.url)
        for story in cluster.stories[1:]:  # the same story in other words: what each outlet called it
            lines.append(f"{pad}+ {outlet_name(story.source)}: {_one_line(story.title)}")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no headline)"


async def run_trending(config: Any, *, hours: float, as_json: bool, limit: int, out: TextIO) -> int:
    """The CLI: the same ranking as /trending, one JSON object per cluster per line (best first) or text."""
    artists = await load_artist_index(sys.stderr, without="stories are shown without artist names")
    store = await Store.open_configured(config.storage, artists=artists)
    try:
        # stories stored before clustering ran (an older version, an interrupted poll) are clustered first:
        # idempotent, and cheap when there are none
        clustered = await cluster_unclustered(store)
        if clustered:
            log.info("clustered %d stories that had no cluster yet", clustered)
        now = utcnow()
        clusters = await trending_clusters(store, hours=hours, limit=limit, now=now)
    finally:
        await store.close()
    if as_json:
        for cluster in clusters:
            out.write(json.dumps(cluster.to_json(), ensure_ascii=False) + "\n")
        return 0
    out.write(render_text(clusters, hours=hours, now=now) + "\n")
    return 0
