"""Ingest benchmark: a cold `kpopnews poll --once` against what typical RSS bots do, measured in the same run.

A loopback aiohttp server in a separate process serves N WordPress-shaped feeds (default 500 x 20 items,
~65 KB each) with a fixed latency, each feed on its own loopback address (127.0.x.y) as real feeds are on their
own hosts. Then, in this process:

1. kpopnews: `run_poll_once` exactly as `kpopnews poll --once` runs it (its worker processes started and
   stopped with it; real fetch; parse and enrichment in the workers; stories stored and clustered) into a fresh
   SQLite file, then a second pass (which should be almost all 304s). A ticker task measures how late the event
   loop wakes it during the first pass (its worst stall). Peak memory is the sum of this process's and its
   worker processes' resident sets, sampled every 50 ms; bytes per story are the database file's size over
   its stories.
2. baseline: sequential `feedparser.parse(url)` over HTTP and one SQLite commit per entry, on a sample of the
   feeds (its rate in stories/s is what is compared).
3. the work per feed of each stage, measured alone on one core, to show where the time goes.

The machine is shared: run it when it is quiet, and compare the ratio, not the absolute rates.

    python bench/bench_ingest.py                       # the full default size (a minute or two)
    python bench/bench_ingest.py --feeds 50 --items 20 # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import io
import multiprocessing
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import feedparser  # noqa: E402

from bot import USER_AGENT  # noqa: E402
from bot.artists import load_artist_index  # noqa: E402
from bot.config import Config, PollingConfig, SourceConfig, StorageConfig  # noqa: E402
from bot.poller import run_poll_once  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.support.feed_server import FeedServer, wordpress_feed  # noqa: E402

GOAL_RATIO, GOAL_304, GOAL_STALL_MS, GOAL_PEAK_MB, GOAL_BYTES = 10.0, 95.0, 100.0, 250.0, 2560


def _serve(  # type: ignore[no-untyped-def]
    feeds: int,
    items: int,
    body_bytes: int,
    latency: float,
    hosts: list[str],
    ready,
    stop,
    fresh: bool = False,
) -> None:
    """The feed sites, in their own process so their work is not on the measured loop. `fresh`: the items were
    published ten minutes ago (young enough to be posted), else on the fixtures' date, long past."""

    async def main() -> None:
        server = FeedServer(host=hosts[0], extra_hosts=tuple(hosts[1:]))
        moment = datetime.now(UTC) - timedelta(minutes=10)
        published = email.utils.format_datetime(moment) if fresh else None
        await server.start()
        sizes = []
        for i in range(feeds):
            site = server.url(
                "", host=hosts[i % len(hosts)]
            )  # article links lead back here (404 if followed)
            body = wordpress_feed(
                items,
                prefix=f"f{i}",
                site=site,
                title=f"K-pop site {i}",
                body_bytes=body_bytes,
                published=published,
            )
            server.set_feed(f"f{i}", body)
            sizes.append(len(body))
        server.latency = latency
        ready.put((server.port, sum(sizes) / max(1, len(sizes))))
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing Event cannot be awaited
            await asyncio.sleep(0.2)
        await server.close()

    asyncio.run(main())


class StallMeter:
    """How late the loop runs a task that asks to wake every `tick` seconds: the worst is the worst stall."""

    def __init__(self, tick: float = 0.01) -> None:
        self.tick = tick
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.tick
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, loop.time() - expected)

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return self.worst


@dataclass
class OursResult:
    stories: int
    clustered: int
    seconds: float
    second_seconds: float
    not_modified: int
    polled: int
    failed: int
    stall: float
    cpu_main: float  # CPU seconds of this process (fetch, store, clustering, the loop) during the cold pass
    cpu_workers: float  # CPU seconds of the worker processes (parse, enrich), which end with the pass
    peak_mb: float  # this process and its worker processes together
    db_bytes: int
    first_error: str | None


