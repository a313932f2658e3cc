"""The poll stage end to end: real HTTP over loopback, real parse/enrich, a real SQLite file."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import sqlite3
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Config, PollingConfig, SourceConfig, StorageConfig
from bot.fetch import Fetcher, make_session
from bot.models import Source, Story
from bot.poller import MAX_BACKOFF_SECONDS, Poller, SourceReport
from bot.store import Store
from tests.support.feed_server import FeedServer, rss, wordpress_feed

KOREABOO = "/files/koreaboo-style-v-iu.xml"
ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """The poller's notion of now, moved by hand (backoff and Retry-After span hours)."""

    def __init__(self) -> None:
        self.now = datetime(2024, 1, 30, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
async def server():
    async with FeedServer() as running:
        yield running


@pytest.fixture
async def store(tmp_path):
    opened = await Store.open(tmp_path / "k.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Harness:
    def __init__(self, store: Store, server: FeedServer, clock: Clock, tmp_path: Path) -> None:
        self.store, self.server, self.clock, self.tmp_path = store, server, clock, tmp_path
        self.delivered: list[list[Story]] = []
        self.polling = PollingConfig(interval_seconds=300.0, timeout_seconds=5.0, max_failures=3)
        self.session = None

    async def poller(self, sources: list[tuple[str, str]], **polling: object) -> Poller:
        config = Config(
            storage=StorageConfig(database=str(self.tmp_path / "k.db")),
            polling=replace(self.polling, **polling),
            sources=tuple(SourceConfig(name, url) for name, url in sources),
        )
        await self.store.sources.sync_config(config.sources)
        if self.session is None:
            self.session = make_session(config.polling)

        async def record(stories: list[Story]) -> None:
            self.delivered.append(stories)

        return Poller(
            config,
            self.store,
            Fetcher(self.session, config.polling),
            None,
            on_new_stories=record,
            clock=self.clock,
            rng=random.Random(7),
        )

    async def source(self, name: str):
        return next(s for s in await self.store.sources.list() if s.name == name)

    def rows(self, sql: str, *args: object) -> list[tuple]:
        con = sqlite3.connect(self.tmp_path / "k.db")
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


@pytest.fixture
async def h(store, server, clock, tmp_path):
    harness = Harness(store, server, clock, tmp_path)
    yield harness
    if harness.session is not None:
        await harness.session.close()


def by_name(reports: list[SourceReport]) -> dict[str, SourceReport]:
    return {r.source.name: r for r in reports}


async def test_first_poll_stores_every_story_as_backfill_then_304(h):
    feed = h.server.set_feed("news", wordpress_feed(20, prefix="n"))
    poller = await h.poller([("Koreaboo", h.server.url(KOREABOO)), ("News", feed)])
    first = await poller.poll_all()
    reports = by_name(first.sources)
    assert reports["Koreaboo"].line() == "Koreaboo: fetched, 1 story, 1 new"
    assert reports["News"].line() == "News: fetched, 20 stories, 20 new"
    assert first.total_line() == "total: 2 sources, 2 fetched; 21 stories, 21 new"
    rows = h.rows("SELECT title, source_name, backfill FROM stories ORDER BY id")
    assert len(rows) == 21 and all(backfill == 1 for _, _, backfill in rows)
    koreaboo = [r for r in rows if r[1] == "Koreaboo"]
    assert koreaboo[0][0].startswith("BTS’s V Is Going Viral")  # entities decoded by the real stages
    assert (
        sum(len(batch) for batch in h.delivered) == 21
    )  # the hook sees every new story (delivery skips backfill)
    source = await h.source("News")
    assert source.last_status == "ok" and source.etag and source.last_modified and source.body_hash
    assert source.last_success_at == h.clock.now and source.consecutive_failures == 0
    assert timedelta(seconds=270) <= source.next_poll_at - h.clock.now <= timedelta(seconds=330)

    h.clock.advance(minutes=5)
    second = await poller.poll_all()
    assert [r.line() for r in second.sources] == ["Koreaboo: not modified", "News: not modified"]
    assert h.server.requests[-1].headers.get("If-None-Match") or h.server.requests[-1].headers.get(
        "If-Modified-Since"
    )
    assert h.rows("SELECT count(*) FROM stories")[0][0] == 21
    assert (await h.source("News")).last_status == "not_modified"


async def test_new_items_after_the_first_poll_are_not_backfill_and_only_they_are_enriched(h):
    items = [
        {"title": f"Story {i}", "link": f"https://news.example.com/{i}/", "guid": f"g{i}"} for i in range(3)
    ]
    url = h.server.set_feed("news", rss(items))
    poller = await h.poller([("News", url)])
    await poller.poll_all()
    h.delivered.clear()
    items.insert(
        0, {"title": "Breaking: IU &amp; V", "link": "https://news.example.com/new/", "guid": "g-new"}
    )
    h.server.set_feed("news", rss(items))
    h.clock.advance(minutes=5)
    report = (await poller.poll_all()).sources[0]
    assert report.line() == "News: fetched, 4 stories, 1 new"
    assert [[s.title for s in batch] for batch in h.delivered] == [["Breaking: IU & V"]]
    assert h.rows("SELECT title, backfill FROM stories WHERE story_key = 'g-new'") == [
        ("Breaking: IU & V", 0)
    ]
    assert h.rows("SELECT count(*) FROM stories WHERE backfill = 1")[0][0] == 3


async def test_an_unchanged_body_without_validators_is_not_parsed_again(h):
    url = h.server.set_feed("plain", wordpress_feed(5, prefix="p"), validators=False)
    poller = await h.poller([("Plain", url)])
    assert (await poller.poll_all()).sources[0].outcome == "fetched"
    h.clock.advance(minutes=5)
    again = (await poller.poll_all()).sources[0]
    assert again.line() == "Plain: unchanged since the last poll" and again.stories_seen == 0
    assert "If-None-Match" not in h.server.requests[-1].headers
    assert h.server.hits["/dyn/plain"] == 2


async def test_410_gone_disables_the_source_with_what_to_do(h):
    poller = await h.poller([("Gone", h.server.url("/status/410")), ("Koreaboo", h.server.url(KOREABOO))])
    report = by_name((await poller.poll_all()).sources)
    assert report["Gone"].failed and "410 Gone" in report["Gone"].error
    assert report["Koreaboo"].outcome == "fetched"
    gone = await h.source("Gone")
    assert not gone.enabled and "410 Gone" in gone.disabled_reason
    assert "add the feed again at its new address" in gone.disabled_reason
    assert gone.probe_at == h.clock.now + timedelta(hours=1)
    h.clock.advance(minutes=59)
    again = await poller.poll_all()
    assert [r.source.name for r in again.sources] == ["Koreaboo"]  # disabled: not polled before its probe
    assert h.server.hits["/status/410"] == 1


async def test_repeated_failures_back_off_then_disable_with_the_last_error(h):
    poller = await h.poller([("Broken", h.server.url("/status/500"))], max_failures=3)
    delays = []
    for attempt in range(1, 4):
        report = (await poller.poll_all()).sources[0]
        assert report.failed and "500 Internal Server Error" in report.error
        source = await h.source("Broken")
        assert source.consecutive_failures == attempt and source.last_status == "error"
        delays.append((source.next_poll_at - h.clock.now).total_seconds())
        skipped = (await poller.poll_all()).sources
        if source.enabled:  # backing off: not polled before its time
            assert skipped[0].outcome == "skipped" and "backing off until" in skipped[0].error
        h.clock.now = source.next_poll_at + timedelta(seconds=1)
    assert h.server.hits["/status/500"] == 3
    assert delays[0] < delays[1] < delays[2]
    assert 240 <= delays[0] <= 360 and 480 <= delays[1] <= 720  # 5 min, then 10 min, ±20 %
    source = await h.source("Broken")
    assert not source.enabled
    assert "after 3 failed polls in a row" in source.disabled_reason
    assert "500 Internal Server Error" in source.disabled_reason and "fix or remove" in source.disabled_reason


def test_backoff_is_capped_at_six_hours():
    poller = Poller(Config(), None, None, None, rng=random.Random(1))  # type: ignore[arg-type]
    assert all(poller.backoff_seconds(n) <= MAX_BACKOFF_SECONDS * 1.2 for n in range(1, 100))
    assert poller.backoff_seconds(50) >= MAX_BACKOFF_SECONDS * 0.8


async def test_retry_after_is_respected(h):
    poller = await h.poller([("Busy", h.server.url("/status/429?retry_after=3600"))])
    report = (await poller.poll_all()).sources[0]
    assert report.failed and "429 Too Many Requests" in report.error and "3600 s" in report.error
    source = await h.source("Busy")
    assert source.next_poll_at - h.clock.now >= timedelta(seconds=3600)  # longer than the 5 min backoff
    h.clock.advance(minutes=30)
    assert (await poller.poll_all()).sources[0].outcome == "skipped"
    assert h.server.hits["/status/429"] == 1
    h.clock.advance(minutes=31)
    assert (await poller.poll_all()).sources[0].outcome == "failed"
    assert h.server.hits["/status/429"] == 2


async def test_a_bad_source_never_stops_the_others(h):
    async def broken_hook(stories: list[Story]) -> None:
        raise RuntimeError("delivery is down")

    good = h.server.set_feed("good", wordpress_feed(3, prefix="g"))
    poller = await h.poller(
        [
            ("HTML", h.server.url("/html")),
            ("Bomb", h.server.url("/gzip-bomb?mb=512")),
            ("Reset", h.server.url("/reset")),
            ("Missing", h.server.url("/status/404")),
            ("Loop", h.server.url("/loop/a")),
            ("Encoding", h.server.url("/wrong-encoding")),
            ("Good", good),
            ("Nothing", str(h.tmp_path / "no-such-feed.xml")),
        ],
        max_feed_bytes=1 << 20,
    )
    poller.on_new_stories = broken_hook
    reports = by_name((await poller.poll_all()).sources)
    assert reports["Good"].line() == "Good: fetched, 3 stories, 3 new"  # a failing hook does not fail it
    assert reports["Encoding"].outcome == "fetched"
    assert h.rows("SELECT title FROM stories WHERE story_key = 'iu-1'") == [
        ("IU’s “Love wins all” — 아이유",)
    ]
    for name, words in [
        ("HTML", "HTML"),
        ("Bomb", "larger than the 1 MB limit"),
        ("Reset", "closed the connection"),
        ("Missing", "404 Not Found"),
        ("Loop", "redirects in a loop"),
        ("Nothing", "not found"),
    ]:
        assert reports[name].failed and words in reports[name].error, (name, reports[name].error)
    html = await h.source("HTML")
    assert html.etag is None and html.body_hash is None  # a feed that did not parse is parsed again next time


async def test_a_story_carried_by_two_feeds_is_stored_once_and_linked_to_both(h):
    shared = {"title": "V and IU", "link": "https://www.koreaboo.com/news/v-iu/?utm_source=rss"}
    a = h.server.set_feed("a", rss([shared, {"title": "Only A", "link": "https://a.example/1/"}]))
    b_item = dict(shared, link="https://www.koreaboo.com/news/v-iu/?utm_medium=feed#comments")
    b = h.server.set_feed("b", rss([b_item, {"title": "Only B", "link": "https://b.example/1/"}]))
    poller = await h.poller([("A", a), ("B", b)])
    await poller.poll_all()
    assert h.rows("SELECT count(*) FROM stories WHERE title = 'V and IU'")[0][0] == 1
    assert (
        h.rows(
            "SELECT count(*) FROM source_stories JOIN stories ON stories.id = story_id WHERE title = 'V and IU'"
        )[0][0]
        == 2
    )
    assert h.rows("SELECT count(*) FROM stories")[0][0] == 3
    assert sum(len(batch) for batch in h.delivered) == 3  # the shared story is new once


async def test_guild_feeds_may_not_reach_private_addresses(h):
    poller = await h.poller([("Operator", h.server.url(KOREABOO))])
    added = await h.store.sources.add(h.server.url("/dyn/guild"), "Guild feed", owner_guild_id=42)
    h.server.set_feed("guild", wordpress_feed(2, prefix="guild"))
    reports = by_name((await poller.poll_all()).sources)
    assert reports["Operator"].outcome == "fetched"
    assert reports["Guild feed"].failed and "127.0.0.1 is a loopback address" in reports["Guild feed"].error
    assert h.server.hits["/dyn/guild"] == 0
    assert (await h.store.sources.get(added.id)).last_error == reports["Guild feed"].error


async def test_run_forever_polls_on_schedule_and_stops_cleanly(h):
    good = h.server.set_feed("good", wordpress_feed(2, prefix="rf"))
    config = replace(h.polling, interval_seconds=1.0)
    h.polling = config
    poller = await h.poller([("Good", good), ("Down", h.server.url("/status/503"))], max_failures=50)
    poller.clock = lambda: datetime.now(UTC)  # a real schedule needs real time
    task = asyncio.create_task(poller.run_forever())
    try:
        async with asyncio.timeout(20):
            while h.server.hits["/dyn/good"] < 3 or h.server.hits["/status/503"] < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (await h.source("Good")).last_status in ("ok", "not_modified")
    down = await h.source("Down")
    assert down.consecutive_failures >= 2 and down.enabled
    assert h.rows("SELECT count(*) FROM stories")[0][0] == 2


async def test_poll_once_command_prints_a_line_per_source_and_sets_the_exit_status(tmp_path, server):
    good = server.set_feed("good", wordpress_feed(4, prefix="cli"))

    def write_config(*sources: tuple[str, str]) -> Path:
        lines = [f'[storage]\ndatabase = "{tmp_path / "cli.db"}"\n']
        for name, url in sources:
            lines.append(f'[[sources]]\nname = "{name}"\nurl = "{url}"\n')
        path = tmp_path / "config.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        return path

    async def run(config: Path, *extra: str) -> tuple[int, str, str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "poll", "--once", "--config", str(config), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env=env,
        )  # fmt: skip
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    config = write_config(("Koreaboo", server.url(KOREABOO)), ("Good", good))
    code, out, err = await run(config)
    assert code == 0, err
    assert out.splitlines() == [
        "Koreaboo: fetched, 1 story, 1 new",
        "Good: fetched, 4 stories, 4 new",
        "total: 2 sources, 2 fetched; 5 stories, 5 new",
    ]
    assert err == ""  # a pipe, not a terminal: no progress
    code, out, err = await run(config)
    assert code == 0 and out.splitlines()[:2] == ["Koreaboo: not modified", "Good: not modified"]

    config = write_config(
        ("Koreaboo", server.url(KOREABOO)), ("Good", good), ("Dead", server.url("/status/404"))
    )
    code, out, err = await run(config)
    assert code == 1
    assert "Dead: failed: " in out and "404 Not Found" in out and "Good: not modified" in out
    assert out.splitlines()[-1] == "total: 3 sources, 2 not modified, 1 failed; 0 stories, 0 new"
    assert len(err.splitlines()) == 1 and err.startswith("kpopnews: Dead: ") and "Traceback" not in err

    bad = tmp_path / "bad.toml"
    bad.write_text("[polling]\ninterval_seconds = 0\n", encoding="utf-8")
    code, out, err = await run(bad)
    assert code == 2 and "polling.interval_seconds" in err and len(err.splitlines()) == 1
    assert out == ""


async def test_a_source_disabled_while_it_is_polled_stays_disabled(h):
    url = h.server.set_feed("slow", wordpress_feed(2, prefix="s"))
    poller = await h.poller([("Slow", url)])
    h.server.latency = 0.5
    source = await h.source("Slow")
    polling = asyncio.create_task(poller.poll_source(source))
    while h.server.in_flight == 0:  # noqa: ASYNC110 - the request is on its way
        await asyncio.sleep(0.01)
    await h.store.sources.disable(source.id, "removed by a server admin")
    report = await polling
    assert report.outcome == "fetched"
    assert (await h.source("Slow")).disabled_reason == "removed by a server admin"


def test_the_schedule_spreads_sources_over_the_interval_and_keeps_their_backoff():
    config = Config(polling=PollingConfig(interval_seconds=300.0))
    poller = Poller(config, None, None, None, rng=random.Random(3))  # type: ignore[arg-type]
    now = datetime(2024, 1, 30, tzinfo=UTC)
    overdue = [Source(url=f"https://s{i}.example/feed", name=f"s{i}", id=i) for i in range(200)]
    slots = sorted((poller._first_slot(s, now, startup=True) - now).total_seconds() for s in overdue)
    assert 0 <= slots[0] and slots[-1] <= 300
    assert max(b - a for a, b in zip(slots, slots[1:], strict=False)) < 30  # no gap: spread, not bunched
    assert sum(1 for s in slots if s < 30) < 40  # no herd at start-up: about a tenth in the first tenth
    backing_off = Source(
        url="https://x.example/feed", name="x", id=999, next_poll_at=now + timedelta(hours=2)
    )
    assert poller._first_slot(backing_off, now, startup=True) == now + timedelta(hours=2)
    added_later = poller._first_slot(
        Source(url="https://new.example/feed", name="new", id=1000), now, startup=False
    )
    assert now <= added_later <= now + timedelta(seconds=5)


async def test_poll_once_shows_progress_on_a_terminal_only(tmp_path, server):
    import pty

    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "tty.db"}"\n[[sources]]\nname = "Koreaboo"\nurl = "{server.url(KOREABOO)}"\n',
        encoding="utf-8",
    )
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "poll", "--once", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=slave, cwd=tmp_path, env=env,
    )  # fmt: skip
    os.close(slave)
    out, _ = await proc.communicate()
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    assert out.decode().splitlines()[0] == "Koreaboo: fetched, 1 story, 1 new"
    assert b"[1/1] Koreaboo: fetched" in seen


