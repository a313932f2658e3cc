"""Clustering cost per new story with 100,000 stories stored (goal: under 5 ms), against a naive baseline that
compares the new story with every story published within ±48 h, both measured in the same run.

    /work/venv/bin/python bench/bench_cluster.py [--stored 100000] [--new 300] [--naive 40] [--db PATH]
        [--batch-stories 10000] [--batch-size 20]

The stored stories are synthetic but shaped like a year of K-pop news: ~275 stories a day from seven outlets,
events covered by one to four outlets in different words (each event takes some of its kind's words, e.g.
"comeback album teaser", and five words of its own), artists drawn with a Zipf law (the top act is in about
one event in seven), so the busiest artist has a couple of hundred stories in any 96-hour window. The
"synthetic truth" line only checks that the index finds what the naive way finds; how well clustering tells
real stories apart is measured on the labelled pairs (tests/test_clustering.py), not here. (Its random words
link many stories of different events: a new story then merges their clusters, which may grow to the 48-hour
limit, past which more coverage cannot join; the naive way ignores that limit.) They are
written straight into the tables (stories, story_artists, cluster_features, cluster_keys) with the same
features assign_clusters would compute, which takes seconds instead of the minutes of clustering each one.
Then new stories (half of them new coverage of an event of the last day, half new events) go through the real
`assign_clusters`, one call per story, each with its commit, as the pipeline's smallest batches would.

Then the batch figure: --batch-stories more stories (a day and a half of news: more coverage of the last day's
events and new events) stored and clustered --batch-size at a time, as the poller hands over a feed's new stories;
and the memory of the clustering cache holding 10,000 clustered stories' features (tracemalloc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import clustering  # noqa: E402
from bot.clustering import (  # noqa: E402
    CLUSTER_WINDOW,
    _epoch,
    assign_clusters,
    features_of,
    index_keys,
    match_score,
)
from bot.models import ArtistRef, Story  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.timeutil import from_iso, to_iso  # noqa: E402

OUTLETS = ["Koreaboo", "Soompi", "SCMP", "NME", "allkpop", "Korea Herald", "Kpopmap"]
EVENT_WORDS = {
    "comeback": "comeback album title track teaser concept schedule mini full release return tracklist",
    "chart": "billboard chart hot100 billboard200 debut peak rank number spot week entry",
    "views": "views million youtube music video milestone fastest hits surpasses record",
    "award": "award trophy daesang wins ceremony speech grand prize night stage",
    "military": "military enlist service training discharge army unit soldier duty",
    "contract": "contract renew agency sign deal label leaves exclusive management",
    "dating": "dating relationship rumors couple spotted romance report denies",
    "tour": "tour concert dates cities stadium encore arena tickets sold out",
    "ambassador": "ambassador brand global luxury fashion campaign house face muse",
    "variety": "variety show episode guest appearance laugh cast member reveals",
    "drama": "drama cast role actor series lead episode ratings premiere",
    "health": "hiatus health injury hospital rest recovery statement schedule",
    "fashion": "fashion week outfit runway show paris milan look designer",
    "collab": "collaboration featuring duet producer songwriting credits track",
    "sns": "instagram selfie update photos post weverse message live broadcast",
    "legal": "lawsuit court agency dispute ruling legal claims injunction",
    "birthday": "birthday celebrate cupsleeve event message gifts anniversary",
    "fanmeeting": "fanmeeting fan meeting tickets event venue announce date",
}
FILLER = (
    "the a this that new latest fans netizens group member members singer idol agency company stage performance "
    "moment video clip photos online social media attention praise reaction viral trend hot topic together "
    "after before during recent week day night official statement revealed shared announced confirmed"
).split()


def pseudo_words(rng: random.Random, n: int) -> list[str]:
    syllables = [
        "ka",
        "ri",
        "na",
        "so",
        "mi",
        "jun",
        "hyo",
        "seo",
        "lu",
        "da",
        "ye",
        "bin",
        "won",
        "tae",
        "ra",
    ]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))) for _ in range(n)]


class World:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        names = pseudo_words(self.rng, 400)
        self.artists = [ArtistRef(f"artist-{i}-{name}", name.title(), None) for i, name in enumerate(names)]
        self.by_id = {a.id: a for a in self.artists}
        self.weights = [1 / (rank + 1) for rank in range(len(self.artists))]  # Zipf
        self.specific = pseudo_words(self.rng, 5000)
        self.kinds = list(EVENT_WORDS)

    def event(self) -> dict:
        rng = self.rng
        artists = rng.choices(self.artists, self.weights, k=rng.choice((1, 1, 1, 2)))
        kind = rng.choice(self.kinds)
        return {
            "artists": [a.id for a in dict.fromkeys(artists)],
            # an event uses some of its kind's words, and words of its own (a title, a place, a number)
            "words": rng.sample(EVENT_WORDS[kind].split(), 5),
            "specific": rng.sample(self.specific, 5),
            "outlets": rng.sample(OUTLETS, rng.choice((1, 1, 2, 2, 3, 4))),
        }

    def story(self, event: dict, outlet: str, n: int, published: datetime) -> Story:
        rng = self.rng
        artists = [self.by_id[a] for a in event["artists"]]
        names = [a.name for a in artists]
        title_words = rng.sample(event["words"], 3) + rng.sample(event["specific"], 2)
        rng.shuffle(title_words)
        body = (
            rng.sample(event["words"], 3)
            + rng.sample(event["specific"], 4)
            + rng.sample(FILLER, 14)
            + rng.sample(self.specific, 4)
            + names
        )
        rng.shuffle(body)
        return Story(
            key=f"bench-{n}",
            title=f"{' and '.join(names)} {' '.join(title_words).title()}",
            url=f"https://{outlet.lower().replace(' ', '')}.example/{n}",
            canonical_url=f"https://{outlet.lower().replace(' ', '')}.example/{n}",
            source=outlet,
            published=published,
            first_seen=published,
            summary=" ".join(body).capitalize() + ".",
            artists=artists,
        )


async def fill(store: Store, world: World, count: int, end: datetime) -> list[tuple[dict, datetime, int]]:
    """Write `count` clustered stories over the year before `end`; return the events of the last day."""
    start = end - timedelta(days=365)
    span = (end - start).total_seconds()
    stories_rows, artist_rows, feature_rows, key_rows = [], [], [], []
    recent: list[tuple[dict, datetime, int]] = []
    n = 0
    while n < count:
        event = world.event()
        begin = start + timedelta(seconds=world.rng.random() * span)
        cluster_id = n + 1
        cluster_at = None
        for outlet in event["outlets"]:
            if n >= count:
                break
            n += 1
            published = begin + timedelta(hours=world.rng.random() * 12)
            story = world.story(event, outlet, n, published)
            f = features_of(story)
            at = _epoch(f.at)
            cluster_at = cluster_at if cluster_at is not None else at
            stories_rows.append(
                (
                    n,
                    story.key,
                    story.canonical_url,
                    story.url,
                    story.title,
                    story.source,
                    to_iso(published),
                    to_iso(published),
                    story.summary,
                    cluster_id,
                )
            )
            artist_rows.extend((n, a.id, 1.0 / (i + 1), i) for i, a in enumerate(story.artists))
            feature_rows.append(
                (
                    n,
                    cluster_id,
                    at,
                    cluster_at,
                    " ".join(sorted(f.artists)),
                    " ".join(sorted(f.title_terms)),
                    " ".join(sorted(f.terms - f.title_terms)),
                    int(f.roundup),
                    " ".join(sorted(f.kinds)),
                )
            )
            key_rows.extend((key, at, n) for key in index_keys(f))
        if begin > end - timedelta(days=1):
            recent.append((event, begin, cluster_id))
    # the bench fills the tables directly (100,000 stories in seconds), on the store's own connection
    db = store._db
    async with store.transaction():
        await fill_tables(db, stories_rows, artist_rows, feature_rows, key_rows)
    async with store.transaction():
        await db.execute("ANALYZE")
    return recent


async def fill_tables(
    db: Any, stories_rows: list[Any], artist_rows: list[Any], feature_rows: list[Any], key_rows: list[Any]
) -> None:
    await db.executemany(
        "INSERT INTO stories(id, story_key, canonical_url, url, title, source_name, published_at, first_seen_at,"
        " summary, cluster_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
        stories_rows,
    )
    await db.executemany(
        "INSERT INTO story_artists(story_id, artist_id, weight, position) VALUES (?,?,?,?)", artist_rows
    )
    await db.executemany(
        "INSERT INTO cluster_features(story_id, cluster_id, at, cluster_at, artists, title_terms, body_terms,"
        " roundup, kinds) VALUES (?,?,?,?,?,?,?,?,?)",
        feature_rows,
    )
    key_rows.sort()  # in index order: the B-tree is filled left to right
    await db.executemany(
        "INSERT INTO cluster_keys(key, at, story_id) VALUES (?,?,?) ON CONFLICT DO NOTHING", key_rows
    )


async def naive_cluster(store: Store, story: Story) -> int | None:
    """The baseline: read every story published within ±48 h (with its artists) and compare with each; the
    cluster the story ends in (the clusters it is the same story as merge into the smallest id)."""
    f = features_of(story)
    low, high = to_iso(f.at - CLUSTER_WINDOW), to_iso(f.at + CLUSTER_WINDOW)
    rows = await store._db.fetchall(
        "SELECT id, title, summary, published_at, source_name, url, cluster_id FROM stories"
        " WHERE published_at BETWEEN ? AND ? AND id != ? AND cluster_id IS NOT NULL",
        (low, high, story.id or 0),
    )
    ids = [row[0] for row in rows]
    artists: dict[int, list[ArtistRef]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found = await store._db.fetchall(
            f"SELECT story_id, artist_id FROM story_artists WHERE story_id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        for story_id, artist_id in found:
            name = artist_id.split("-", 2)[-1].title()  # the bench's artists are named in their ids
            artists.setdefault(story_id, []).append(ArtistRef(artist_id, name, None))
    linked: set[int] = set()
    for row in rows:
        other = Story(
            key=str(row[0]),
            title=row[1],
            url=row[5],
            source=row[4],
            published=from_iso(row[3]),
            summary=row[2],
            artists=artists.get(row[0], []),
        )
        if match_score(f, features_of(other)) is not None:
            linked.add(row[6])
    naive_cluster.window = len(rows)  # type: ignore[attr-defined]
    return min(linked) if linked else None  # the clusters it is the same story as become one, the smallest id


def fill_mark(args: argparse.Namespace) -> str:
    return f"bench_cluster v3 {args.stored} {args.seed}"  # which fill a kept database holds


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=300, help="new stories clustered through the index")
    parser.add_argument("--naive", type=int, default=40, help="new stories clustered the naive way")
    parser.add_argument(
        "--db",
        help="keep the filled database in this file and reuse it next time (each run works on a copy);"
        " default: fill a temporary one",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--batch-stories", type=int, default=10_000, help="stories clustered in batches (0 skips)"
    )
    parser.add_argument("--batch-size", type=int, default=20, help="stories per assign_clusters call")
    args = parser.parse_args()

    folder = tempfile.TemporaryDirectory()
    path = str(Path(folder.name) / "bench.db")
    world = World(args.seed)
    end = datetime(2025, 6, 1, tzinfo=UTC)
    filled_mark = fill_mark(args)
    reused = False
    if args.db and Path(args.db).is_file():  # noqa: ASYNC240 - once, before anything is measured
        kept = await Store.open(args.db)
        reused = await kept.meta.get("bench_filled") == filled_mark
        await kept.close()
        if reused:
            shutil.copyfile(args.db, path)
    store = await Store.open(path)
    try:
        return await measure(store, args, world, end, reused, path)
    finally:
        await store.close()
        folder.cleanup()


async def measure(
    store: Store, args: argparse.Namespace, world: World, end: datetime, reused: bool, path: str
) -> int:
    t0 = time.perf_counter()
    if reused:
        recent = json.loads(await store.meta.get("bench_recent") or "[]")
        print(f"reused {args.stored:,} stories from {args.db}")
    else:
        recent = await fill(store, world, args.stored, end)
        await store.meta.set("bench_recent", json.dumps(recent, default=str))
        await store.meta.set("bench_filled", fill_mark(args))
        print(f"filled {args.stored:,} stories in {time.perf_counter() - t0:.1f} s")
        if args.db:
            async with store.transaction():
                await store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copyfile(path, args.db)
    recent = [(event, datetime.fromisoformat(str(begin)), cluster_id) for event, begin, cluster_id in recent]

    # new stories: half more coverage of an event of the last day, half new events
    new_stories: list[tuple[Story, int | None]] = []
    base = args.stored + 1000
    for i in range(args.new + args.naive):
        if i % 2 == 0 and recent:
            event, begin, cluster_id = world.rng.choice(recent)
            expected: int | None = cluster_id
        else:
            event, begin, expected = world.event(), end - timedelta(hours=world.rng.random() * 12), None
        story = world.story(event, world.rng.choice(OUTLETS), base + i, begin + timedelta(hours=2))
        new_stories.append((story, expected))
    await store.stories.add_many([s for s, _ in new_stories], source_id=None)

    # indexed: the real assign_clusters, one story per call
    indexed_times, joined, expected_joins, alone, expected_alone = [], 0, 0, 0, 0
    for story, expected in new_stories[: args.new]:
        t = time.perf_counter()
        result = await assign_clusters(store, [story])
        indexed_times.append(time.perf_counter() - t)
        got = result[story.id]
        if expected is None:
            expected_alone += 1
            alone += got == story.id
        else:
            expected_joins += 1
            # its event's cluster, perhaps merged with another since: the cluster its first story is in now
            joined += (await store.clusters.clusters_of([expected])).get(expected) == got
    # naive: every story of the window read and compared (read-only: it writes nothing)
    naive_times, windows, agree = [], [], 0
    for story, _ in new_stories[args.new :]:
        t = time.perf_counter()
        naive = await naive_cluster(store, story)
        naive_times.append(time.perf_counter() - t)
        windows.append(naive_cluster.window)  # type: ignore[attr-defined]
        indexed = (await assign_clusters(store, [story]))[story.id]
        agree += (naive or story.id) == indexed

    found = await store._db.fetchall(
        "EXPLAIN QUERY PLAN SELECT story_id FROM cluster_keys WHERE key IN (?, ?) AND at BETWEEN ? AND ?"
        " GROUP BY story_id",
        ("a:x", "t:y", 0, 1),
    )
    plan = "; ".join(str(row[-1]) for row in found)

    def ms(values: list[float]) -> str:
        values = sorted(values)
        p95 = values[int(0.95 * (len(values) - 1))]
        return f"median {statistics.median(values) * 1000:.2f} ms, mean {statistics.mean(values) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"

    print(f"indexed assign_clusters, {len(indexed_times)} new stories: {ms(indexed_times)} (goal < 5 ms)")
    print(f"  of which the first 20, parsed-candidate cache still cold: {ms(indexed_times[:20])}")
    print(
        f"  synthetic truth: more coverage joined its event {joined}/{expected_joins},"
        f" new events left alone {alone}/{expected_alone}"
    )
    print(
        f"naive, {len(naive_times)} new stories vs every story within ±48 h (mean {statistics.mean(windows):.0f}"
        f" stories): {ms(naive_times)}"
    )
    print(
        f"speed-up (median): {statistics.median(naive_times) / statistics.median(indexed_times):.0f}x;"
        f" same cluster as the naive way: {agree}/{len(naive_times)}"
    )
    print(f"candidate query plan: {plan}")
    if args.batch_stories:
        await measure_batches(store, args, world, end, recent, base + args.new + args.naive)
        await measure_cache(store, args.stored)
    return 0


async def measure_batches(
    store: Store, args: argparse.Namespace, world: World, end: datetime, recent: list[Any], base: int
) -> None:
    """--batch-stories new stories over the 36 hours after `end`, clustered --batch-size at a time."""
    stories: list[Story] = []
    events = [(event, begin) for event, begin, _ in recent]
    for i in range(args.batch_stories):
        if i % 2 == 0 or not events:  # a new event, later told by other outlets too
            event, begin = world.event(), end + timedelta(hours=36 * i / args.batch_stories)
            events.append((event, begin))
        else:
            event, begin = world.rng.choice(events[-400:])
        published = begin + timedelta(hours=world.rng.random() * 6)
        stories.append(world.story(event, world.rng.choice(OUTLETS), base + i, published))
    size = args.batch_size
    batches = [stories[i : i + size] for i in range(0, len(stories), size)]
    for batch in batches:  # stored first, as the poller does; only the clustering is timed
        await store.stories.add_many(batch, source_id=None)
    t = time.perf_counter()
    for batch in batches:
        async with store.transaction():  # as bot/pipeline.after_store: one transaction per batch
            await assign_clusters(store, batch)
    seconds = time.perf_counter() - t
    clusters = len({s.cluster_id for s in stories})
    print(
        f"batches: {len(stories):,} new stories clustered {size} per call with {args.stored:,} stored:"
        f" {seconds:.1f} s, {len(stories) / seconds:,.0f} stories/s ({clusters:,} clusters)"
    )


async def measure_cache(store: Store, stored: int) -> None:
    """The memory the clustering cache takes for 10,000 clustered stories, as its entries are made (with the
    character n-grams, which scoring needs of every candidate that shares words)."""
    ids = [row[0] for row in await store._db.fetchall("SELECT story_id FROM cluster_features LIMIT 10000")]
    members = await store.clusters.members(ids)
    clustering._caches.clear()

    def build() -> list[Any]:
        if hasattr(clustering, "_compact_from"):  # compact features
            return [clustering._compact_from(m) for m in members]
        # the frozensets of strings they replace
        found = [clustering._features_from(m) for m in members]  # type: ignore[attr-defined]
        for features in found:
            _ = features.grams
        return found

    build()  # the word caches (bounded, shared by every story) warm, as in a running bot
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(
        f"cache memory: {len(kept):,} stories' features take {size / 1e6:.1f} MB ({size / len(kept):,.0f} B each)"
    )


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
