"""Scale benchmark: several `kpopnews run` processes on one PostgreSQL database, as one bot.

The real bot processes (discord.py over loopback, sharded: process i runs shard i) against FakeDiscord, which
keeps Discord's global limit of 50 requests in any one second per token (all processes together) and answers
429 past it; the feed sites in a process of their own. Measured, with N servers, F feeds polled every interval
and one new story for C subscribed channels:

- fan-out: the wall time from the story's first message to its last, against the floor C / 50 s (goal: within
  10 %), and the 429s the processes caused together (goal: 0);
- polling: fetches per feed per interval over the run, all processes together (goal: 1.0), and the feeds
  fetched twice within half an interval (goal: 0).

The same on SQLite with one process (all shards) for comparison.

    python bench/bench_scale.py                 # 4 processes, 10,000 servers, 2,000 feeds, 5,000 channels
    python bench/bench_scale.py --quick         # 500 channels, 1,000 servers, 200 feeds (about a minute each)
    python bench/bench_scale.py --engine postgresql --processes 2

PostgreSQL comes from --postgres (a maintenance database the bench may create a database from; default
KPOPNEWS_TEST_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/postgres); the database is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stall_watch import StallWatch  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.timeutil import utcnow  # noqa: E402
from tests.support.bot_harness import (  # noqa: E402
    BotProcess,
    bot_process,
    descendants,  # noqa: E402
)
from tests.support.discord_server import FakeDiscord  # noqa: E402
from tests.support.feed_server import FeedServer, wordpress_feed  # noqa: E402
from tests.support.world import v_iu_feed  # noqa: E402

GLOBAL_LIMIT = 50.0
GOAL_OVER_FLOOR, GOAL_SELF_429 = 0.10, 0
STORY_FEED = "koreaboo"
HOSTS = [f"127.0.0.{n}" for n in range(1, 21)]  # the feeds look like 20 sites (the per-host limit applies)
DEFAULT_POSTGRES = os.environ.get(
    "KPOPNEWS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Result:
    engine: str
    processes: int
    servers: int
    feeds: int
    channels: int
    interval: float
    start_seconds: float  # from the first process started to the last one ready
    fanout_seconds: float  # first message to last
    story_to_last: float  # from the story appearing in its feed to the last message
    floor: float
    self_429: int
    global_429: int
    peak_per_second: int
    fetches_per_feed_interval: float
    double_fetches: int
    window: float
    poll_cpu_ms: float  # CPU (all bot processes and their workers) per feed poll, while only polling
    poll_fetches_per_second: float  # all processes together, while only polling
    fanout_cpu_ms: float  # CPU per post during the fan-out, the polling's share taken out
    cpu_share: list[float]  # each process's CPU over the run, as a share of one core
    table_bytes: dict[str, tuple[int, int]]  # PostgreSQL: table -> (rows, bytes with its indexes)
    refused_at: list[str]  # when each 429 came, and what the second before it held
    pauses: list[tuple[float, float]]  # this process's loop stalls ≥ 30 ms in the fan-out: (unix time, ms)


# --- the feed sites, in a process of their own -------------------------------------------------------------


def _serve(feeds: int, ready: Any, commands: Any, results: Any) -> None:  # multiprocessing objects
    async def main() -> None:
        server = FeedServer(host=HOSTS[0], extra_hosts=tuple(HOSTS[1:]))
        await server.start()
        for i in range(feeds):
            server.set_feed(f"f{i}", wordpress_feed(3, prefix=f"f{i}", title=f"K-pop site {i}"))
        server.set_feed(STORY_FEED, wordpress_feed(3, prefix="old", site="https://www.koreaboo.com"))
        ready.put(server.port)
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, commands.get)
            if command == "story":
                server.set_feed(STORY_FEED, v_iu_feed(published=utcnow() - timedelta(minutes=1)))
                results.put(time.time())
            elif command == "times":
                results.put({path: times for path, times in server.hit_times.items()})
            elif command == "stop":
                break
        await server.close()

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and everything below it (its worker processes), from /proc."""
    total = 0.0
    for one in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def table_sizes(url: str) -> dict[str, tuple[int, int]]:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        sizes = {}
        for (table,) in await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        ):
            rows = await connection.fetchval(f'SELECT count(*) FROM "{table}"')
            size = await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            sizes[table] = (int(rows), int(size))
        return sizes
    finally:
        await connection.close()


