"""Delivery benchmark: one story fanned out to many channels, and /news answer times while feeds are ingested.

1. Fan-out: the real bot (discord.py over loopback) against FakeDiscord enforcing Discord's global limit of 50
   requests/s (a token bucket, bursts up to 50) and a per-channel limit of 5 messages per 5 s. One new story,
   one subscription per channel (1,000 channels over 4 servers by default), to text channels (one message
   each) and then to forum channels (one post each, named and tagged after the story's artists). Measured:
   the wall time from queueing to the last message, against the physical floor channels / 50 s, and the 429s
   the bot caused itself (goals: 0, and within 10 % of the floor).
2. DMs to followers: the same server and bot; N members (1,000 by default) follow V, and two new stories about
   him are stored one after the other. Each follower gets one DM per story, paced by the delivery worker's limiter.
   The first story costs two requests per follower (POST /users/@me/channels, then the message); the DM channel
   is kept in the store, so the second costs one. Measured per story: the wall time against the floor requests /
   50 s, and the 429s the bot caused itself (goals: within 10 %, 0).
3. The bot's own ingest, and /news meanwhile: the same bot, with 1,000 channels subscribed (to V, IU, BTS,
   BLACKPINK or everything, over 10 servers), polls N WordPress-shaped feeds (500 x 20 items by default, served
   by a loopback server in another process) whose stories are all new to it (the sources were read before, so
   nothing is backfill): each story is stored, clustered, matched against the subscriptions and its deliveries
   queued (and the delivery worker posts them meanwhile, at Discord's pace). Measured: stories stored per second
   (goal >= 500), and, while a user runs `/news V` every 100 ms, the time from the interaction's dispatch to the
   bot's answer reaching the server (p50, max), idle first (the baseline, same run) then during ingest (goal:
   max < 100 ms).

    python bench/bench_fanout.py                         # full size (about a minute and a half)
    python bench/bench_fanout.py --channels 100 --forums 100 --followers 100 --feeds 50   # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import _serve  # noqa: E402 - the feed sites, in their own process
from bench.stall_watch import StallWatch  # noqa: E402
from bot.config import DeliveryConfig, PollingConfig, SourceConfig  # noqa: E402
from bot.discord_bot import KpopNewsBot  # noqa: E402
from bot.follows import follow_artist  # noqa: E402
from bot.models import CHANNEL_FORUM, CHANNEL_TEXT, ArtistRef, PostOptions, Quote, Story  # noqa: E402
from bot.pipeline import after_store  # noqa: E402
from bot.subscriptions import add_subscription  # noqa: E402
from bot.timeutil import utcnow  # noqa: E402
from tests.support.bot_harness import bot_config, running_bot  # noqa: E402
from tests.support.discord_server import ChannelType, FakeDiscord  # noqa: E402

GLOBAL_LIMIT = 50.0
CHANNELS_PER_GUILD = 250  # Discord allows 500 channels per server; spread over several, as real fan-outs are
GOAL_OVER_FLOOR, GOAL_SELF_429, GOAL_NEWS_MAX_MS, GOAL_INGEST_RATE = 0.10, 0, 100.0, 500.0
FORUM_TAGS = ("News", "BTS", "IU", "BLACKPINK", "Comeback")  # the story is about V (BTS) and IU: two fit


@dataclass
class FanoutResult:
    kind: str
    channels: int
    seconds: float
    floor: float
    self_429: int
    sent: int
    requests: int
    first_post: float  # seconds from queueing to the first POST reaching the server
    last_post: float
    tagged: int = 0  # forum posts that carry the story's artists' tags
    peak: int = 0  # the most requests the server let through in any wall-clock second


async def run_fanout(channels: int, tmp: Path, kind: str = CHANNEL_TEXT) -> FanoutResult:
    forum = kind == CHANNEL_FORUM
    async with FakeDiscord(global_limit=GLOBAL_LIMIT, channel_message_limit=(5, 5.0)) as server:
        targets: list[tuple[int, int]] = []
        for g in range(math.ceil(channels / CHANNELS_PER_GUILD)):
            count = min(CHANNELS_PER_GUILD, channels - g * CHANNELS_PER_GUILD)
            if forum:
                guild = server.add_guild(f"Fans {g}", channels=[])
                made = [
                    server.add_channel(guild.id, f"news-{i}", type=ChannelType.FORUM, tags=FORUM_TAGS)
                    for i in range(count)
                ]
            else:
                guild = server.add_guild(f"Fans {g}", channels=[f"news-{i}" for i in range(count)])
                made = guild.text_channels
            targets += [(guild.id, c.id) for c in made]
        config = bot_config(server, tmp / f"fanout-{kind}.db", sources=())
        async with running_bot(server, config) as bot:
            for guild_id, channel_id in targets:
                await add_subscription(
                    bot.store, guild_id=guild_id, channel_id=channel_id, options=PostOptions(kind=kind)
                )
            story = Story(
                key="https://www.koreaboo.com/?p=1480001",
                title="BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU",
                url="https://www.koreaboo.com/news/bts-v-viral-behind-scenes-iu-love-wins-all-romantic/",
                canonical_url="https://www.koreaboo.com/news/bts-v-viral-behind-scenes-iu-love-wins-all-romantic/",
                source="Koreaboo",
                summary="BTS’s V is going viral for a behind-the-scenes clip with IU that makes one scene even "
                "more romantic.",
                image="https://image.koreaboo.com/2024/01/bts-v-instagram-1.jpg",
                published=utcnow() - timedelta(minutes=3),
                quotes=[
                    Quote(
                        "so taehyung was really singing to iu at this scene 🥹",
                        "daph",
                        "babiejieun",
                        "twitter",
                        "https://twitter.com/babiejieun/status/1751877393443410304",
                    )
                ],
                artists=[ArtistRef("bts-v", "V", "BTS"), ArtistRef("iu", "IU", None)],
            )
            await bot.store.stories.add_many([story], source_id=None)
            limited_before, requests_before = server.stats.ratelimited, len(server.requests)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await after_store(bot.store, [story], config=DeliveryConfig(), wake=bot.delivery.wake)
            ids = [c for _, c in targets]

            def posted(channel_id: int) -> int:
                if forum:
                    return sum(len(server.messages(t.id)) for t in server.threads(channel_id))
                return len(server.messages(channel_id))

            await server.wait_for(
                lambda: sum(posted(c) for c in ids) >= len(ids),
                timeout=len(ids) / GLOBAL_LIMIT * 3 + 30,
                what="every channel's post",
            )
            seconds = loop.time() - started
            sent = sum(posted(c) for c in ids)
            posts = [r.at for r in server.requests[requests_before:] if r.method == "POST"]
            base = time.monotonic() - (
                loop.time() - started
            )  # the server stamps requests with time.monotonic()
            tagged = (
                sum(1 for c in ids for t in server.threads(c) if len(t.applied_tags) == 2) if forum else 0
            )
            return FanoutResult(
                kind=kind,
                channels=len(ids),
                seconds=seconds,
                floor=len(ids) / GLOBAL_LIMIT,
                self_429=server.stats.ratelimited - limited_before,
                sent=sent,
                requests=len(server.requests) - requests_before,
                first_post=min(posts) - base,
                last_post=max(posts) - base,
                tagged=tagged,
                peak=server.ledger.peak(server.token),
            )


def print_fanout(fan: FanoutResult, verdict: Callable[[bool], str]) -> None:
    over = fan.seconds / fan.floor - 1
    where = "forum channels (one post each)" if fan.kind == CHANNEL_FORUM else "channels"
    print(
        f"fan-out: 1 story to {fan.channels} {where}, FakeDiscord at {GLOBAL_LIMIT:g} req/s global"
        " and 5 messages / 5 s per channel"
    )
    print(
        f"  wall time {fan.seconds:.2f} s, floor {fan.floor:.2f} s ({fan.channels} / {GLOBAL_LIMIT:g}):"
        f" {over * 100:+.1f} %   goal within {GOAL_OVER_FLOOR * 100:g} %  {verdict(over <= GOAL_OVER_FLOOR)}"
    )
    print(
        f"  429s the bot caused itself: {fan.self_429}   goal {GOAL_SELF_429}  "
        f"{verdict(fan.self_429 <= GOAL_SELF_429)}"
    )
    print(
        f"  {'posts' if fan.kind == CHANNEL_FORUM else 'messages'} {fan.sent}"
        f" (one per channel: {verdict(fan.sent == fan.channels)}),"
        f" REST requests {fan.requests}, {fan.requests / fan.seconds:.1f} req/s,"
        f" at most {fan.peak} in any one second"
    )
    if fan.kind == CHANNEL_FORUM:
        print(
            f"  posts tagged with the story's two artists: {fan.tagged} ({verdict(fan.tagged == fan.channels)})"
        )
    print(
        f"  first post after {fan.first_post:.2f} s, last at {fan.last_post:.2f} s:"
        f" {(fan.channels - 1) / max(fan.last_post - fan.first_post, 1e-9):.1f} posts/s in between"
    )


@dataclass
class DirectMessageRound:
    story: str
    seconds: float
    requests: int  # REST requests the bot made for it
    floor: float  # requests / GLOBAL_LIMIT
    self_429: int
    sent: int  # followers with exactly one DM per story so far
    replays: int  # sends answered with a message made already (nonce): none expected without a crash


def _direct_messages(server: FakeDiscord) -> int:
    return sum(len(server.messages(dm)) for dm in server.dm_channels)


V_STORIES = (  # (key, headline, link, summary): two events, so two story clusters
    (
        "https://www.koreaboo.com/?p=1480101",
        "BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU",
        "https://www.koreaboo.com/news/bts-v-viral-behind-scenes-iu-love-wins-all-romantic/",
        "A behind-the-scenes clip with IU makes one scene of Love Wins All even more romantic.",
    ),
    (
        "https://www.soompi.com/?p=1638600",
        "V Announces Solo Fan Meeting Dates In Seoul And Tokyo",
        "https://www.soompi.com/article/1638600wpp/v-announces-solo-fan-meeting-dates",
        "Tickets for the two fan meetings open next week through Weverse.",
    ),
)


async def run_dm_fanout(followers: int, tmp: Path) -> list[DirectMessageRound]:
    """One story, then another, to `followers` members who follow V, by direct message."""
    async with FakeDiscord(global_limit=GLOBAL_LIMIT, channel_message_limit=(5, 5.0)) as server:
        guild = server.add_guild("Fans", channels=["general"])
        members = [server.member(guild.id, f"fan-{i}").id for i in range(followers)]
        config = bot_config(server, tmp / "dms.db", sources=())
        async with running_bot(server, config) as bot:
            for user_id in members:
                await follow_artist(bot.store, user_id, "bts-v", locale="en-US")
            rounds: list[DirectMessageRound] = []
            for n, (key, title, url, summary) in enumerate(V_STORIES, start=1):
                story = Story(
                    key=key,
                    title=title,
                    url=url,
                    canonical_url=url,
                    source="Koreaboo",
                    summary=summary,
                    published=utcnow() - timedelta(minutes=3),
                    artists=[ArtistRef("bts-v", "V", "BTS")],
                )
                await bot.store.stories.add_many([story], source_id=None)
                limited_before, requests_before = server.stats.ratelimited, len(server.requests)
                replays_before = server.stats.nonce_replays
                loop = asyncio.get_running_loop()
                started = loop.time()
                await after_store(
                    bot.store,
                    [story],
                    config=DeliveryConfig(max_dms_per_day=10),
                    wake=bot.direct_messages.wake,
                    expand=bot.artists.expand if bot.artists else None,
                )
                # counted over the DM channels (asking each member's would cost followers² per look)
                await server.wait_for(
                    lambda n=n: _direct_messages(server) >= n * followers,
                    timeout=2 * followers / GLOBAL_LIMIT * 3 + 30,
                    what=f"every follower's DM of story {n}",
                )
                seconds = loop.time() - started
                requests = len(server.requests) - requests_before
                rounds.append(
                    DirectMessageRound(
                        story="first (opens each DM channel)" if n == 1 else "second (DM channels kept)",
                        seconds=seconds,
                        requests=requests,
                        floor=requests / GLOBAL_LIMIT,
                        self_429=server.stats.ratelimited - limited_before,
                        sent=sum(1 for dm in server.dm_channels if len(server.messages(dm)) == n),
                        replays=server.stats.nonce_replays - replays_before,
                    )
                )
            return rounds


@dataclass
class NewsResult:
    idle_ms: list[float]
    busy_ms: list[float]
    ingest_seconds: float
    stories: int
    polled: int
    deferred: int
    queued: int  # channel deliveries queued for the ingested stories


SUBSCRIBED = ("bts-v", "iu", "bts", "blackpink", None)  # None: every story


async def _subscribe_channels(server: FakeDiscord, bot: KpopNewsBot, channels: int) -> None:
    """`channels` channels over 10 servers, each subscribed to one act (or to everything)."""
    per_guild = -(-channels // 10)
    made = 0
    for g in range(10):
        count = min(per_guild, channels - made)
        if count <= 0:
            break
        guild = server.add_guild(f"Fans {g}", channels=[f"news-{i}" for i in range(count)])
        for i, channel in enumerate(guild.text_channels):
            await add_subscription(
                bot.store,
                guild_id=guild.id,
                channel_id=channel.id,
                artist_id=SUBSCRIBED[(made + i) % len(SUBSCRIBED)],
            )
        made += count


async def _read_before(bot: KpopNewsBot) -> None:
    """Mark every source as read once already: what the ingest brings is new, to be delivered, not backfill."""
    earlier = utcnow() - timedelta(hours=1)
    for source in await bot.store.sources.list():
        source.last_success_at = earlier
        await bot.store.sources.save_state(source)


def _queued(db_path: Path) -> int:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        return int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])


def _ingest_progress(db_path: Path) -> tuple[int, int]:
    """(sources fetched at least once, stories stored), read on a connection of its own."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        polled = db.execute("SELECT count(*) FROM sources WHERE last_fetched_at IS NOT NULL").fetchone()[0]
        stories = db.execute("SELECT count(*) FROM stories").fetchone()[0]
    return polled, stories