async def test_stories_are_tagged_with_the_packaged_artist_index_in_the_worker_processes(h):
    from bot.artists import ArtistIndex

    poller = await h.poller([("Koreaboo", h.server.url(KOREABOO))])
    poller.artists = await asyncio.to_thread(ArtistIndex.load)
    assert poller._artists_in_workers()  # the packaged index: each worker loads its own copy
    report = (await poller.poll_all()).sources[0]
    assert report.line() == "Koreaboo: fetched, 1 story, 1 new"
    assert h.rows("SELECT artist_id FROM story_artists ORDER BY position")[:2] == [("bts-v",), ("iu",)]


async def test_article_pages_of_excerpt_only_items_are_fetched_once_and_used(h):
    page = h.server.set_page(
        "v-iu",
        '<html><head><meta property="og:image" content="https://image.example.com/v-iu-lead.jpg"></head>'
        "<body><article><p>V and IU filmed the scene together. Fans loved it.</p></article></body></html>",
    )
    excerpt = [
        {"title": "V and IU", "link": page, "guid": "soompi-1", "description": "V and IU filmed [&#8230;]"}
    ]
    url = h.server.set_feed("soompi", rss(excerpt))
    poller = await h.poller([("Soompi", url)])
    report = (await poller.poll_all()).sources[0]
    assert report.line() == "Soompi: fetched, 1 story, 1 new"
    assert h.server.hits["/pages/v-iu"] == 1
    assert h.rows("SELECT image_url FROM stories") == [("https://image.example.com/v-iu-lead.jpg",)]

    url = h.server.set_feed("soompi2", rss([dict(excerpt[0], guid="soompi-2", link=page + "?v=2")]))
    quiet = await h.poller([("Soompi", url)], fetch_article_pages=False)
    assert (await quiet.poll_all()).sources[0].new_stories == 1
    assert h.server.hits["/pages/v-iu"] == 1  # polling.fetch_article_pages = false: no page fetched