def feed_hits(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{HOSTS[0]}:{port}/stats", timeout=10) as answer:
        return json.loads(answer.read())["hits"]


# --- databases ----------------------------------------------------------------------------------------------


def _database_url(maintenance: str, name: str) -> str:
    parts = urlsplit(maintenance)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin(maintenance: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(maintenance, timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def database(engine: str, maintenance: str, tmp: Path):  # type: ignore[no-untyped-def]
    if engine == "sqlite":
        yield str(tmp / "kpopnews.db")
        return
    name = f"kpopnews_bench_{secrets.token_hex(4)}"
    await _admin(maintenance, f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(maintenance, name)
    finally:
        await _admin(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- one run ------------------------------------------------------------------------------------------------


def _config(
    path: Path, server: FakeDiscord, target: str, port: int, feeds: int, interval: float, shard_ids: list[int]
) -> Path:
    lines = [
        "[discord]",
        f'token = "{server.token}"',
        f'api_base = "{server.api_base}"',
        f'gateway_url = "{server.gateway_url}"',
        f"shard_count = {server.recommended_shards}",
        f"shard_ids = {shard_ids}",
        "[storage]",
        f'url = "{target}"' if target.startswith("postgresql://") else f'database = "{target}"',
        "[polling]",
        f"interval_seconds = {interval}",
        "fetch_article_pages = false",
        "[[sources]]",
        'name = "Koreaboo"',
        f'url = "http://{HOSTS[0]}:{port}/dyn/{STORY_FEED}"',
    ]
    for i in range(feeds):
        lines += [
            "[[sources]]",
            f'name = "Site {i}"',
            f'url = "http://{HOSTS[i % len(HOSTS)]}:{port}/dyn/f{i}"',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def run(
    engine: str, processes: int, servers: int, feeds: int, channels: int, interval: float, maintenance: str
) -> Result:
    shards = max(4, -(-servers // 2500))  # Discord's limit: 2,500 servers per shard
    context = multiprocessing.get_context("spawn")
    ready, commands, results = context.Queue(), context.Queue(), context.Queue()
    sites = context.Process(target=_serve, args=(feeds, ready, commands, results), daemon=True)
    sites.start()
    port = ready.get(timeout=60)
    try:
        with tempfile.TemporaryDirectory(prefix="kpopnews-scale-") as folder:
            tmp = Path(folder)
            async with (
                FakeDiscord(global_limit=GLOBAL_LIMIT, recommended_shards=shards) as server,
                database(engine, maintenance, tmp) as target,
            ):
                arrivals: list[tuple[float, bool]] = []  # (unix time, refused) of each request the ledger saw
                take = server.ledger.take

                def counted_take(token: str) -> float:
                    wait = take(token)
                    arrivals.append((time.time(), wait > 0))
                    return wait

                server.ledger.take = counted_take  # type: ignore[method-assign]
                subscribed = []
                for n in range(servers):
                    guild = server.add_guild(f"Fans {n}", shard=(n % shards, shards), channels=["news"])
                    if n < channels:
                        subscribed.append((guild.id, guild.text_channels[0].id))
                # FakeDiscord runs on this process's loop: a full garbage collection over 10,000 servers would
                # stall it for tens of ms and make requests that came spread out look bunched (a 429 the bot did
                # not cause). What is built so far lives to the end: kept out of the collector's scans.
                gc.collect()
                gc.freeze()
                store = await Store.open(target)
                try:
                    async with store.transaction():
                        for guild_id, channel_id in subscribed:
                            await store.subscriptions.add(
                                guild_id=guild_id,
                                channel_id=channel_id,
                                artist_id=None,
                                source_id=None,
                                only_trending=False,
                                created_by=None,
                                at=utcnow(),
                            )
                finally:
                    await store.close()
                plan = (
                    [[s for s in range(shards) if s % processes == p] for p in range(processes)]
                    if engine == "postgresql"
                    else [list(range(shards))]
                )
                async with contextlib.AsyncExitStack() as stack:
                    started = time.time()
                    bots: list[BotProcess] = []
                    for n, shard_ids in enumerate(plan):
                        (tmp / f"p{n}").mkdir()
                        config = _config(
                            tmp / f"p{n}" / "config.toml", server, target, port, feeds, interval, shard_ids
                        )
                        bots.append(await stack.enter_async_context(bot_process(config)))
                    for bot in bots:
                        await bot.wait_for_log("ready:", timeout=600)
                    ready_at = time.time()
                    pids = [bot.process.pid for bot in bots]
                    cpu_start = [cpu_seconds(pid) for pid in pids]
                    story_path = f"/dyn/{STORY_FEED}"
                    while (await asyncio.to_thread(feed_hits, port)).get(story_path, 0) < 1:  # noqa: ASYNC110
                        await asyncio.sleep(
                            0.5
                        )  # its first poll (backfill, never posted): in another process
                    await asyncio.sleep(1.0)
                    # and during the fan-out no collection at all: what FakeDiscord records of 5,000 posts grows
                    # past the frozen part, and a full collection of it (94 ms, always ~58 s in) was the one 429
                    # each run had: requests the bots sent 21 ms apart, held up here, then counted in a bunch.
                    # Discord's own servers do not stop; the bots' pacing is what is measured.
                    with collector_off():
                        async with StallWatch(threshold=0.03, tick=0.01).running() as watch:
                            commands.put("story")
                            story_at = await asyncio.to_thread(results.get, True, 30)
                            cpu_story = sum(cpu_seconds(pid) for pid in pids)
                            ids = [channel_id for _, channel_id in subscribed]
                            waiting = set(
                                ids
                            )  # looked at once a second, and only those not posted yet: the check
                            while waiting:  # runs on FakeDiscord's loop and must not stall it
                                waiting = {c for c in waiting if not server.messages(c)}
                                if time.time() - story_at > 2 * len(ids) / GLOBAL_LIMIT + 120:
                                    raise TimeoutError(
                                        f"{len(waiting)} of {len(ids)} channels did not get the story"
                                    )
                                await asyncio.sleep(1.0)
                            assert all(len(server.messages(c)) == 1 for c in ids), (
                                "a channel got the story twice"
                            )
                    to_unix = time.time() - time.perf_counter()  # the watch's clock is perf_counter
                    pauses = [(to_unix + p.started, p.seconds * 1000) for p in watch.stalls]
                    made = [
                        datetime.fromisoformat(server.messages(c)[0]["timestamp"]).timestamp() for c in ids
                    ]
                    first_message, last_message = min(made), max(made)
                    posted_at, cpu_posted = time.time(), sum(cpu_seconds(pid) for pid in pids)
                    # then polling alone for one interval: its CPU, taken out of the fan-out's
                    await asyncio.sleep(interval)
                    poll_from, cpu_from, poll_to = posted_at, cpu_posted, time.time()
                    cpu_to = sum(cpu_seconds(pid) for pid in pids)
                    # polling, measured from one interval after start-up (the first polls are spread over it)
                    window_start, window_end = ready_at + interval, time.time()
                    cpu_share = [
                        (cpu_seconds(pid) - start) / (window_end - ready_at)
                        for pid, start in zip(pids, cpu_start, strict=True)
                    ]
                    for bot in bots:
                        await bot.stop(timeout=60)
                    sizes = await table_sizes(target) if engine == "postgresql" else {}
                commands.put("times")
                times: dict[str, list[float]] = await asyncio.to_thread(results.get, True, 60)
                feed_paths = [f"/dyn/f{i}" for i in range(feeds)]
                in_window = [
                    t for p in feed_paths for t in times.get(p, []) if window_start <= t < window_end
                ]
                window = window_end - window_start
                alone = [t for p in feed_paths for t in times.get(p, []) if poll_from <= t < poll_to]
                poll_rate = len(alone) / (poll_to - poll_from)
                poll_cpu = (cpu_to - cpu_from) / max(1, len(alone))
                fanout_cpu = (
                    cpu_posted - cpu_story - poll_cpu * poll_rate * (last_message - story_at)
                ) / channels
                doubles = 0
                for p in feed_paths:
                    stamps = sorted(times.get(p, []))
                    doubles += sum(
                        1 for a, b in zip(stamps, stamps[1:], strict=False) if b - a < interval / 2
                    )
                return Result(
                    engine=engine,
                    processes=len(plan),
                    servers=servers,
                    feeds=feeds,
                    channels=channels,
                    interval=interval,
                    start_seconds=ready_at - started,
                    fanout_seconds=last_message - first_message,
                    story_to_last=last_message - story_at,
                    floor=channels / GLOBAL_LIMIT,
                    self_429=server.stats.ratelimited,
                    global_429=server.stats.global_ratelimited,
                    peak_per_second=server.ledger.peak(server.token),
                    fetches_per_feed_interval=len(in_window) / feeds / (window / interval),
                    double_fetches=doubles,
                    window=window,
                    poll_cpu_ms=poll_cpu * 1000,
                    poll_fetches_per_second=poll_rate,
                    fanout_cpu_ms=fanout_cpu * 1000,
                    cpu_share=cpu_share,
                    table_bytes=sizes,
                    refused_at=_refusals(arrivals, first_message, pauses),
                    pauses=[p for p in pauses if first_message <= p[0] <= last_message],
                )
    finally:
        commands.put("stop")
        sites.join(timeout=10)
        if sites.is_alive():
            sites.kill()


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """No automatic garbage collection in this process meanwhile (what was built before is kept frozen)."""
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _refusals(
    arrivals: list[tuple[float, bool]], first_post: float, pauses: list[tuple[float, float]]
) -> list[str]:
    """Each 429: when (from the first post), how many requests the second before it let through, the
    shortest gap among the last ten (a bunch, or a steady stream at the limit), and any stall of this process
    (FakeDiscord's) in that second."""
    found = []
    for n, (at, refused) in enumerate(arrivals):
        if refused:
            before = [t for t, r in arrivals[max(0, n - 200) : n] if not r and t > at - 1.0]
            gaps = [b - a for a, b in zip(before[-10:], before[-9:], strict=False)]
            stalls = [f"{ms:.0f} ms at {p - at:+.2f} s" for p, ms in pauses if at - 1.2 <= p <= at]
            found.append(
                f"{at - first_post:+.1f} s ({len(before)} in the second before, gap ≥ {min(gaps, default=0) * 1000:.0f} ms"
                + (f"; FakeDiscord's process stalled: {', '.join(stalls)}" if stalls else "")
                + ")"
            )
    return found


def report(result: Result) -> list[str]:
    over = result.fanout_seconds / result.floor - 1
    return [
        f"{result.engine}, {result.processes} process(es): {result.servers:,} servers, {result.feeds:,} feeds every"
        f" {result.interval:.0f} s, one story to {result.channels:,} channels",
        f"  start-up (all ready)         {result.start_seconds:7.1f} s",
        f"  fan-out, first to last post  {result.fanout_seconds:7.1f} s  (floor {result.floor:.0f} s at 50/s:"
        f" {over:+.1%}, goal within {GOAL_OVER_FLOOR:.0%}) {'OK' if over <= GOAL_OVER_FLOOR else 'MISSED'}",
        f"  story in feed to last post   {result.story_to_last:7.1f} s",
        f"  rate                         {result.channels / result.fanout_seconds:7.1f} posts/s",
        f"  429s the bot caused          {result.self_429:7d}    ({result.global_429} global; goal {GOAL_SELF_429})"
        f" {'OK' if result.self_429 <= GOAL_SELF_429 else 'MISSED'}",
        f"  busiest calendar second      {result.peak_per_second:7d}    requests (Discord allows 50)",
        *(f"    429 at {line}" for line in result.refused_at[:10]),
        f"  FakeDiscord's own stalls ≥ 30 ms during the fan-out: {len(result.pauses)}"
        + (f", longest {max(ms for _, ms in result.pauses):.0f} ms" if result.pauses else ""),
        f"  fetches per feed per interval {result.fetches_per_feed_interval:6.2f}    over {result.window:.0f} s"
        " (goal 1.0, jitter ±10 %)",
        f"  feeds fetched twice within half an interval {result.double_fetches} (goal 0)",
        f"  polling alone: {result.poll_fetches_per_second:.0f} fetches/s in all, {result.poll_cpu_ms:.1f} ms CPU"
        " per fetch (304s; all processes and workers, their idle work included)",
        f"  fan-out: {result.fanout_cpu_ms:.1f} ms CPU per post (polling's share taken out)",
        "  CPU per process over the run: "
        + ", ".join(f"{share:.0%}" for share in result.cpu_share)
        + " of a core",
        *(
            f"  table {name}: {rows:,} rows, {size / 1024:,.0f} KiB"
            + (f" ({size / rows:,.0f} B per row with indexes)" if rows else "")
            for name, (rows, size) in result.table_bytes.items()
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=4, help="bot processes on PostgreSQL (default 4)")
    parser.add_argument("--servers", type=int, default=10_000, help="Discord servers (default 10,000)")
    parser.add_argument("--feeds", type=int, default=2_000, help="feeds polled (default 2,000)")
    parser.add_argument("--channels", type=int, default=5_000, help="channels subscribed (default 5,000)")
    parser.add_argument("--interval", type=float, default=30.0, help="polling interval, seconds (default 30)")
    parser.add_argument(
        "--quick", action="store_true", help="500 channels, 1,000 servers, 200 feeds every 10 s"
    )
    parser.add_argument(
        "--engine",
        choices=("postgresql", "sqlite", "both"),
        default="both",
        help="default: both, PostgreSQL first",
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="maintenance database URL (PostgreSQL)")
    args = parser.parse_args()
    if args.quick:
        args.channels, args.servers, args.feeds, args.interval = 500, 1_000, 200, 10.0
    engines = ["postgresql", "sqlite"] if args.engine == "both" else [args.engine]
    failed = False
    for engine in engines:
        result = asyncio.run(
            run(engine, args.processes, args.servers, args.feeds, args.channels, args.interval, args.postgres)
        )
        print("\n".join(report(result)), flush=True)
        over = result.fanout_seconds / result.floor - 1
        failed |= over > GOAL_OVER_FLOOR or result.self_429 > GOAL_SELF_429 or result.double_fetches > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