async def _ask_news(server: FakeDiscord, guild_id: int, channel_id: int) -> tuple[float, bool]:
    interaction = await server.invoke("news", {"artist": "V"}, guild_id=guild_id, channel_id=channel_id)
    callback = await interaction.response(timeout=10)
    return (interaction.callback_at - interaction.created) * 1000, callback.get("type") == 5


async def run_news(
    urls: list[str],
    tmp: Path,
    interval: float,
    budget: float,
    watch: StallWatch | None = None,
    subscriptions: int = 1000,
) -> NewsResult:
    async with FakeDiscord() as server:
        guild = server.add_guild("K-pop Fans", channels=["general"])
        channel = guild.text_channels[0]
        db_path = tmp / "news.db"
        sources = [SourceConfig(f"K-pop site {i}", url) for i, url in enumerate(urls)]
        # a long interval keeps the poller away until we say go; then every first poll is due at once
        polling = PollingConfig(interval_seconds=3600.0, fetch_article_pages=False)
        config = bot_config(server, db_path, sources=sources, polling=polling)
        async with running_bot(server, config) as bot:
            await _subscribe_channels(server, bot, subscriptions)
            await _read_before(bot)
            idle: list[float] = []
            deferred = 0
            for _ in range(20):
                ms, was_deferred = await _ask_news(server, guild.id, channel.id)
                idle.append(ms)
                deferred += was_deferred
                await asyncio.sleep(interval)
            busy: list[float] = []
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with watch.running() if watch else contextlib.nullcontext():
                ingest = asyncio.create_task(bot.poller.poll_all())  # every feed, first time, concurrently
                next_report = started + 10
                while not ingest.done() and loop.time() - started < budget:
                    if loop.time() > next_report:  # a long run says how far it is
                        polled, stories = await asyncio.to_thread(_ingest_progress, db_path)
                        print(f"  … {polled}/{len(urls)} feeds read, {stories} stories", file=sys.stderr)
                        next_report += 10
                    ms, was_deferred = await _ask_news(server, guild.id, channel.id)
                    busy.append(ms)
                    deferred += was_deferred
                    await asyncio.sleep(interval)
            finished = ingest.done()
            ingest.cancel()  # past the budget: what was measured is enough
            with contextlib.suppress(asyncio.CancelledError):
                await ingest
            seconds = loop.time() - started
            if not finished:
                print(f"  (ingest stopped after the {budget:.0f} s budget)", file=sys.stderr)
            polled, stories = await asyncio.to_thread(_ingest_progress, db_path)
            queued = await asyncio.to_thread(_queued, db_path)
            return NewsResult(idle, busy, seconds, stories, polled, deferred, queued)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--channels", type=int, default=1000, help="text channels the story goes to (default 1000; 0 skips)"
    )
    parser.add_argument(
        "--forums", type=int, default=1000, help="forum channels the story goes to (default 1000; 0 skips)"
    )
    parser.add_argument(
        "--followers", type=int, default=1000, help="members DMed about each story (default 1000)"
    )
    parser.add_argument("--feeds", type=int, default=500, help="feeds ingested during /news (default 500)")
    parser.add_argument("--items", type=int, default=20, help="items per feed (default 20)")
    parser.add_argument("--hosts", type=int, default=50, help="loopback addresses the feeds are spread over")
    parser.add_argument(
        "--ingest-budget",
        type=float,
        default=300.0,
        help="seconds of ingest to measure /news against before stopping it (default 300)",
    )
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-dms", action="store_true")
    parser.add_argument("--skip-news", action="store_true")
    parser.add_argument(
        "--stalls",
        type=float,
        metavar="MS",
        help="during ingest, report the event-loop stalls of at least MS ms: where the loop was (its stack)",
    )
    args = parser.parse_args()

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    with tempfile.TemporaryDirectory(prefix="kpopnews-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_fanout:
            for kind, count in ((CHANNEL_TEXT, args.channels), (CHANNEL_FORUM, args.forums)):
                if count > 0:
                    print_fanout(asyncio.run(run_fanout(count, tmp, kind)), verdict)
        if not args.skip_dms:
            rounds = asyncio.run(run_dm_fanout(args.followers, tmp))
            print(
                f"DMs: 2 stories to {args.followers} followers each, FakeDiscord at {GLOBAL_LIMIT:g} req/s global"
            )
            for r in rounds:
                over = r.seconds / r.floor - 1
                print(
                    f"  {r.story}: wall time {r.seconds:.2f} s, {r.requests} requests, floor {r.floor:.2f} s:"
                    f" {over * 100:+.1f} %   goal within {GOAL_OVER_FLOOR * 100:g} %  {verdict(over <= GOAL_OVER_FLOOR)}"
                )
                print(
                    f"    429s the bot caused itself: {r.self_429}  {verdict(r.self_429 <= GOAL_SELF_429)};"
                    f" DMs {r.sent} (one per follower: {verdict(r.sent == args.followers)}),"
                    f" {r.requests / r.seconds:.1f} req/s, nonce replays {r.replays}"
                )
        if not args.skip_news:
            hosts = [f"127.0.0.{i + 1}" for i in range(max(1, min(args.hosts, args.feeds, 250)))]
            ctx = multiprocessing.get_context("spawn")
            ready, stop = ctx.Queue(), ctx.Event()
            server = ctx.Process(
                target=_serve,
                args=(args.feeds, args.items, 2000, 0.05, hosts, ready, stop, True),
                daemon=True,
            )
            server.start()
            try:
                port, _ = ready.get(timeout=120)
                urls = [f"http://{hosts[i % len(hosts)]}:{port}/dyn/f{i}" for i in range(args.feeds)]
                watch = StallWatch(args.stalls / 1000) if args.stalls else None
                news = asyncio.run(run_news(urls, tmp, 0.1, args.ingest_budget, watch))
            finally:
                stop.set()
                server.join(timeout=10)
                if server.is_alive():
                    server.terminate()
            idle_p50, idle_max = statistics.median(news.idle_ms), max(news.idle_ms)
            busy_p50, busy_max = _percentile(news.busy_ms, 0.5), max(news.busy_ms, default=float("nan"))
            rate = news.stories / max(news.ingest_seconds, 0.001)
            print(
                f"the bot's own ingest: {args.feeds} feeds x {args.items} items, all new ({news.polled} feeds read),"
                f" {news.stories} stories stored, clustered and matched against 1,000 subscriptions in"
                f" {news.ingest_seconds:.1f} s = {rate:.0f} stories/s ({news.queued} deliveries queued)"
                f"   goal >= {GOAL_INGEST_RATE:g}/s  {verdict(rate >= GOAL_INGEST_RATE)}"
            )
            print("/news V answer time during that ingest")
            print(
                f"  idle (baseline): p50 {idle_p50:.0f} ms, max {idle_max:.0f} ms over {len(news.idle_ms)} asks"
            )
            print(
                f"  during ingest:   p50 {busy_p50:.0f} ms, p99 {_percentile(news.busy_ms, 0.99):.0f} ms,"
                f" max {busy_max:.0f} ms over {len(news.busy_ms)} asks"
                f" ({busy_p50 / max(idle_p50, 0.001):.1f}x the idle p50)"
                f"   goal max < {GOAL_NEWS_MAX_MS:g} ms  {verdict(busy_max < GOAL_NEWS_MAX_MS)}"
            )
            if news.deferred:
                print(f"  answers deferred (search slower than 1.5 s): {news.deferred}")
            if watch:
                print(watch.report())
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    print(f"(benchmark took {time.monotonic() - started:.0f} s)")
    sys.exit(status)
