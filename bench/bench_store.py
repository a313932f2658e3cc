"""The store on both engines: storing stories, asking which are known, reading them back, full-text search.
SQLite is the baseline; each PostgreSQL figure is given with its ratio to SQLite's (PG/SQLite time).

    /work/venv/bin/python bench/bench_store.py                 # 10,000 stories, best of 3 (about 2 minutes)
    /work/venv/bin/python bench/bench_store.py --quick         # 2,000 stories, best of 2
    KPOPNEWS_TEST_POSTGRES_URL=postgresql://postgres@host:5432/postgres python bench/bench_store.py

Bytes per stored story (`--bytes`): a real `poll --once` pass (fetch, parse, enrich, store, cluster) over a
loopback farm of WordPress feeds x 20 items, into a fresh database of each engine, then what each table costs
per story with its indexes (SQLite's dbstat; PostgreSQL's pg_total_relation_size after VACUUM FULL), less what the
same tables weigh empty. Two farms: bench_ingest's (each item one paragraph repeated: its text compresses far
better than prose does) and one of prose (each item ~2 KB of distinct sentences from the article fixtures).

    /work/venv/bin/python bench/bench_store.py --bytes             # 100 feeds x 20 items per farm
    /work/venv/bin/python bench/bench_store.py --bytes --feeds 25  # quicker

PostgreSQL: a database kpopnews_bench_<random> is created through the maintenance URL and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import re
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from bot.artists import ArtistIndex  # noqa: E402
from bot.config import Config, PollingConfig, SourceConfig, StorageConfig  # noqa: E402
from bot.models import ArtistRef, Story  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store.text_search import text_matches  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
GOAL_BYTES_PER_STORY = 2560  # issue 12: <= 2.5 KB per stored story

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
    async def work(url: str) -> dict[str, float]:
        store = await Store.open(url)
        try:
            return await measure(store, n, batch, queries)
        finally:
            await store.close()

    result: dict[str, float] = await on_postgres_database(maintenance, work)
    return result


def _keep_best(best: dict[str, float], figures: dict[str, float]) -> None:
    for what, value in figures.items():
        best[what] = min(value, best.get(what, value))


# --- bytes per stored story (--bytes) -----------------------------------------------------------------------


def prose_sentences() -> list[str]:
    """Sentences of real K-pop articles: the text of the article fixtures (roundups, Soompi pages, the Koreaboo
    feed item), for items whose text compresses as prose does."""
    from bot.parse import parse_feed
    from bot.text import html_to_text

    texts = [
        html_to_text(path.read_text(encoding="utf-8")) for path in sorted(FIXTURES.glob("roundups/*.html"))
    ]
    texts += [
        html_to_text(path.read_text(encoding="utf-8")) for path in sorted(FIXTURES.glob("pages/*.html"))
    ]
    feed = parse_feed((FIXTURES / "feeds" / "koreaboo-style-v-iu.xml").read_bytes())
    texts += [html_to_text(e.content_html) for e in feed.entries]
    found = {s.strip() for text in texts for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6}
    # only sentences naming no artist: the items' artists stay the headline's two (V and IU), as in
    # bench_ingest's farm, so what differs between the farms is how the text compresses
    index = ArtistIndex.load()
    return sorted(s for s in found if not index.tag("", s))


def prose_feed(items: int, *, prefix: str, site: str, sentences: list[str], body_chars: int = 2000) -> bytes:
    """bench_ingest's WordPress feed shape, each item's content ~`body_chars` of distinct sentences."""
    from tests.support.feed_server import rss

    rng = random.Random(prefix)
    entries = []
    for i in range(items):
        slug = f"{prefix}-{i}"
        picked: list[str] = []
        for sentence in rng.sample(sentences, len(sentences)):
            if sum(map(len, picked)) >= body_chars:
                break
            picked.append(sentence)
        paragraphs = "".join(f"<p>{' '.join(picked[at : at + 3])}</p>" for at in range(0, len(picked), 3))
        entries.append(
            {
                "title": f"BTS&#8217;s V and IU story {slug} &#8212; fans react",
                "link": f"{site}/news/{slug}/",
                "guid": f"{site}/?p={slug}",
                "description": f"An excerpt about {slug}, ending the WordPress way [&#8230;]",
                "content": f"<p>BTS&#8217;s V and IU in {slug}.</p>{paragraphs}",
                "categories": "News,BTS,IU",
            }
        )
    return rss(entries, title=f"K-pop site {prefix}", link=site + "/")


async def poll_farm(storage: StorageConfig, feeds: int, items: int, prose: bool) -> None:
    """`kpopnews poll --once` as the shell runs it (clustering included) over a loopback farm."""
    from bot.poller import run_poll_once
    from tests.support.feed_server import FeedServer, wordpress_feed

    sentences = prose_sentences() if prose else []
    async with FeedServer() as server:
        for i in range(feeds):
            site = server.url("")
            if prose:
                body = prose_feed(items, prefix=f"f{i}", site=site, sentences=sentences)
            else:
                body = wordpress_feed(items, prefix=f"f{i}", site=site, title=f"K-pop site {i}")
            server.set_feed(f"f{i}", body)
        config = Config(
            storage=storage,
            polling=PollingConfig(fetch_article_pages=False),
            sources=tuple(SourceConfig(f"K-pop site {i}", server.url(f"/dyn/f{i}")) for i in range(feeds)),
        )
        await run_poll_once(config, out=io.StringIO(), err=io.StringIO())


def sqlite_sizes(path: Path) -> dict[str, int]:
    """Bytes of pages in use per table, its indexes included (dbstat), and the full-text index as one."""
    con = sqlite3.connect(path)
    try:
        owner = {name: table for name, table in con.execute("SELECT name, tbl_name FROM sqlite_master")}
        sizes: dict[str, int] = {}
        for name, used in con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            table = "stories_fts" if table.startswith("stories_fts") else table
            sizes[table] = sizes.get(table, 0) + used
        return sizes
    finally:
        con.close()


def sqlite_count(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT count(*) FROM stories").fetchone()[0])
    finally:
        con.close()


async def postgres_sizes(url: str) -> tuple[dict[str, int], int]:
    connection = await asyncpg.connect(url)
    try:
        # compacted: the pass updates each new story (its cluster) and artist row (its sort time) once, and the
        # dead row versions' space, reused by later inserts in a running database, is not the data's
        await connection.execute("VACUUM FULL")
        rows = await connection.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = current_schema()"
        )
        count = await connection.fetchval("SELECT count(*) FROM stories")
        return {name: int(size) for name, size in rows}, int(count)
    finally:
        await connection.close()


async def on_postgres_database(maintenance: str, work: Callable[[str], Awaitable[Any]]) -> Any:
    name = f"kpopnews_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(maintenance)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(maintenance)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        return await work(url)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def print_sizes(what: str, filled: dict[str, int], empty: dict[str, int], stories: int) -> float:
    """Per table (with its indexes), bytes per story beyond what the empty table weighs; returns the total."""
    grown = {table: filled[table] - empty.get(table, 0) for table in filled}
    total = sum(grown.values()) / stories
    goal = "ok" if total <= GOAL_BYTES_PER_STORY else "MISSED"
    print(
        f"{what}: {stories} stories, {total:,.0f} bytes per story  (goal <= {GOAL_BYTES_PER_STORY:,}: {goal})"
    )
    for table, size in sorted(grown.items(), key=lambda item: -item[1]):
        if size / stories >= 5:
            print(f"    {table:28}{size / stories:8,.0f}")
    return total


async def measure_bytes(feeds: int, items: int, maintenance: str) -> None:
    for prose in (False, True):
        farm = "prose farm" if prose else "bench_ingest farm"
        with tempfile.TemporaryDirectory() as folder:
            empty_path, path = Path(folder) / "empty.db", Path(folder) / "farm.db"
            await (await Store.open(empty_path)).close()
            await poll_farm(StorageConfig(database=str(path)), feeds, items, prose)
            print_sizes(f"SQLite, {farm}", sqlite_sizes(path), sqlite_sizes(empty_path), sqlite_count(path))

        async def empty_pg(url: str) -> tuple[dict[str, int], int]:
            await (await Store.open(url)).close()
            return await postgres_sizes(url)

        async def filled_pg(url: str, prose: bool = prose) -> tuple[dict[str, int], int]:
            await poll_farm(StorageConfig(url=url), feeds, items, prose)
            return await postgres_sizes(url)

        empty, _ = await on_postgres_database(maintenance, empty_pg)
        filled, count = await on_postgres_database(maintenance, filled_pg)
        print_sizes(f"PostgreSQL, {farm}", filled, empty, count)


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
        "--bytes", action="store_true", help="bytes per stored story after a real poll of a feed farm instead"
    )
    parser.add_argument("--feeds", type=int, default=100, help="--bytes: feeds per farm (default 100)")
    parser.add_argument("--items", type=int, default=20, help="--bytes: items per feed (default 20)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KPOPNEWS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="maintenance database URL (a database is created and dropped through it)",
    )
    args = parser.parse_args()
    if args.bytes:
        await measure_bytes(args.feeds, args.items, args.postgres)
        return
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
