"""Ingest benchmark: the real poller against what typical RSS bots do, measured in the same run.

A loopback aiohttp server in a separate process serves N WordPress-shaped feeds (default 500 x 20 items,
~50 KB each) with a fixed latency, spread over several loopback addresses (127.0.0.x) as real feeds are spread
over hosts. Then, in this process:

1. kpopnews: `Poller.poll_all` (real fetch; parse and enrichment in the worker processes; one transaction per
   feed) into a fresh SQLite file, then a second pass (which should be almost all 304s). A ticker task measures
   how late the event loop wakes it during the first pass (its worst stall). Peak memory is this process's max
   RSS after it; the worker processes' own peaks are printed beside it.
2. baseline: sequential `feedparser.parse(url)` over HTTP and one SQLite commit per entry, on a sample of the
   feeds (its rate in stories/s is what is compared).
3. the work per feed of each stage, measured alone on one core, to show where the time goes.

The machine is shared: run it when it is quiet, and compare the ratio, not the absolute rates.

    python bench/bench_ingest.py                       # the full default size (takes a minute or two)
    python bench/bench_ingest.py --feeds 50 --items 20 # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import feedparser  # noqa: E402

from bot import USER_AGENT  # noqa: E402
from bot.artists import load_artist_index  # noqa: E402
from bot.config import Config, PollingConfig, SourceConfig, StorageConfig  # noqa: E402
from bot.fetch import Fetcher, make_session  # noqa: E402
from bot.poller import Poller  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.workers import Workers  # noqa: E402
from tests.support.feed_server import FeedServer, wordpress_feed  # noqa: E402

GOAL_RATIO, GOAL_304, GOAL_STALL_MS, GOAL_PEAK_MB = 10.0, 95.0, 100.0, 300.0


def _serve(feeds: int, items: int, latency: float, hosts: list[str], ready, stop) -> None:  # type: ignore[no-untyped-def]
    """The feed sites, in their own process so their work is not on the measured loop."""

    async def main() -> None:
        server = FeedServer(host=hosts[0], extra_hosts=tuple(hosts[1:]))
        await server.start()
        sizes = []
        for i in range(feeds):
            site = server.url(
                "", host=hosts[i % len(hosts)]
            )  # article links lead back here (404 if followed)
            body = wordpress_feed(items, prefix=f"f{i}", site=site, title=f"K-pop site {i}")
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
    seconds: float
    second_seconds: float
    not_modified: int
    polled: int
    failed: int
    stall: float
    peak_mb: float
    workers_peak_mb: list[float]
    first_error: str | None


async def run_ours(urls: list[str], db_path: Path) -> OursResult:
    config = Config(
        storage=StorageConfig(database=str(db_path)),
        polling=PollingConfig(),  # the shipped defaults: concurrency 32, 2 per host, 20 s timeout, 10 MB cap
        sources=tuple(SourceConfig(f"K-pop site {i}", url) for i, url in enumerate(urls)),
    )
    artists = await load_artist_index(sys.stderr)
    store = await Store.open(db_path, artists=artists)
    workers = Workers()  # wired as `poll --once` wires them
    try:
        await store.sources.sync_config(config.sources)
        async with make_session(config.polling) as session:
            poller = Poller(config, store, Fetcher(session, config.polling), artists, workers=workers)
            # A running bot has its parser processes up already: start them before the clock does.
            await workers.parse(wordpress_feed(1, prefix="warm-up"), url="warm-up", content_type=None)
            await workers.enrich([], source_name="warm-up", pages={}, with_artists=artists is not None)
            meter = StallMeter()
            meter.start()
            started = time.perf_counter()
            first = await poller.poll_all()
            seconds = time.perf_counter() - started
            stall = await meter.stop()
            started = time.perf_counter()
            second = await poller.poll_all()
            second_seconds = time.perf_counter() - started
            workers_peak = _workers_peak_mb(workers)
    finally:
        workers.close()
        await store.close()
    con = sqlite3.connect(db_path)
    try:
        stored = con.execute("SELECT count(*) FROM stories").fetchone()[0]
    finally:
        con.close()
    failed = [r for r in first.sources if r.failed]
    return OursResult(
        stories=stored,
        seconds=seconds,
        second_seconds=second_seconds,
        not_modified=second.count("not_modified"),
        polled=len(second.sources),
        failed=len(failed),
        stall=stall,
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        workers_peak_mb=workers_peak,
        first_error=failed[0].error if failed else None,
    )


def _workers_peak_mb(workers: Workers) -> list[float]:
    """Peak RSS of the parse/enrich worker processes (VmHWM), read while they are alive."""
    pool = workers._pool
    peaks = []
    for process in getattr(pool, "_processes", {}).values():
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


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
    parser.add_argument("--hosts", type=int, default=50, help="loopback addresses the feeds are spread over")
    parser.add_argument(
        "--baseline-feeds",
        type=int,
        default=100,
        help="feeds the (slow) baseline reads; its rate is compared",
    )
    args = parser.parse_args()
    hosts = [f"127.0.0.{i + 1}" for i in range(max(1, min(args.hosts, args.feeds, 250)))]

    ctx = multiprocessing.get_context("spawn")  # a clean process: no copy of this one's loop or threads
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(
        target=_serve, args=(args.feeds, args.items, args.latency_ms / 1000, hosts, ready, stop), daemon=True
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
        f"{'kpopnews Poller.poll_all':34}{args.feeds:>7}{ours.stories:>9}{ours.seconds:>9.2f}{ours_rate:>11.0f}"
    )
    print(f"{'ratio':34}{ratio:>36.1f}x   goal >= {GOAL_RATIO:g}x  {verdict(ratio >= GOAL_RATIO)}")
    print(
        f"second pass: {ours.not_modified}/{ours.polled} not modified ({share_304:.1f} %) in {ours.second_seconds:.2f} s"
        f"   goal >= {GOAL_304:g} %  {verdict(share_304 >= GOAL_304)}"
    )
    print(
        f"worst event-loop stall during ingest: {stall_ms:.0f} ms   goal < {GOAL_STALL_MS:g} ms  {verdict(stall_ms < GOAL_STALL_MS)}"
    )
    workers = " + ".join(f"{mb:.0f}" for mb in ours.workers_peak_mb) or "none"
    print(
        f"peak memory (max RSS, after ingest): {ours.peak_mb:.0f} MB   goal < {GOAL_PEAK_MB:g} MB  "
        f"{verdict(ours.peak_mb < GOAL_PEAK_MB)}   (parse/enrich worker processes: {workers} MB)"
    )
    print(f"work per feed of {args.items} items, each stage measured alone on one core (ms, best of 5):")
    for stage, ms in costs.items():
        print(f"  {stage:50}{ms:>8.1f}")
    if ours.failed:
        print(f"{ours.failed} feed(s) failed in the first pass, e.g.: {ours.first_error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