async def test_an_enrichment_that_hangs_fails_the_source_and_is_retried(h):
    from bot.workers import Workers

    class StuckEnrichment(Workers):
        async def read_feed(self, *args, **kwargs):
            self.timeout = 0.5  # the real timeout path: a job that really hangs, and its worker is killed
            try:
                return await self.run(functools.partial(time.sleep, 60))
            finally:
                self.timeout = 30.0

    workers = StuckEnrichment(workers=1, timeout=30.0)
    try:
        poller = await h.poller([("News", h.server.set_feed("news", wordpress_feed(3, prefix="st")))])
        poller.workers = workers
        report = (await poller.poll_all()).sources[0]
        assert report.failed and "reading it or enriching its new stories took longer than" in report.error
        source = await h.source("News")
        assert source.body_hash is None and source.consecutive_failures == 1
        assert h.rows("SELECT count(*) FROM stories")[0][0] == 0
        poller.workers = Workers(workers=1)
        h.clock.now = source.next_poll_at + timedelta(seconds=1)
        assert (await poller.poll_all()).sources[0].line() == "News: fetched, 3 stories, 3 new"
        poller.workers.close()
    finally:
        workers.close()


# --- feeds that change: permanent redirects, probes of disabled sources --------------------------------------


@pytest.mark.parametrize("status", [301, 308])
async def test_a_permanent_redirect_moves_the_source_after_two_polls_in_a_row(h, status):
    h.server.set_feed("new", wordpress_feed(3, prefix="mv"))
    old = h.server.set_redirect("old", "/dyn/new", status)
    new = h.server.url("/dyn/new")
    poller = await h.poller([("Moving", old)])
    first = (await poller.poll_all()).sources[0]
    assert first.line() == (
        f"Moving: fetched, 3 stories, 3 new (redirects permanently to {new}: moved there if the next poll says "
        "the same)"
    )
    source = await h.source("Moving")
    assert (source.url, source.redirect_to, source.redirects_seen, source.moved_from) == (old, new, 1, None)

    h.clock.advance(minutes=5)
    second = (await poller.poll_all()).sources[0]
    assert second.line() == (
        f"Moving: not modified (moved permanently to {new}, was {old}; update its url in the configuration)"
    )
    source = await h.source("Moving")
    assert (source.url, source.moved_from, source.moved_at) == (new, old, h.clock.now)
    assert source.redirect_to is None and source.redirects_seen == 0 and source.enabled

    h.clock.advance(minutes=5)
    hits = h.server.hits["/moved/old"]
    assert (await poller.poll_all()).sources[0].line() == "Moving: not modified"
    assert h.server.hits["/moved/old"] == hits  # polled at its new address only
    assert h.rows("SELECT count(*) FROM sources") == [(1,)]


