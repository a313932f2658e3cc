"""bot/article_pages.py: which article pages a pass fetches, the per-host breaker, and the poller and preview on
an excerpt feed whose pages hang or refuse (real HTTP on loopback, a real SQLite file)."""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest

from bot.article_pages import (
    BREAKER_FAILURES,
    PAGE_CONCURRENCY,
    HostBreaker,
    fetch_article_pages,
    fetch_pages,
    plan_pages,
    wants_article_page,
)
from bot.config import Config, DeliveryConfig, PollingConfig, SourceConfig, StorageConfig
from bot.fetch import Fetcher, PageUnreachable, make_page_fetcher, make_session
from bot.models import ArtistRef, FeedEntry, Quote, Story
from bot.parse import parse_feed
from bot.poller import Poller
from bot.store import Store
from bot.urls import canonical_url
from tests.support.feed_server import FeedServer, rss
from tests.support.sql import rows as sql_rows

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2024, 1, 30, 3, 0, tzinfo=UTC)
PAGE = (
    '<html><head><meta property="og:image" content="https://image.example.com/{0}.jpg"></head>'
    "<body><article><p>Story {0}: the group filmed the scene together. Fans loved it.</p>"
    '<blockquote class="twitter-tweet"><p lang="en" dir="ltr">So proud of them, story {0} is everything</p>'
    '&mdash; Fan Name (@fan{0}) <a href="https://twitter.com/fan{0}/status/17500000000{0}">January 30, 2024</a>'
    "</blockquote></article></body></html>"
)


def entries(name: str) -> list[FeedEntry]:
    return parse_feed((FIXTURES / "feeds" / name).read_bytes()).entries


def excerpt(i: int, link: str, *, age: timedelta) -> FeedEntry:
    return FeedEntry(
        title=f"story {i}", link=link, guid=f"g{i}", published=NOW - age, summary_html=f"Story {i} [&#8230;]"
    )


