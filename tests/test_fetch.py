"""The fetch stage against a real aiohttp server on loopback: limits, validators, redirects, errors."""

from __future__ import annotations

import asyncio
import tracemalloc
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from bot import USER_AGENT
from bot.config import PollingConfig
from bot.fetch import Fetcher, _Inflater, decode_html, make_page_fetcher, make_session, parse_retry_after
from tests.support.feed_server import FeedServer, wordpress_feed

SHARED_FIXTURE = Path(__file__).parent / "fixtures" / "feeds" / "koreaboo-style-v-iu.xml"
FIXTURE_BYTES = SHARED_FIXTURE.read_bytes()
MB = 1024 * 1024


@pytest.fixture
def polling() -> PollingConfig:
    return PollingConfig(
        timeout_seconds=5.0, connect_timeout_seconds=2.0, max_feed_bytes=2 * MB, max_redirects=3
    )


@pytest.fixture
async def server():
    async with FeedServer() as running:
        yield running


@pytest.fixture
async def fetcher(polling: PollingConfig):
    session = make_session(polling)
    try:
        yield Fetcher(session, polling)
    finally:
        await session.close()


async def fetch(fetcher: Fetcher, url: str, **kw):
    kw.setdefault("max_bytes", fetcher.config.max_feed_bytes)
    return await fetcher.fetch(url, **kw)


async def test_fixture_feed_is_fetched_with_validators_and_an_honest_user_agent(fetcher, server):
    result = await fetch(fetcher, server.url("/files/koreaboo-style-v-iu.xml"))
    assert result.status == "ok" and result.http_status == 200
    assert result.body == FIXTURE_BYTES
    assert result.etag and result.last_modified
    assert result.content_type.startswith("application/rss+xml")
    assert result.error is None and result.elapsed > 0
    sent = server.requests[-1].headers
    assert sent["User-Agent"] == USER_AGENT and "kpopnews" in sent["User-Agent"]
    assert "application/rss+xml" in sent["Accept"]
    assert sent["Accept-Encoding"] == "gzip, deflate"


async def test_etag_and_last_modified_give_304_without_a_body(fetcher, server):
    url = server.set_feed("k", wordpress_feed(3))
    first = await fetch(fetcher, url)
    by_etag = await fetch(fetcher, url, etag=first.etag)
    assert by_etag.status == "not_modified" and by_etag.body is None and by_etag.http_status == 304
    assert server.requests[-1].headers["If-None-Match"] == first.etag
    by_date = await fetch(fetcher, url, last_modified=first.last_modified)
    assert by_date.status == "not_modified"
    assert server.requests[-1].headers["If-Modified-Since"] == first.last_modified
    server.set_feed("k", wordpress_feed(4))  # the feed changed: the old validator no longer matches
    changed = await fetch(fetcher, url, etag=first.etag)
    assert changed.status == "ok" and changed.etag != first.etag
    assert server.hits["/dyn/k"] == 4


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/deflate?raw=1"])
async def test_compressed_bodies_are_inflated(fetcher, server, path):
    result = await fetch(fetcher, server.url(path))
    assert result.status == "ok", result.error
    assert result.body.startswith(b"<?xml") and result.body.endswith(b"</rss>")


async def peak_mb_while(coro):
    """The most memory Python held (tracemalloc) while `coro` ran, in MB, and its result."""
    tracemalloc.start()
    try:
        result = await coro
        return tracemalloc.get_traced_memory()[1] / MB, result
    finally:
        tracemalloc.stop()


async def test_a_200_mb_body_is_cut_at_the_cap_with_bounded_memory(fetcher, server):
    peak, result = await peak_mb_while(fetch(fetcher, server.url("/huge?mb=200")))
    assert result.status == "error" and result.body is None
    assert "larger than the 2 MB limit" in result.error and "max_feed_bytes" in result.error
    assert peak < 12  # the server streams 200 MB; we may hold only the 2 MB cap and a few chunks


async def test_a_declared_oversize_body_is_refused_before_reading(fetcher, server):
    result = await fetch(fetcher, server.url("/huge-declared?mb=50"))
    assert result.status == "error" and "larger than the 2 MB limit" in result.error


@pytest.mark.parametrize("members", ["0", "1"])
async def test_a_gzip_bomb_is_cut_at_the_cap(fetcher, server, members):
    peak, result = await peak_mb_while(fetch(fetcher, server.url(f"/gzip-bomb?mb=1024&members={members}")))
    assert result.status == "error" and "larger than the 2 MB limit" in result.error
    assert peak < 12  # 1 GB once inflated: cut at the 2 MB cap, inflated 1 MB at a time