class TreeMemory:
    """Peak memory of this process and its children (the worker processes) together: the sum of their resident
    sets, sampled every 50 ms by a thread (a child's own peak would not say when it was reached)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._others = set(_tree(os.getpid())) - {os.getpid()}  # the feed server's process is not ours
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, sum(_rss_mb(pid) for pid in self._tree()))

    def _tree(self) -> list[int]:
        return [pid for pid in _tree(os.getpid()) if pid not in self._others]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # children that ended and were waited for
    return usage.ru_utime + usage.ru_stime


def _tree(pid: int) -> list[int]:
    found = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in children:
        found += _tree(int(child))
    return found


PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb(pid: int) -> float:
    try:  # statm's second field: resident pages (cheaper to read than status)
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_MB
    except (OSError, IndexError, ValueError):
        return 0.0


async def run_ours(urls: list[str], db_path: Path) -> OursResult:
    """`kpopnews poll --once` as the shell runs it (bot.poller.run_poll_once: its worker processes started and
    stopped with it, new stories stored and clustered), cold on an empty database, then a second time."""
    config = Config(
        storage=StorageConfig(database=str(db_path)),
        polling=PollingConfig(),  # the shipped defaults: concurrency 32, 2 per host, 20 s timeout, 10 MB cap
        sources=tuple(SourceConfig(f"K-pop site {i}", url) for i, url in enumerate(urls)),
    )
    out, err = io.StringIO(), io.StringIO()
    meter = StallMeter()
    with TreeMemory() as memory:
        meter.start()
        cpu_main, cpu_children = time.process_time(), _children_cpu()
        started = time.perf_counter()
        await run_poll_once(config, out=out, err=err)
        seconds = time.perf_counter() - started
        cpu_main, cpu_children = time.process_time() - cpu_main, _children_cpu() - cpu_children
        stall = await meter.stop()
    first_lines = out.getvalue().splitlines()
    second_out = io.StringIO()
    started = time.perf_counter()
    await run_poll_once(config, out=second_out, err=io.StringIO())
    second_seconds = time.perf_counter() - started
    con = sqlite3.connect(db_path)
    try:
        stored = con.execute("SELECT count(*) FROM stories").fetchone()[0]
        clustered = con.execute("SELECT count(*) FROM stories WHERE cluster_id IS NOT NULL").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    failed = [line for line in first_lines if ": failed:" in line]
    second_lines = second_out.getvalue().splitlines()
    return OursResult(
        stories=stored,
        clustered=clustered,
        seconds=seconds,
        second_seconds=second_seconds,
        not_modified=sum(1 for line in second_lines if line.endswith(": not modified")),
        polled=len(urls),
        failed=len(failed),
        stall=stall,
        cpu_main=cpu_main,
        cpu_workers=cpu_children,
        peak_mb=memory.peak_mb,
        db_bytes=pages,
        first_error=failed[0] if failed else None,
    )


async def stage_costs(items: int) -> dict[str, float]:
    """Milliseconds of work per feed for each stage, measured alone on one feed (no concurrency, no network)."""
    from bot.enrich import enrich_entries
    from bot.models import Story
    from bot.parse import parse_feed

    body = wordpress_feed(items, prefix="cost", site="http://127.0.0.1:9")
    reps = 5
    costs: dict[str, float] = {}

    def best(times: list[float]) -> float:
        # the machine is shared: the fastest of the repetitions is the work, the others include waiting
        return min(times) * 1000

    times = []
    for _ in range(reps):
        started = time.perf_counter()
        parsed = parse_feed(body, url="http://127.0.0.1:9/feed", content_type="application/rss+xml")
        times.append(time.perf_counter() - started)
    costs["parse_feed (feedparser + checks)"] = best(times)

    artists = await load_artist_index(None)

    async def no_page(url: str) -> str | None:
        return None

    times = []
    for _ in range(reps):
        started = time.perf_counter()
        stories: list[Story] = await enrich_entries(
            parsed.entries, source_name="Bench", artists=artists, fetch_page=no_page
        )
        times.append(time.perf_counter() - started)
    costs["enrich_entries (text, image, quotes, artists)"] = best(times)

    with tempfile.TemporaryDirectory(prefix="kpopnews-bench-") as tmp:
        store = await Store.open(Path(tmp) / "cost.db")
        times = []
        for rep in range(reps):
            for story in stories:
                story.id = None
                story.key = f"{story.key}#{rep}"
                story.canonical_url = f"{story.canonical_url}#{rep}"
            started = time.perf_counter()
            await store.stories.add_many(stories, source_id=None)
            times.append(time.perf_counter() - started)
        costs["Store.add_stories (one transaction)"] = best(times)
        await store.close()

        con = sqlite3.connect(Path(tmp) / "base.db")
        con.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, guid TEXT UNIQUE, title TEXT)")
        times = []
        for rep in range(reps):
            started = time.perf_counter()
            for entry in feedparser.parse(body).entries:
                con.execute(
                    "INSERT INTO entries(guid, title) VALUES (?, ?)",
                    (f"{entry.get('id')}#{rep}", entry.get("title")),
                )
                con.commit()
            times.append(time.perf_counter() - started)
        costs["baseline: feedparser.parse + a commit per entry"] = best(times)
        con.close()
    return costs


def run_baseline(urls: list[str], db_path: Path) -> tuple[int, float]:
    """What typical RSS bots do: fetch and parse each feed in turn, commit each entry on its own."""
    con = sqlite3.connect(db_path)
    con.execute(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY, guid TEXT UNIQUE, feed TEXT, title TEXT, link TEXT,"
        " summary TEXT, content TEXT, published TEXT)"
    )
    stored = 0
    started = time.perf_counter()
    for url in urls:
        parsed = feedparser.parse(url, agent=USER_AGENT)
        for entry in parsed.entries:
            content = entry.get("content") or [{}]
            con.execute(
                "INSERT OR IGNORE INTO entries(guid, feed, title, link, summary, content, published)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    entry.get("id") or entry.get("link"),
                    url,
                    entry.get("title"),
                    entry.get("link"),
                    entry.get("summary"),
                    content[0].get("value"),
                    entry.get("published"),
                ),
            )
            con.commit()
            stored += 1
    seconds = time.perf_counter() - started
    con.close()
    return stored, seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feeds", type=int, default=500, help="number of feeds (default 500)")
    parser.add_argument("--items", type=int, default=20, help="items per feed (default 20)")
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="server latency per request (default 50)"
    )
    parser.add_argument(
        "--hosts",
        type=int,
        default=500,
        help="loopback addresses the feeds are spread over (default: one each)",
    )
    parser.add_argument(
        "--body-bytes", type=int, default=2700, help="article text per item (default 2700: ~65 KB feeds)"
    )
    parser.add_argument(
        "--baseline-feeds",
        type=int,
        default=100,
        help="feeds the (slow) baseline reads; its rate is compared",
    )
    args = parser.parse_args()
    hosts = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(max(1, min(args.hosts, args.feeds, 10_000)))]

    ctx = multiprocessing.get_context("spawn")  # a clean process: no copy of this one's loop or threads
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(
        target=_serve,
        args=(args.feeds, args.items, args.body_bytes, args.latency_ms / 1000, hosts, ready, stop),
        daemon=True,
    )
    server.start()
    try:
        port, feed_size = ready.get(timeout=120)
        urls = [f"http://{hosts[i % len(hosts)]}:{port}/dyn/f{i}" for i in range(args.feeds)]
        with tempfile.TemporaryDirectory(prefix="kpopnews-bench-") as tmp:
            ours = asyncio.run(run_ours(urls, Path(tmp) / "kpopnews.db"))
            sample = urls[: max(1, min(args.baseline_feeds, len(urls)))]
            base_stories, base_seconds = run_baseline(sample, Path(tmp) / "baseline.db")
        costs = asyncio.run(stage_costs(args.items))
    finally:
        stop.set()
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()

    ours_rate = ours.stories / ours.seconds
    base_rate = base_stories / base_seconds
    ratio = ours_rate / base_rate
    share_304 = 100.0 * ours.not_modified / max(1, ours.polled)
    stall_ms = ours.stall * 1000

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"ingest: {args.feeds} feeds x {args.items} items (~{feed_size / 1024:.0f} KB each), "
        f"{args.latency_ms:g} ms server latency, {len(hosts)} loopback hosts"
    )
    print(f"{'':34}{'feeds':>7}{'stories':>9}{'seconds':>9}{'stories/s':>11}")
    print(
        f"{'naive baseline (feedparser+commit)':34}{len(sample):>7}{base_stories:>9}{base_seconds:>9.2f}{base_rate:>11.0f}"
    )
    print(
        f"{'kpopnews poll --once (cold)':34}{args.feeds:>7}{ours.stories:>9}{ours.seconds:>9.2f}{ours_rate:>11.0f}"
    )
    print(f"{'ratio':34}{ratio:>36.1f}x   goal >= {GOAL_RATIO:g}x  {verdict(ratio >= GOAL_RATIO)}")
    print(
        f"CPU during the cold pass: this process {ours.cpu_main:.1f} s (fetch, store, clustering), "
        f"worker processes {ours.cpu_workers:.1f} s (parse, enrich)"
    )
    print(
        f"second pass: {ours.not_modified}/{ours.polled} not modified ({share_304:.1f} %) in {ours.second_seconds:.2f} s"
        f"   goal >= {GOAL_304:g} %  {verdict(share_304 >= GOAL_304)}"
    )
    print(
        f"worst event-loop stall during ingest: {stall_ms:.0f} ms   goal < {GOAL_STALL_MS:g} ms  {verdict(stall_ms < GOAL_STALL_MS)}"
    )
    print(
        f"peak memory, poll --once and its worker processes together: {ours.peak_mb:.0f} MB   "
        f"goal < {GOAL_PEAK_MB:g} MB  {verdict(ours.peak_mb < GOAL_PEAK_MB)}"
    )
    per_story = ours.db_bytes / max(1, ours.stories)
    print(
        f"database: {ours.db_bytes / 1e6:.1f} MB for {ours.stories} stories ({ours.clustered} clustered) = "
        f"{per_story:.0f} bytes per story   goal <= {GOAL_BYTES} bytes  {verdict(per_story <= GOAL_BYTES)}"
    )
    print(f"work per feed of {args.items} items, each stage measured alone on one core (ms, best of 5):")
    for stage, ms in costs.items():
        print(f"  {stage:50}{ms:>8.1f}")
    if ours.failed:
        print(f"{ours.failed} feed(s) failed in the first pass, e.g.: {ours.first_error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
