"""Soak benchmark: is the bot's memory flat over a long run of polling feeds that keep changing?

A loopback feed server (its own process) serves N WordPress-shaped feeds; every interval each feed gains a few
new stories (about different acts and events, so clustering and matching see real variety) and drops its oldest.
In this process the bot's own poll stage runs as `kpopnews run` wires it: `Poller.run_forever` (claims, worker
processes) with `after_store` clustering every new story and queueing its deliveries for 1,000 channel
subscriptions. Every minute the resident memory of this process and its worker processes together is printed;
the verdict compares the last minutes with the first ones after warm-up (the caches fill in the first minutes).

    python bench/bench_soak.py                   # 30 minutes, 50 feeds, a poll every 20 s
    python bench/bench_soak.py --minutes 3       # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import TreeMemory  # noqa: E402
from bot.artists import load_artist_index  # noqa: E402
from bot.config import Config, DeliveryConfig, PollingConfig, SourceConfig, StorageConfig  # noqa: E402
from bot.fetch import Fetcher, make_session  # noqa: E402
from bot.pipeline import after_store  # noqa: E402
from bot.poller import Poller  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.subscriptions import add_subscription  # noqa: E402
from bot.workers import Workers  # noqa: E402
from tests.support.feed_server import FeedServer, rss  # noqa: E402

SUBSCRIBED = ["bts-v", "iu", "blackpink", "newjeans", "seventeen", "aespa", "stray-kids", "twice", "ive"]
GOAL_GROWTH = 10.0  # per cent, last minutes against the first minutes after warm-up
ACTS = [
    "BTS's V",
    "IU",
    "BLACKPINK",
    "NewJeans",
    "SEVENTEEN",
    "aespa",
    "Stray Kids",
    "TWICE",
    "IVE",
    "ENHYPEN",
]
EVENTS = [
    "announces a comeback album for next month",
    "tops the Billboard Hot 100 for the first time",
    "begins military service today",
    "wins a daesang at the year-end awards",
    "confirms a world tour with 30 stops",
    "is named a global ambassador for a luxury brand",
    "surprises fans with a fan meeting",
    "releases a music video that passes 10 million views",
]


def _items(feed: int, tick: int, per_feed: int, new_per_tick: int, site: str) -> list[dict[str, str]]:
    items = []
    newest = tick * new_per_tick + per_feed
    for n in range(newest - 1, newest - 1 - per_feed, -1):
        act, event = ACTS[(n + feed) % len(ACTS)], EVENTS[(n * 7 + feed) % len(EVENTS)]
        slug = f"f{feed}-{n}"
        items.append(
            {
                "title": f"{act} {event} ({slug})",
                "link": f"{site}/news/{slug}/",
                "guid": f"{site}/?p={slug}",
                "description": f"{act} {event}. Fans react online [&#8230;]",
                "content": f"<p>{act} {event}, the agency said on story {slug}.</p>"
                + "<p>More text.</p>" * 40,
                "categories": f"News,{act}",
            }
        )
    return items


def _serve(feeds: int, interval: float, new_per_tick: int, ready, stop) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        server = FeedServer()
        await server.start()
        site = server.url("")
        tick = 0

        def publish() -> None:
            for i in range(feeds):
                body = rss(_items(i, tick, 20, new_per_tick, site), title=f"K-pop site {i}", link=site)
                server.set_feed(f"f{i}", body)

        publish()
        ready.put(server.port)
        while not stop.is_set():
            await asyncio.sleep(interval)
            tick += 1
            publish()
        await server.close()

    asyncio.run(main())


async def soak(urls: list[str], db: Path, minutes: float, interval: float) -> list[tuple[float, float]]:
    config = Config(
        storage=StorageConfig(database=str(db)),
        polling=PollingConfig(interval_seconds=int(interval)),
        sources=tuple(SourceConfig(f"K-pop site {i}", url) for i, url in enumerate(urls)),
        delivery=DeliveryConfig(),
    )
    artists = await load_artist_index(sys.stderr)
    store = await Store.open(db, artists=artists)
    await store.sources.sync_config(config.sources)
    for n in range(1000):  # 1,000 channels over 10 servers, one act each (and every tenth everything)
        await add_subscription(
            store,
            guild_id=10_000 + n % 10,
            channel_id=20_000 + n,
            artist_id=None if n % 10 == 0 else SUBSCRIBED[n % len(SUBSCRIBED)],
        )
    workers = Workers()
    samples: list[tuple[float, float]] = []
    stored = 0

    async def on_new(stories: list) -> None:  # type: ignore[type-arg]
        nonlocal stored
        stored += len(stories)
        await after_store(store, stories, config=config.delivery, wake=lambda: None)

    with TreeMemory() as memory:
        async with make_session(config.polling) as session:
            poller = Poller(
                config,
                store,
                Fetcher(session, config.polling),
                artists,
                on_new_stories=on_new,
                workers=workers,
            )
            task = asyncio.create_task(poller.run_forever())
            started = time.monotonic()
            try:
                while time.monotonic() - started < minutes * 60:
                    await asyncio.sleep(60 if minutes >= 3 else 15)
                    memory.peak_mb = 0.0  # the sampler's peak since the last sample: this minute's peak
                    await asyncio.sleep(1.0)
                    now_mb = memory.peak_mb
                    elapsed = (time.monotonic() - started) / 60
                    samples.append((elapsed, now_mb))
                    print(f"{elapsed:6.1f} min  {now_mb:7.1f} MB  {stored:7d} stories stored", flush=True)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    workers.close()
    await store.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--feeds", type=int, default=50)
    parser.add_argument("--interval", type=float, default=20.0, help="poll interval and feed change (s)")
    parser.add_argument("--new", type=int, default=3, help="new stories per feed per interval")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(args.feeds, args.interval, args.new, ready, stop), daemon=True)
    server.start()
    try:
        port = ready.get(timeout=60)
        urls = [f"http://127.0.0.1:{port}/dyn/f{i}" for i in range(args.feeds)]
        with tempfile.TemporaryDirectory(prefix="kpopnews-soak-") as tmp:
            samples = asyncio.run(soak(urls, Path(tmp) / "soak.db", args.minutes, args.interval))
    finally:
        stop.set()
        server.join(timeout=10)
    if len(samples) < 4:
        print("too short to judge: run for at least 4 samples")
        return 0
    quarter = max(1, len(samples) // 4)
    first = sum(mb for _, mb in samples[quarter : 2 * quarter]) / quarter  # after the warm-up quarter
    last = sum(mb for _, mb in samples[-quarter:]) / quarter
    growth = 100.0 * (last - first) / first
    verdict = "ok" if growth < GOAL_GROWTH else "MISSED"
    print(
        f"memory: {first:.0f} MB after warm-up, {last:.0f} MB at the end: {growth:+.1f} %   "
        f"goal < {GOAL_GROWTH:g} %  {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