def test_inflater_never_produces_much_more_than_allowed():
    bomb = zlib.compress(b"\0" * (64 * MB), 9)
    pieces = _Inflater("deflate").feed(bomb, 1000)
    assert 1000 < sum(map(len, pieces)) <= 1001


async def test_a_slow_drip_body_hits_the_total_timeout(polling, server):
    config = replace(polling, timeout_seconds=0.6)
    async with make_session(config) as session:
        result = await Fetcher(session, config).fetch(
            server.url("/slow-drip?delay=0.2&chunks=50"), max_bytes=MB
        )
    assert result.status == "error"
    assert "no complete answer within 0.6 s" in result.error and "polling.timeout_seconds" in result.error


async def test_a_server_that_never_answers_hits_the_timeout(polling, server):
    config = replace(polling, timeout_seconds=0.5)
    async with make_session(config) as session:
        result = await Fetcher(session, config).fetch(server.url("/slow-headers?delay=30"), max_bytes=MB)
    assert result.status == "error" and "too slow or stalled" in result.error


async def test_redirects_are_followed_up_to_the_limit(fetcher, server):
    ok = await fetch(fetcher, server.url("/redirect/2"))
    assert ok.status == "ok" and ok.url.endswith("/files/koreaboo-style-v-iu.xml")
    too_many = await fetch(fetcher, server.url("/redirect/4"))
    assert too_many.status == "error" and "more than 3 times" in too_many.error
    assert server.hits["/redirect/0"] == 1  # hop 1..3 followed, then stopped; never reached the feed


async def test_where_permanent_redirects_lead_is_reported_as_a_move(fetcher, server):
    server.set_feed("feed", wordpress_feed(1, prefix="mv"))
    feed = server.url("/dyn/feed")
    server.set_redirect("b", "/dyn/feed", 308)
    server.set_redirect("a", "/moved/b", 301)
    both = await fetch(fetcher, server.url("/moved/a"))  # 301 then 308: moved for good, all the way
    assert both.status == "ok" and both.url == feed and both.moved_to == feed
    server.set_redirect("b", "/dyn/feed", 302)
    half = await fetch(fetcher, server.url("/moved/a"))  # 301 then 302: moved to b, which is away for now
    assert half.url == feed and half.moved_to == server.url("/moved/b")
    server.set_redirect("a", "/moved/b", 307)
    server.set_redirect("b", "/dyn/feed", 301)
    later = await fetch(fetcher, server.url("/moved/a"))  # the first answer was temporary: no move
    assert later.url == feed and later.moved_to is None
    assert (await fetch(fetcher, feed)).moved_to is None


async def test_a_redirect_loop_is_named(fetcher, server):
    result = await fetch(fetcher, server.url("/loop/a"))
    assert result.status == "error" and "redirects in a loop" in result.error
    assert "/loop/a -> " in result.error and "/loop/b" in result.error


async def test_a_redirect_to_a_file_url_is_refused(fetcher, server):
    result = await fetch(fetcher, server.url("/redirect-to?url=file:///etc/passwd"))
    assert result.status == "error" and "not an http(s) URL; refused" in result.error


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (404, "404 Not Found: check the URL"),
        (500, "500 Internal Server Error: a problem on the site's side; will retry later"),
        (403, "403 Forbidden: the site refuses the bot"),
    ],
)
async def test_error_statuses_say_what_to_do(fetcher, server, code, words):
    result = await fetch(fetcher, server.url(f"/status/{code}"))
    assert result.status == "error" and result.http_status == code
    assert words in result.error and not result.gone and result.retry_after is None


async def test_410_gone_is_flagged(fetcher, server):
    result = await fetch(fetcher, server.url("/status/410"))
    assert result.gone and "410 Gone" in result.error and "re-add it" in result.error


async def test_429_and_503_carry_retry_after_in_seconds_or_as_a_date(fetcher, server):
    limited = await fetch(fetcher, server.url("/status/429?retry_after=120"))
    assert limited.retry_after == 120 and "rate-limiting" in limited.error and "120 s" in limited.error
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=600), usegmt=True)
    busy = await fetch(fetcher, server.url(f"/status/503?retry_after={when}"))
    assert 590 <= busy.retry_after <= 601
    plain = await fetch(fetcher, server.url("/status/503"))
    assert plain.retry_after is None and "will retry later" in plain.error