@pytest.mark.parametrize("status", [302, 307])
async def test_a_temporary_redirect_never_moves_the_source(h, status):
    h.server.set_feed("new", wordpress_feed(2, prefix="tmp"))
    old = h.server.set_redirect("old", "/dyn/new", status)
    poller = await h.poller([("Visiting", old)])
    for _ in range(3):
        report = (await poller.poll_all()).sources[0]
        assert report.outcome in ("fetched", "not_modified") and not report.notes
        h.clock.advance(minutes=5)
    source = await h.source("Visiting")
    assert (source.url, source.redirect_to, source.moved_from) == (old, None, None)
    assert h.server.hits["/moved/old"] == 3


async def test_a_redirect_is_a_move_only_when_two_polls_in_a_row_answer_it(h):
    h.server.set_feed("old", wordpress_feed(2, prefix="back"))
    h.server.set_feed("a", wordpress_feed(2, prefix="back"))
    h.server.set_feed("b", wordpress_feed(2, prefix="back"))
    old = h.server.set_redirect("old", "/dyn/a")
    poller = await h.poller([("Wavering", old)], max_failures=10)

    async def poll() -> Source:
        await poller.poll_all()
        h.clock.advance(minutes=5)
        return await h.source("Wavering")

    assert (await poll()).redirects_seen == 1
    h.server.set_redirect("old", None)  # answers itself again: the row is broken
    assert (await poll()).redirect_to is None
    h.server.set_redirect("old", "/dyn/a")
    assert (await poll()).redirects_seen == 1
    h.server.set_redirect("old", "/dyn/b")  # somewhere else: counted from one again
    assert (await poll()).redirect_to == h.server.url("/dyn/b")
    h.server.set_redirect("old", "/status/500", 301)  # a poll that fails breaks the row too
    source = await poll()
    assert source.redirect_to is None and source.consecutive_failures == 1
    assert source.url == old and source.moved_from is None