def closed_port() -> int:
    """A loopback port where nothing listens: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- which pages -------------------------------------------------------------------------------------------


def test_wants_article_page() -> None:
    [koreaboo] = entries("koreaboo-style-v-iu.xml")
    soompi = entries("soompi-style.xml")
    scmp = entries("scmp-style.xml")
    atom_full, atom_short = entries("atom-style.xml")
    assert not wants_article_page(koreaboo)  # full content:encoded
    assert all(wants_article_page(e) for e in soompi + scmp)  # excerpts and teasers
    assert not wants_article_page(atom_full) and wants_article_page(atom_short)
    assert not wants_article_page(FeedEntry(title="t", link="javascript:alert(1)"))
    cut = FeedEntry(
        title="t", link="https://e.example/a", content_html="<p>" + "word " * 200 + "[&#8230;]</p>"
    )
    assert wants_article_page(cut)


def test_a_pass_plans_the_newest_young_pages_up_to_its_cap() -> None:
    items = [excerpt(i, f"https://e.example/{i}", age=timedelta(hours=i + 1)) for i in range(40)]
    items.reverse()  # the feed's order must not matter: the newest first
    items.append(FeedEntry(title="undated", link="https://e.example/undated", summary_html="Cut [&#8230;]"))
    items.append(excerpt(99, "https://e.example/3?utm_source=rss", age=timedelta(hours=9)))  # 3 again
    [full] = entries("koreaboo-style-v-iu.xml")
    items.append(full)  # full content: no page at all

    plan = plan_pages(items, limit=5, max_age=timedelta(hours=24), now=NOW)
    assert list(plan.fetch) == [canonical_url(f"https://e.example/{i}") for i in ("undated", 0, 1, 2, 3)]
    assert plan.deferred == {canonical_url(f"https://e.example/{i}") for i in range(4, 24)}  # up to 24 h old
    assert plan.too_old == 40 - 24
    unlimited = plan_pages(items, limit=None, max_age=None, now=NOW)  # preview's view: every story shown
    assert len(unlimited.fetch) == 41 and not unlimited.deferred and unlimited.too_old == 0


async def test_pages_are_keyed_by_canonical_link_and_a_failing_one_is_deferred() -> None:
    calls: list[str] = []

    async def fetch_page(url: str) -> str | None:
        calls.append(url)
        if "broken" in url:
            raise ConnectionResetError("peer went away")
        if "gone" in url:
            return None  # the site answered: the page is of no use
        return f"<html><body><article><p>{url}</p></article></body></html>"

    excerpts = entries("soompi-style.xml")[:2]
    broken = FeedEntry(
        title="broken", link="https://e.example/broken/?utm_source=rss", summary_html="Excerpt"
    )
    gone = FeedEntry(title="gone", link="https://f.example/gone/", summary_html="Excerpt")
    full = entries("koreaboo-style-v-iu.xml")  # full content:encoded: no page wanted
    batch = await fetch_article_pages([*excerpts, broken, gone, *full], fetch_page, concurrency=2)
    assert set(batch.pages) == {canonical_url(e.link) for e in [*excerpts, gone]}
    assert (
        all(batch.pages[canonical_url(e.link)] for e in excerpts)
        and batch.pages[canonical_url(gone.link)] is None
    )
    assert batch.deferred == {canonical_url(broken.link)}  # its site failed: worth a later try
    assert sorted(calls) == sorted(e.link for e in [*excerpts, broken, gone])
    assert batch.taken == 4


# --- the breaker -------------------------------------------------------------------------------------------


def test_the_breaker_trips_after_failures_in_a_row_and_backs_off() -> None:
    now = [NOW]
    breaker = HostBreaker(failures=3, backoff=timedelta(minutes=5), clock=lambda: now[0])
    assert not breaker.failed("a.example") and not breaker.failed("a.example")
    breaker.succeeded("a.example")  # an answer resets the count: failures must come in a row
    assert not breaker.failed("a.example") and not breaker.failed("a.example")
    assert breaker.failed("a.example")  # the third in a row
    assert not breaker.allows("a.example") and breaker.allows("b.example")
    assert breaker.waiting_until("a.example") == NOW + timedelta(minutes=5)
    assert breaker.failed("a.example")  # a request under way when it tripped: the backoff stands as it was
    assert breaker.waiting_until("a.example") == NOW + timedelta(minutes=5)
    now[0] += timedelta(minutes=5)
    assert breaker.allows("a.example")  # tried again after the backoff...
    assert breaker.failed("a.example")  # ...and one more failure trips it again, for twice as long
    assert breaker.waiting_until("a.example") == now[0] + timedelta(minutes=10)
    now[0] += timedelta(minutes=10)
    breaker.succeeded("a.example")
    assert breaker.allows("a.example") and not breaker.failed("a.example")  # healthy again: a fresh count


async def test_page_fetcher_tells_a_failing_site_from_a_useless_page(server: FeedServer) -> None:
    config = PollingConfig(timeout_seconds=0.5, connect_timeout_seconds=0.5)
    async with make_session(config) as session:
        fetch_page = make_page_fetcher(Fetcher(session, config), allow_private=True)
        assert await fetch_page(server.url("/status/404")) is None  # the site answered
        assert await fetch_page(server.url("/files/koreaboo-style-v-iu.xml")) is None  # not HTML
        for failing in (
            server.url("/status/503"),
            server.url("/status/429"),
            server.url("/hang/x"),
            f"http://127.0.0.1:{closed_port()}/a",
        ):
            with pytest.raises(PageUnreachable):
                await fetch_page(failing)


async def test_a_pass_skips_a_failing_host_and_never_asks_a_page_twice(server: FeedServer) -> None:
    config = PollingConfig(timeout_seconds=0.3, connect_timeout_seconds=0.3)
    refused = f"http://127.0.0.1:{closed_port()}"
    links: dict[str, str] = {}
    for i in range(60):  # three sites, interleaved: one hangs, one refuses, one answers
        for link in (
            server.url(f"/hang/{i}"),
            f"{refused}/pages/{i}",
            server.url(f"/pages/{i}", host="localhost"),
        ):
            links[canonical_url(link)] = link
        server.set_page(str(i), PAGE.format(i))
    breaker = HostBreaker()
    started = time.monotonic()
    async with make_session(config) as session:
        fetch_page = make_page_fetcher(Fetcher(session, config), allow_private=True)
        batch = await fetch_pages(links, fetch_page, breaker=breaker)
    elapsed = time.monotonic() - started
    hung = [path for path in server.hits if path.startswith("/hang/")]
    # the requests already under way when the breaker trips still end: a few more than its threshold
    assert BREAKER_FAILURES <= len(hung) < BREAKER_FAILURES + PAGE_CONCURRENCY
    assert all(n == 1 for n in server.hits.values())  # never the same page twice
    assert sum(1 for html in batch.pages.values() if html) == 60  # the healthy site's pages, every one
    assert len(batch.deferred) == 120  # the others: worth a later try, after the backoff
    assert not breaker.allows(f"127.0.0.1:{server.port}") and not breaker.allows(refused.split("//")[1])
    assert elapsed < 3.0, elapsed  # two rounds of timeouts at most, not 60


async def test_a_pass_waits_for_its_pages_no_longer_than_its_deadline(server: FeedServer) -> None:
    config = PollingConfig(timeout_seconds=30.0)  # each request may take long: the pass's deadline is shorter
    links = {canonical_url(server.url(f"/hang/{i}")): server.url(f"/hang/{i}") for i in range(10)}
    links[canonical_url(server.url("/pages/ok", host="localhost"))] = server.url(
        "/pages/ok", host="localhost"
    )
    server.set_page("ok", PAGE.format("ok"))
    breaker = HostBreaker()
    started = time.monotonic()
    async with make_session(config) as session:
        fetch_page = make_page_fetcher(Fetcher(session, config), allow_private=True)
        batch = await fetch_pages(links, fetch_page, breaker=breaker, per_host=2, deadline_seconds=0.5)
    assert time.monotonic() - started < 2.0
    assert hanging(server) == 2  # two at once for one host, both cut at the deadline
    assert len(batch.pages) == 1 and len(batch.deferred) == 10  # the other site's page was not held up
    host = f"127.0.0.1:{server.port}"
    assert breaker.allows(host) and breaker.failed(
        host
    )  # the two cut requests counted: the third failure trips
    await asyncio.sleep(0.05)
    assert server.in_flight == 0  # the cut requests were closed, not left hanging


# --- the store: stories awaiting their page (both engines) ------------------------------------------------


async def test_the_store_keeps_which_stories_await_their_page(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        (source,) = await store.sources.sync_config([SourceConfig("Soompi", "https://www.soompi.com/feed")])
        assert source.id is not None
        stories = [
            Story(
                key=f"k{i}", title=f"Story {i}", url=f"https://a.example/{i}", source="Soompi", summary="Cut…"
            )
            for i in range(4)
        ]
        ids = [r.id for r in await store.stories.add_many(stories, source_id=source.id)]
        async with store.transaction():  # joins the caller's transaction, as the poller stores them
            await store.stories.await_pages({ids[i]: NOW + timedelta(hours=i + 1) for i in range(3)})
        waiting = await store.stories.awaiting_pages(source.id, now=NOW, limit=2)
        assert [s.id for s in waiting] == [ids[2], ids[1]]  # the newest first (the latest to age out)
        assert waiting[0].url == "https://a.example/2" and waiting[0].summary == "Cut…"

        done = Story(
            key="k2",
            title="Story 2",
            url="https://a.example/2",
            source="Soompi",
            summary="The whole story.",
            image="https://img.example/2.jpg",
            quotes=[Quote("So proud", "Fan", "fan", "x", "https://x.com/fan/status/1")],
            artists=[ArtistRef("iu", "IU", None)],
            text="The whole story, as the article page tells it.",
            id=ids[2],
        )
        await store.stories.complete_pages([done], given_up=[ids[1]])
        [stored] = await store.stories.get_many([ids[2]])
        assert (stored.summary, stored.image) == (done.summary, done.image)
        [kept] = await store.stories.texts_after(ids[2] - 1, 1)
        assert kept.text == "The whole story, as the article page tells it."  # the page's text is kept
        assert [q.handle for q in stored.quotes] == ["fan"] and [a.id for a in stored.artists] == ["iu"]
        assert stored.title == "Story 2"  # the title, time and identity stay
        assert [s.id for s in await store.stories.awaiting_pages(source.id, now=NOW, limit=5)] == [ids[0]]
        # too old by now: forgotten, and never asked for again
        assert await store.stories.awaiting_pages(source.id, now=NOW + timedelta(hours=1), limit=5) == []
        assert await sql_rows(store, "SELECT count(*) FROM stories WHERE page_wanted_until IS NOT NULL") == [
            (0,)
        ]
    finally:
        await store.close()


# --- the poller and preview on a big excerpt feed whose pages do not answer -----------------------------------


def excerpt_feed(n: int, links: list[str], *, now: datetime, step: timedelta) -> bytes:
    return rss(
        [
            {
                "title": f"Story {i}: the group announces a comeback",
                "link": links[i % len(links)].format(i=i),
                "guid": f"excerpt-{i}",
                "description": f"The group shared story {i} with fans during a live [&#8230;]",
                "pubDate": format_datetime(now - step * i),
            }
            for i in range(n)
        ],
        title="Excerpts",
    )


def feed_with_pages(server: FeedServer, n: int, *, now: datetime, step: timedelta) -> str:
    """Serve an excerpt feed of `n` items, one every `step` back from `now`, each page answering."""
    for i in range(n):
        server.set_page(str(i), PAGE.format(i))
    return server.set_feed("feed", excerpt_feed(n, [server.url("/pages/{i}")], now=now, step=step))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def make_poller(
    tmp_path: Path,
    store: Store,
    session,
    clock: Clock,
    url: str,
    on_new_stories=None,
    **polling: object,
) -> Poller:
    config = Config(
        storage=StorageConfig(database=str(tmp_path / "k.db")),
        polling=PollingConfig(interval_seconds=300.0, **polling),  # type: ignore[arg-type]
        delivery=DeliveryConfig(max_age_hours=24.0),
        sources=(SourceConfig("Excerpts", url),),
    )
    await store.sources.sync_config(config.sources)
    fetcher = Fetcher(session, config.polling)
    return Poller(
        config, store, fetcher, None, on_new_stories=on_new_stories, clock=clock, rng=random.Random(7)
    )


def hanging(server: FeedServer) -> int:
    """Requests the hanging site got."""
    return sum(n for path, n in server.hits.items() if path.startswith("/hang/"))


def rows(tmp_path: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(tmp_path / "k.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(PollingConfig()) as opened:
        yield opened


@pytest.fixture
async def server():
    async with FeedServer() as running:
        yield running


async def test_a_poll_of_a_big_excerpt_feed_whose_pages_hang_or_refuse_stores_every_story(
    tmp_path: Path, server: FeedServer, store: Store, session: aiohttp.ClientSession
) -> None:
    clock = Clock(NOW)
    refused = f"http://127.0.0.1:{closed_port()}"
    links = [server.url("/hang/{i}"), refused + "/pages/{i}"]
    n = 2000  # one every 30 s: 2,000 items span 17 h, all young
    url = server.set_feed("big", excerpt_feed(n, links, now=NOW, step=timedelta(seconds=30)))
    poller = await make_poller(
        tmp_path, store, session, clock, url, timeout_seconds=0.5, connect_timeout_seconds=0.5
    )
    started = time.monotonic()
    report = (await poller.poll_all()).sources[0]
    elapsed = time.monotonic() - started
    assert report.line() == f"Excerpts: fetched, {n} stories, {n} new"
    # one round for the hanging site (2 at once), cut by the pass's deadline; the refusing one trips
    assert hanging(server) == 2 and server.hits.get("/hang/0") == 1
    assert report.article_pages == 20  # the default cap: taken, if not fetched
    # every young story stored without its page awaits it
    waiting = "SELECT count(*) FROM stories WHERE page_wanted_until IS NOT NULL"
    assert rows(tmp_path, waiting) == [(n,)]
    assert elapsed < 30, elapsed

    # the feed did not change: the waiting ones are asked for, two more requests are cut, and four
    # failures in a row trip the breaker
    again = (await poller.poll_all()).sources[0]
    assert again.outcome in ("not_modified", "unchanged") and again.article_pages == 20
    assert hanging(server) == 4
    third = (await poller.poll_all()).sources[0]  # skipped while the host waits out its backoff
    assert third.article_pages == 20 and hanging(server) == 4
    assert server.hits["/hang/0"] == 2  # the newest waiting page, asked once per poll

    clock.now += timedelta(minutes=6)  # the first backoff is over: tried again...
    await poller.poll_all()
    assert hanging(server) == 6  # ...and tripped again
    assert rows(tmp_path, waiting) == [(n,)]  # still young: still waiting


async def test_stories_stored_without_their_page_get_it_on_later_polls_newest_first(
    tmp_path: Path, server: FeedServer, store: Store, session: aiohttp.ClientSession
) -> None:
    clock = Clock(NOW)
    # 25 young stories (one an hour), 5 too old to be posted: their pages are never asked for
    url = feed_with_pages(server, 30, now=NOW, step=timedelta(hours=1, minutes=-1))
    poller = await make_poller(tmp_path, store, session, clock, url, article_pages_per_poll=10)
    first = (await poller.poll_all()).sources[0]
    assert first.new_stories == 30 and first.article_pages == 10
    asked = sorted(int(p.rsplit("/", 1)[1]) for p in server.hits if p.startswith("/pages/"))
    assert asked == list(range(10))  # the newest ten
    images = dict(rows(tmp_path, "SELECT title, image_url FROM stories"))
    assert images["Story 9: the group announces a comeback"] == "https://image.example.com/9.jpg"
    assert images["Story 10: the group announces a comeback"] is None  # stored from the feed alone

    second = (await poller.poll_all()).sources[0]  # the feed did not change: the waiting ones go on
    assert second.outcome in ("not_modified", "unchanged") and second.article_pages == 10
    third = (await poller.poll_all()).sources[0]
    assert third.article_pages == 5
    asked = sorted(int(p.rsplit("/", 1)[1]) for p in server.hits if p.startswith("/pages/"))
    assert asked == list(range(25))  # every young story's page, once; none of the five old ones
    assert all(n == 1 for path, n in server.hits.items() if path.startswith("/pages/"))
    completed = rows(
        tmp_path,
        "SELECT count(*) FROM stories WHERE image_url LIKE 'https://image.example.com/%'"
        " AND summary LIKE '%Fans loved it.%' AND quotes_json LIKE '%So proud of them%'",
    )
    assert completed == [(25,)]  # quotes, image and text from the page, as if fetched at once
    assert rows(tmp_path, "SELECT count(*) FROM stories WHERE page_wanted_until IS NOT NULL") == [(0,)]
    fourth = (await poller.poll_all()).sources[0]
    assert fourth.article_pages == 0


async def test_new_stories_after_the_first_poll_have_their_page_before_they_are_handed_on(
    tmp_path: Path, server: FeedServer, store: Store, session: aiohttp.ClientSession
) -> None:
    clock = Clock(NOW)
    for i in range(6):
        server.set_page(str(i), PAGE.format(i))
    step = timedelta(minutes=10)
    handed: list[list[Story]] = []

    async def record(stories: list[Story]) -> None:
        handed.append(stories)

    url = server.set_feed("feed", excerpt_feed(3, [server.url("/pages/{i}")], now=NOW, step=step))
    poller = await make_poller(tmp_path, store, session, clock, url, on_new_stories=record)
    await poller.poll_all()  # the first poll: never posted, so stored at once and completed after
    assert [s.image for s in handed[0]] == [None, None, None]
    assert rows(tmp_path, "SELECT count(*) FROM stories WHERE image_url IS NOT NULL") == [(3,)]

    clock.now += timedelta(minutes=30)
    server.set_feed("feed", excerpt_feed(6, [server.url("/pages/{i}")], now=clock.now - 3 * step, step=-step))
    report = (await poller.poll_all()).sources[0]
    assert report.new_stories == 3
    # stories that may be posted: their page first, so their post has its quotes and image
    assert sorted(s.image or "" for s in handed[1]) == [
        f"https://image.example.com/{i}.jpg" for i in (3, 4, 5)
    ]
    assert all(server.hits[f"/pages/{i}"] == 1 for i in range(6))


async def test_a_story_waiting_for_its_page_is_dropped_once_too_old(
    tmp_path: Path, server: FeedServer, store: Store, session: aiohttp.ClientSession
) -> None:
    clock = Clock(NOW)
    url = feed_with_pages(server, 3, now=NOW, step=timedelta(hours=1))
    poller = await make_poller(tmp_path, store, session, clock, url, article_pages_per_poll=1)
    await poller.poll_all()
    assert len(rows(tmp_path, "SELECT id FROM stories WHERE page_wanted_until IS NOT NULL")) == 2
    clock.now += timedelta(hours=30)  # all three are past the delivery age now
    later = (await poller.poll_all()).sources[0]
    assert later.article_pages == 0 and server.hits["/pages/1"] == 0 and server.hits["/pages/2"] == 0
    assert rows(tmp_path, "SELECT count(*) FROM stories WHERE page_wanted_until IS NOT NULL") == [(0,)]


async def test_preview_of_a_big_excerpt_feed_whose_pages_do_not_answer(
    tmp_path: Path, server: FeedServer
) -> None:
    n = 2000
    refused = f"http://127.0.0.1:{closed_port()}"
    feed = tmp_path / "big.xml"
    feed.write_bytes(
        excerpt_feed(n, [server.url("/hang/{i}"), refused + "/pages/{i}"], now=NOW, step=timedelta(minutes=1))
    )
    config = tmp_path / "config.toml"
    config.write_text("[polling]\ntimeout_seconds = 0.5\nconnect_timeout_seconds = 0.5\n", encoding="utf-8")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "preview",
        str(feed),
        "--json",
        "--config",
        str(config),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err.decode()
    assert len(out.decode().splitlines()) == n  # every story shown
    assert hanging(server) == 2  # one round, cut by the deadline; the refusing site tripped its breaker
    note = err.decode().strip()
    assert note.endswith(
        f"{n} stories shown without their article page: {n - 20} past the newest 20"
        " (polling.article_pages_per_poll); 20 whose site did not answer in time or was skipped after failing"
    ), note
    assert elapsed < 30, elapsed