def test_parse_retry_after_edge_cases():
    now = datetime(2024, 1, 30, tzinfo=UTC)
    assert parse_retry_after("0") == 0
    assert parse_retry_after("  30 ") == 30
    assert parse_retry_after("Tue, 30 Jan 2024 00:01:00 GMT", now=now) == 60
    assert parse_retry_after("Mon, 29 Jan 2024 00:00:00 GMT", now=now) == 0  # in the past: now
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("99999999999") == 7 * 24 * 3600


async def test_connection_problems_are_sentences(fetcher, server, unused_tcp_port):
    refused = await fetch(fetcher, f"http://127.0.0.1:{unused_tcp_port}/feed")
    assert refused.status == "error" and f"cannot connect to 127.0.0.1:{unused_tcp_port}" in refused.error
    reset = await fetch(fetcher, server.url("/reset"))
    assert reset.status == "error" and "closed the connection" in reset.error
    dns = await fetch(fetcher, "http://no-such-host.invalid/feed")
    assert dns.status == "error" and "not found (DNS)" in dns.error
    bad = await fetch(fetcher, "http://exa mple.com:99999/")
    assert bad.status == "error" and bad.error


async def test_html_is_returned_as_is_for_the_parser_to_judge(fetcher, server):
    result = await fetch(fetcher, server.url("/html"))
    assert result.status == "ok" and result.content_type.startswith("text/html")


async def test_local_files_are_read_with_the_cap_and_a_validator(fetcher, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_bytes(FIXTURE_BYTES)
    first = await fetch(fetcher, str(path))
    assert first.status == "ok" and first.body == FIXTURE_BYTES
    again = await fetch(fetcher, path.as_uri(), etag=first.etag)
    assert again.status == "not_modified"
    small = await fetch(fetcher, str(path), max_bytes=100)
    assert small.status == "error" and "larger than the 100 bytes limit" in small.error
    missing = await fetch(fetcher, str(tmp_path / "nope.xml"))
    assert missing.status == "error" and "not found" in missing.error
    folder = await fetch(fetcher, str(tmp_path))
    assert "is a folder" in folder.error
    guarded = await fetch(fetcher, str(path), allow_private=False)
    assert guarded.status == "error" and "only the operator's configured sources" in guarded.error


async def test_per_host_concurrency_is_respected(polling, server):
    config = replace(polling, per_host_concurrency=2, concurrency=10)
    server.latency = 0.1
    url = server.set_feed("a", wordpress_feed(1))
    async with make_session(config) as session:
        fetcher = Fetcher(session, config)
        results = await asyncio.gather(*(fetcher.fetch(url, max_bytes=MB) for _ in range(8)))
    assert all(r.status == "ok" for r in results)
    assert server.hits["/dyn/a"] == 8 and server.peak_in_flight == 2


async def test_global_concurrency_is_respected_across_hosts(polling, server):
    config = replace(polling, per_host_concurrency=4, concurrency=3)
    server.latency = 0.1
    url = server.set_feed("a", wordpress_feed(1))
    hosts = [url, url.replace("127.0.0.1", "localhost")]  # two host keys, one server
    async with make_session(config) as session:
        fetcher = Fetcher(session, config)
        results = await asyncio.gather(*(fetcher.fetch(hosts[i % 2], max_bytes=MB) for i in range(8)))
    assert all(r.status == "ok" for r in results)
    assert server.peak_in_flight == 3


async def test_page_fetcher_decodes_html_and_refuses_what_is_not(fetcher, server):
    fetch_page = make_page_fetcher(fetcher, allow_private=True)
    url = server.set_page("a", "<html><head><meta property='og:image' content='x.jpg'></head>아이유</html>")
    assert "아이유" in await fetch_page(url)
    assert await fetch_page(server.url("/status/404")) is None
    assert await fetch_page(server.url("/files/koreaboo-style-v-iu.xml")) is None  # a feed, not a page
    assert await fetch_page("/etc/passwd") is None
    guarded = make_page_fetcher(fetcher, allow_private=False)
    assert await guarded(url) is None


def test_decode_html_prefers_bom_then_header_then_meta():
    assert decode_html("é".encode("cp1252"), "text/html; charset=windows-1252") == "é"
    assert decode_html(b'<meta charset="iso-8859-1">\xe9', None).endswith("é")
    assert decode_html("\ufeffé".encode(), "text/html; charset=latin-1") == "é"
    assert decode_html(b"\xff\xff", "text/html; charset=bogus") == "\ufffd\ufffd"  # unknown: UTF-8