async def test_a_move_onto_another_sources_address_keeps_the_old_one_and_says_so(h):
    h.server.set_feed("other", wordpress_feed(2, prefix="o"))
    other = h.server.url("/dyn/other")
    old = h.server.set_redirect("old", "/dyn/other")
    poller = await h.poller([("Old", old), ("Other", other)])
    await poller.poll_all()
    h.clock.advance(minutes=5)
    report = by_name((await poller.poll_all()).sources)["Old"]
    assert report.outcome == "not_modified"
    assert (
        f"redirects permanently to {other}, which is the source 'Other' already: kept at {old}"
        in report.line()
    )
    source = await h.source("Old")
    assert source.url == old and source.enabled and source.redirect_to == other and source.redirects_seen == 2
    assert h.rows("SELECT name, url FROM sources ORDER BY id") == [("Old", old), ("Other", other)]


async def test_a_configuration_naming_the_old_address_keeps_the_moved_source(h):
    h.server.set_feed("new", wordpress_feed(2, prefix="cfg"))
    old = h.server.set_redirect("old", "/dyn/new")
    poller = await h.poller([("Moving", old)])
    await poller.poll_all()
    await poller.poll_all()
    (kept,) = await h.store.sources.sync_config([SourceConfig("Moving, renamed", old)])
    assert (kept.name, kept.url, kept.moved_from, kept.enabled) == (
        "Moving, renamed",
        h.server.url("/dyn/new"),
        old,
        True,
    )
    assert h.rows("SELECT count(*) FROM sources") == [(1,)]
    new = h.server.url("/dyn/new")
    both = await h.store.sources.sync_config([SourceConfig("Old", old), SourceConfig("New", new)])
    assert [(s.name, s.url) for s in both] == [("New", new)]  # one source, named by its current address
    assert h.rows("SELECT count(*) FROM sources") == [(1,)]
    await h.store.sources.sync_config([])  # removed from the configuration: retired, whatever its address
    assert (await h.source("New")).disabled_reason == "removed from the configuration"


