"""Artist tagging speed, search latency on a 100,000-story store, and autocomplete latency, each against a
naive baseline measured in the same run.

    /work/venv/bin/python bench/bench_artists.py            # the default run (about a minute)
    /work/venv/bin/python bench/bench_artists.py --stories 20000 --queries 200
    /work/venv/bin/python bench/bench_artists.py --tagging-only --tag 2000   # tagging alone, a few seconds

Goals (issue 3): search p99 < 20 ms on 100,000 stories; autocomplete p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rapidfuzz import fuzz  # noqa: E402

from bot.artists import ArtistIndex  # noqa: E402
from bot.artists.data import name_forms  # noqa: E402
from bot.search import search_stories  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.timeutil import to_iso  # noqa: E402

LABELS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "artist_labels.json"
WORDS = (
    "comeback teaser concept photo album single tour concert fans netizens viral stage performance award "
    "music video chart record drama variety show interview livestream enlistment discharge collaboration "
    "fashion week ambassador trophy selfie behind the scenes schedule release choreography lyrics"
).split()


PASSES = 2


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --- tagging -------------------------------------------------------------------------------------------------


def stories_for_tagging(n: int) -> list[tuple[str, str, list[str]]]:
    """Realistic stories: the labelled headlines and paragraphs, padded to article length (~3,000 chars)."""
    cases = json.loads(LABELS.read_text(encoding="utf-8"))
    rng = random.Random(7)
    out = []
    for i in range(n):
        case = cases[i % len(cases)]
        filler = " ".join(rng.choice(WORDS) for _ in range(400))
        text = case["text"] + "\n\n" + filler.capitalize() + ". " + case["text"]
        out.append((case["title"], text, case["categories"]))
    return out


def bench_tagging(index: ArtistIndex, n: int) -> None:
    stories = stories_for_tagging(n)
    chars = sum(len(t) + len(x) for t, x, _ in stories) / len(stories)
    best = cpu_best = float("inf")
    for _ in range(3):  # the best of three passes: a shared machine's other work only ever slows one down
        start, cpu_start = time.perf_counter(), time.process_time()
        for title, text, categories in stories:
            index.tag(title, text, categories)
        best = min(best, time.perf_counter() - start)
        cpu_best = min(cpu_best, time.process_time() - cpu_start)
    fast = len(stories) / best

    # naive: one case-insensitive word-bounded regex search per name, per story
    names = sorted({s for a in index for s, _ in name_forms(a)})
    patterns = [re.compile(r"(?<!\w)" + re.escape(name) + r"(?!\w)", re.I) for name in names]
    sample = stories[: max(3, n // 100)]
    start = time.perf_counter()
    for title, text, _ in sample:
        body = title + "\n" + text
        [p.pattern for p in patterns if p.search(body)]
    naive = len(sample) / (time.perf_counter() - start)
    print(
        f"tagging: {fast:,.0f} stories/s (avg {chars:,.0f} chars, {n} stories; "
        f"CPU {len(stories) / cpu_best:,.0f} stories/s, {cpu_best * 1e6 / len(stories):,.0f} us/story)"
    )
    print(
        f"  naive regex per name ({len(names):,} names): {naive:,.1f} stories/s -> {fast / naive:,.0f}x faster"
    )


# --- search ----------------------------------------------------------------------------------------------------


async def insert_rows(
    store: Store, story_rows: list[tuple[Any, ...]], artist_rows: list[tuple[Any, ...]]
) -> None:
    """Stories and their artists written straight into the tables (100,000 stories in seconds), on the store's
    own connection: (id, key, canonical url, url, title, source name, published, first seen, summary) and (story
    id, artist id, weight, position)."""
    async with store.transaction():
        await store._db.executemany(
            "INSERT INTO stories(id, story_key, canonical_url, url, title, source_name, published_at,"
            " first_seen_at, summary) VALUES (?,?,?,?,?,?,?,?,?)",
            story_rows,
        )
        await store._db.executemany(
            "INSERT INTO story_artists(story_id, artist_id, weight, position) VALUES (?,?,?,?)", artist_rows
        )


async def build_store(path: Path, index: ArtistIndex, n: int) -> Store:
    """A store of n stories, artists drawn with a long tail (a few acts get most stories), as ingest makes them."""
    store = await Store.open(path)
    rng = random.Random(11)
    people = [a for a in index if not a.is_group]
    groups = [a for a in index if a.is_group]
    weights_p = [{1: 30, 2: 5, 3: 1}[a.tier] for a in people]
    weights_g = [{1: 30, 2: 5, 3: 1}[a.tier] for a in groups]
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    story_rows, artist_rows = [], []
    for i in range(1, n + 1):
        tagged = rng.choices(people, weights_p, k=rng.choice((1, 1, 2)))
        if rng.random() < 0.3:
            tagged.append(rng.choices(groups, weights_g)[0])
        first = tagged[0]
        title = f"{first.label} {rng.choice(WORDS)} {rng.choice(WORDS)} news {i}"
        summary = " ".join(rng.choice(WORDS) for _ in range(25))
        published = t0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 700))
        when = None if rng.random() < 0.05 else to_iso(published)
        url = f"https://example.org/news/{i}"
        story_rows.append((i, f"guid-{i}", url, url, title, "Bench", when, to_iso(published), summary))
        for pos, artist in enumerate(dict.fromkeys(a.id for a in tagged)):
            artist_rows.append((i, artist, 1.0 / (pos + 1), pos))
    await insert_rows(store, story_rows, artist_rows)
    async with store.transaction():
        await store._db.execute("ANALYZE")
    return store


async def naive_search(store: Store, index: ArtistIndex, query: str, limit: int = 5) -> list[int]:
    """What one writes first: LIKE over titles and summaries, sorted by time."""
    like = f"%{query}%"
    rows = await store._db.fetchall(
        "SELECT id FROM stories WHERE title LIKE ? OR summary LIKE ?"
        " ORDER BY COALESCE(published_at, first_seen_at) DESC LIMIT ?",
        (like, like, limit),
    )
    return [row[0] for row in rows]


async def naive_artist_join(store: Store, index: ArtistIndex, query: str, limit: int = 5) -> list[int]:
    """The artist table without the per-artist time index: join, then sort every match."""
    artist = index.resolve(query)
    ids = index.expand(artist.id) if artist else []
    if not ids:
        return []
    placeholders = ",".join("?" * len(ids))
    rows = await store._db.fetchall(
        "SELECT DISTINCT s.id, COALESCE(s.published_at, s.first_seen_at) AS t FROM stories s"
        f" NOT INDEXED JOIN story_artists sa ON sa.story_id = s.id WHERE sa.artist_id IN ({placeholders})"
        " ORDER BY t DESC LIMIT ?",
        (*ids, limit),
    )
    return [row[0] for row in rows]


def search_queries(index: ArtistIndex, count: int) -> list[str]:
    rng = random.Random(5)
    fixed = ["BTS", "V", "Taehyung", "뷔", "NCT", "SEVENTEEN", "TWICE", "IU", "BLACKPINK", "aespa", "Taehyng",
             "comeback", "world tour", "Love Wins All", "zzqx", '"NEAR(', "Stray Kids", "Jimin"]  # fmt: skip
    names = [a.name for a in index]
    queries = list(fixed)
    while len(queries) < count:
        queries.append(rng.choice(names) if rng.random() < 0.8 else " ".join(rng.sample(WORDS, 2)))
    return queries


async def bench_search(index: ArtistIndex, n: int, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = await build_store(Path(tmp) / "bench.db", index, n)
        print(f"store: {n:,} stories built in {time.perf_counter() - start:.1f} s")
        try:
            queries = search_queries(index, count)
            for q in queries[:20]:  # warm the page cache like a running bot
                await search_stories(store, index, q)
            # each query timed in PASSES passes, its best kept: the machine is shared, and a neighbour's
            # burst is not the search's latency (the naive baselines get the same treatment)
            fast = [float("inf")] * len(queries)
            turned = [float("inf")] * len(queries)  # the Next page: a keyset cursor after the first page
            modes: dict[str, int] = {}
            few = queries[: max(10, count // 10)]
            naive_like = [float("inf")] * len(few)
            naive_join = [float("inf")] * len(few)
            for _ in range(PASSES):
                for i, q in enumerate(queries):
                    t = time.perf_counter()
                    result = await search_stories(store, index, q, limit=5)
                    fast[i] = min(fast[i], time.perf_counter() - t)
                    modes[result.mode] = modes.get(result.mode, 0) + 1
                    if result.has_more:
                        t = time.perf_counter()
                        await search_stories(store, index, q, limit=5, before=result.keys[-1])
                        turned[i] = min(turned[i], time.perf_counter() - t)
                for i, q in enumerate(few):
                    t = time.perf_counter()
                    await naive_search(store, index, q)
                    naive_like[i] = min(naive_like[i], time.perf_counter() - t)
                    t = time.perf_counter()
                    await naive_artist_join(store, index, q)
                    naive_join[i] = min(naive_join[i], time.perf_counter() - t)
            modes = {k: v // PASSES for k, v in modes.items()}
        finally:
            await store.close()
    p50, p99 = pct(fast, 50), pct(fast, 99)
    print(f"search over {n:,} stories, {len(fast)} queries {modes}: p50 {ms(p50)}, p99 {ms(p99)}, "
          f"max {ms(max(fast))} (goal p99 < 20 ms: {'met' if p99 < 0.020 else 'NOT met'})")  # fmt: skip
    turned = [t for t in turned if t != float("inf")]
    print(f"  Next page (keyset cursor), {len(turned)} queries with one: p50 {ms(pct(turned, 50))}, "
          f"p99 {ms(pct(turned, 99))}, max {ms(max(turned))}")  # fmt: skip
    for label, naive in (("LIKE '%..%' scan", naive_like), ("join + sort, no time index", naive_join)):
        print(f"  naive {label}: p50 {ms(pct(naive, 50))}, p99 {ms(pct(naive, 99))} -> "
              f"{pct(naive, 50) / p50:,.1f}x slower at p50, {pct(naive, 99) / p99:,.1f}x at p99")  # fmt: skip


# --- autocomplete ----------------------------------------------------------------------------------------------


def bench_autocomplete(index: ArtistIndex, count: int) -> None:
    rng = random.Random(3)
    names = [a.name for a in index] + [a.hangul for a in index if a.hangul]
    queries = [""]
    while len(queries) < count:
        name = rng.choice(names)
        cut = rng.randint(1, max(1, len(name)))
        q = name[:cut]
        if rng.random() < 0.2 and len(q) > 3:  # a typo
            i = rng.randrange(len(q))
            q = q[:i] + q[i + 1 :]
        queries.append(q)
    for q in queries[:20]:
        index.suggest(q)
    fast = [float("inf")] * len(queries)
    labels = [a.label for a in index]
    few = queries[: max(10, count // 5)]
    naive = [float("inf")] * len(few)
    for _ in range(PASSES):  # best of PASSES per query, as for search
        for i, q in enumerate(queries):
            index._short_suggestions.clear()  # measure the cold path: no memo of short prefixes
            t = time.perf_counter()
            index.suggest(q, 25)
            fast[i] = min(fast[i], time.perf_counter() - t)
        for i, q in enumerate(few):
            t = time.perf_counter()
            sorted(labels, key=lambda label: -fuzz.WRatio(q, label))[:25]
            naive[i] = min(naive[i], time.perf_counter() - t)
    p50, p99 = pct(fast, 50), pct(fast, 99)
    print(f"autocomplete (uncached) over {len(index):,} artists, {len(fast)} queries: p50 {ms(p50)}, p99 {ms(p99)} "
          f"(goal p99 < 5 ms: {'met' if p99 < 0.005 else 'NOT met'})")  # fmt: skip
    print(f"  naive fuzzy score of every label: p50 {ms(pct(naive, 50))}, p99 {ms(pct(naive, 99))} -> "
          f"{pct(naive, 50) / p50:,.0f}x slower at p50")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stories", type=int, default=100_000, help="stories in the search store")
    parser.add_argument("--queries", type=int, default=500, help="search and autocomplete queries")
    parser.add_argument("--tag", type=int, default=1_000, help="stories to tag")
    parser.add_argument(
        "--tagging-only", action="store_true", help="only the tagging figure (seconds, not a minute)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    index = ArtistIndex.load()
    print(f"artist index: {len(index):,} artists loaded in {time.perf_counter() - start:.2f} s")
    print(f"machine load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    bench_tagging(index, args.tag)
    if args.tagging_only:
        return 0
    bench_autocomplete(index, args.queries)
    asyncio.run(bench_search(index, args.stories, args.queries))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
