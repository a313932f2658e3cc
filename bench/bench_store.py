"""The store on both engines: storing stories, asking which are known, reading them back, full-text search.
SQLite is the baseline; each PostgreSQL figure is given with its ratio to SQLite's (PG/SQLite time).

    /work/venv/bin/python bench/bench_store.py                 # 10,000 stories, best of 3 (about 2 minutes)
    /work/venv/bin/python bench/bench_store.py --quick         # 2,000 stories, best of 2
    KPOPNEWS_TEST_POSTGRES_URL=postgresql://postgres@host:5432/postgres python bench/bench_store.py

PostgreSQL: a database kpopnews_bench_<random> is created through the maintenance URL and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from bot.config import SourceConfig  # noqa: E402
from bot.models import ArtistRef, Story  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store.text_search import text_matches  # noqa: E402

WORDS = (
    "comeback teaser concept photo album single tour concert fans netizens viral stage performance award "
    "music video chart record drama variety show interview livestream enlistment discharge collaboration "
    "fashion week ambassador trophy selfie behind the scenes schedule release choreography lyrics"
).split()
ARTISTS = ["bts", "bts-v", "iu", "twice", "aespa", "newjeans", "stray-kids", "blackpink", "seventeen", "ive"]


def make_stories(n: int) -> list[Story]:
    rng = random.Random(7)
    stories = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(9)).capitalize()
        # each story also names one of 100 rarer words: a search for one of those matches 1 % of the stories
        summary = " ".join(rng.choice(WORDS) for _ in range(45)) + f" venue{rng.randrange(100)}"
        artists = rng.sample(ARTISTS, rng.randint(0, 3))
        stories.append(
            Story(
                key=f"https://news.example/{i}",
                title=title,
                url=f"https://news.example/{i}?utm_source=rss",
                source="Koreaboo",
                canonical_url=f"https://news.example/{i}",
                summary=summary,
                text=" ".join([summary] * 8),
                artists=[ArtistRef(a, a, None) for a in artists],
            )
        )
    return stories


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def measure(store: Store, n: int, batch: int, queries: int) -> dict[str, float]:
    (source,) = await store.sources.sync_config([SourceConfig("Koreaboo", "https://www.koreaboo.com/feed/")])
    stories = make_stories(n)
    figures: dict[str, float] = {}
    start = time.perf_counter()
    ids: list[int] = []
    for at in range(0, n, batch):
        ids += [r.id for r in await store.stories.add_many(stories[at : at + batch], source_id=source.id)]
    figures["add_many"] = time.perf_counter() - start
    again = make_stories(n)  # the same stories polled again: all known
    figures["add_many known"] = await timed(
        lambda: _each(
            [again[at : at + batch] for at in range(0, n, batch)],
            lambda b: store.stories.add_many(b, source_id=source.id),
        )
    )
    keys = [s.key for s in stories]
    figures["known_keys"] = await timed(lambda: store.stories.known_keys(keys, keys))
    figures["get_many all"] = await timed(lambda: store.stories.get_many(ids))
    async with store.transaction():  # statistics, as a running database has them (PostgreSQL's autovacuum)
        await store._db.execute("ANALYZE")
    rng = random.Random(3)
    page: list[float] = []
    common: list[float] = []
    rare: list[float] = []
    for _ in range(queries):
        chosen = rng.sample(ids, 10)
        page.append(await timed(lambda chosen=chosen: store.stories.get_many(chosen)))
        for words, into in ((rng.sample(WORDS, 2), common), ([f"venue{rng.randrange(100)}"], rare)):
            into.append(
                await timed(
                    lambda words=words: text_matches(store._db, words, any_word=False, window=200, cap=1000)
                )
            )
    figures["get_many 10 p50"], figures["get_many 10 p99"] = pct(page, 50), pct(page, 99)
    figures["search common p50"], figures["search common p99"] = pct(common, 50), pct(common, 99)
    figures["search rare p50"], figures["search rare p99"] = pct(rare, 50), pct(rare, 99)
    return figures


async def _each(batches: list[list[Story]], call: Callable[[list[Story]], Awaitable[Any]]) -> None:
    for b in batches:
        await call(b)


async def on_sqlite(n: int, batch: int, queries: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "bench.db")
        try:
            return await measure(store, n, batch, queries)
        finally:
            await store.close()


async def on_postgresql(maintenance: str, n: int, batch: int, queries: int) -> dict[str, float]:
    name = f"kpopnews_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(maintenance)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(maintenance)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        store = await Store.open(url)
        try:
            return await measure(store, n, batch, queries)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _keep_best(best: dict[str, float], figures: dict[str, float]) -> None:
    for what, value in figures.items():
        best[what] = min(value, best.get(what, value))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=20, help="stories per add_many (a feed's worth: 20)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per engine, alternating; the best is shown"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 stories, 50 queries, 2 runs")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KPOPNEWS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="maintenance database URL (a database is created and dropped through it)",
    )
    args = parser.parse_args()
    n, queries, repeat = (2_000, 50, 2) if args.quick else (args.stories, args.queries, args.repeat)
    lite: dict[str, float] = {}
    pg: dict[str, float] = {}
    for _ in range(repeat):  # alternating, best of each: this machine is shared, its load comes and goes
        _keep_best(lite, await on_sqlite(n, args.batch, queries))
        _keep_best(pg, await on_postgresql(args.postgres, n, args.batch, queries))
    print(
        f"{n} stories in batches of {args.batch}, {queries} queries, best of {repeat} runs; times in ms"
        " (PG/SQLite > 1: PostgreSQL slower)"
    )
    print(f"{'':22} {'SQLite':>10} {'PostgreSQL':>11} {'PG/SQLite':>10}")
    for what in lite:
        print(f"{what:22} {lite[what] * 1000:10.1f} {pg[what] * 1000:11.1f} {pg[what] / lite[what]:9.2f}×")
    print(f"{'stories/s stored':22} {n / lite['add_many']:10.0f} {n / pg['add_many']:11.0f}")


if __name__ == "__main__":
    asyncio.run(main())