async def test_a_disabled_source_is_probed_with_growing_gaps_and_comes_back_by_itself(h):
    h.server.set_feed("back", wordpress_feed(4, prefix="bk"))
    h.server.set_status("back", 410)
    poller = await h.poller([("Back", h.server.url("/dyn/back"))])
    report = (await poller.poll_all()).sources[0]
    disabled_at = h.clock.now
    assert report.failed and report.notes == [
        f"disabled; next probe {(disabled_at + timedelta(hours=1)):%Y-%m-%d %H:%M} UTC"
    ]
    gaps = []
    for expected_probes in (1, 2, 3, 4):
        source = await h.source("Back")
        assert not source.enabled and "410 Gone" in source.disabled_reason
        h.clock.now = source.probe_at - timedelta(minutes=1)
        assert (await poller.poll_all()).sources == []  # not before its time
        h.clock.now = source.probe_at
        probe = (await poller.poll_all()).sources[0]
        assert probe.outcome == "disabled" and "410 Gone" in probe.line() and "next probe" in probe.line()
        source = await h.source("Back")
        assert source.probes == expected_probes
        gaps.append(source.probe_at - h.clock.now)
    assert gaps == [timedelta(hours=6), timedelta(hours=24), timedelta(hours=24), timedelta(hours=24)]
    assert h.server.hits["/dyn/back"] == 5
    assert h.rows("SELECT count(*) FROM stories") == [(0,)]

    h.server.set_status("back", None)  # the site put it back
    h.clock.now = source.probe_at
    back = (await poller.poll_all()).sources[0]
    assert back.line() == "Back: fetched, 4 stories, 4 new (enabled again: a probe found the feed answering)"
    assert "If-None-Match" not in h.server.requests[-1].headers  # a probe asks for the feed itself
    source = await h.source("Back")
    assert (
        source.enabled and source.probe_at is None and source.probes == 0 and source.consecutive_failures == 0
    )
    h.clock.advance(minutes=5)
    assert (await poller.poll_all()).sources[0].line() == "Back: not modified"


async def test_a_source_disabled_after_failures_is_probed_an_hour_later(h):
    poller = await h.poller([("Broken", h.server.url("/status/503"))], max_failures=2)
    for _ in range(2):
        await poller.poll_all()
        h.clock.now = (await h.source("Broken")).next_poll_at
    source = await h.source("Broken")
    assert not source.enabled and "after 2 failed polls in a row" in source.disabled_reason
    assert source.probe_at == source.last_fetched_at + timedelta(hours=1)
    h.clock.now = source.probe_at
    assert (await poller.poll_all()).sources[0].outcome == "disabled"
    assert h.server.hits["/status/503"] == 3


async def test_a_source_switched_off_by_a_person_is_never_probed(h):
    poller = await h.poller([("Off", h.server.set_feed("off", wordpress_feed(1, prefix="off")))])
    source = await h.source("Off")
    await h.store.sources.disable(source.id, "removed by a server admin")
    h.clock.advance(days=3)
    assert (await poller.poll_all()).sources == []
    report = await poller.poll_source(await h.source("Off"))
    assert report.line() == "Off: skipped: disabled: removed by a server admin"
    assert h.server.hits["/dyn/off"] == 0


async def test_a_probe_does_not_revive_a_source_switched_off_meanwhile(h):
    h.server.set_feed("slow", wordpress_feed(1, prefix="sl"))
    h.server.set_status("slow", 410)
    poller = await h.poller([("Slow", h.server.url("/dyn/slow"))])
    await poller.poll_all()
    h.server.set_status("slow", None)
    h.server.latency = 0.5
    source = await h.source("Slow")
    h.clock.now = source.probe_at
    probing = asyncio.create_task(poller.poll_source(source))
    while h.server.in_flight == 0:  # noqa: ASYNC110 - the probe is on its way
        await asyncio.sleep(0.01)
    await h.store.sources.disable(source.id, "removed by a server admin")
    assert (await probing).outcome == "fetched"
    stored = await h.source("Slow")
    assert stored.disabled_reason == "removed by a server admin" and stored.probe_at is None


async def test_run_forever_probes_a_disabled_source_when_its_probe_is_due(h):
    h.server.set_feed("back", wordpress_feed(2, prefix="rfb"))
    poller = await h.poller([("Back", h.server.url("/dyn/back"))])
    source = await h.source("Back")
    source.disabled_reason = "the feed answered 410 Gone on 2024-01-30 03:00 UTC: the site removed it"
    source.probe_at = datetime.now(UTC) + timedelta(seconds=0.5)
    await h.store.sources.save_state(source)
    poller.clock = lambda: datetime.now(UTC)
    task = asyncio.create_task(poller.run_forever())
    try:
        async with asyncio.timeout(20):
            while not (await h.source("Back")).enabled:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert h.server.hits["/dyn/back"] == 1
    assert h.rows("SELECT count(*) FROM stories") == [(2,)]


async def test_a_pass_leaves_a_source_another_process_is_polling_to_it(h):
    """`poll --once` next to a running bot on the same database: the feed the bot is fetching right now is not
    fetched a second time; the others are, under claims of their own, released after."""
    busy_url = h.server.set_feed("busy", wordpress_feed(2, prefix="busy"))
    free_url = h.server.set_feed("free", wordpress_feed(2, prefix="free"))
    poller = await h.poller([("Busy", busy_url), ("Free", free_url)])
    busy = await h.source("Busy")
    assert await h.store.sources.claim(busy.id, "the-bot", h.clock(), 60.0)
    report = await poller.poll_all()
    lines = [r.line() for r in report.sources]
    assert lines == [
        "Busy: being polled by another process right now (the bot): left to it",
        "Free: fetched, 2 stories, 2 new",
    ]
    assert report.total_line() == "total: 2 sources, 1 fetched, 1 polled elsewhere; 2 stories, 2 new"
    assert h.server.hits["/dyn/busy"] == 0 and h.server.hits["/dyn/free"] == 1
    assert h.rows("SELECT name, claimed_by FROM sources ORDER BY name") == [
        ("Busy", "the-bot"),
        ("Free", None),
    ]
