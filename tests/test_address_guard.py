"""Feeds added from Discord may not reach private networks: addresses, names, redirects, DNS rebinding."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest
from aiohttp.abc import AbstractResolver

from bot import address_guard
from bot.address_guard import UnsafeAddress, address_problem, check_public_url, is_public_address
from bot.config import PollingConfig
from bot.fetch import Fetcher, make_page_fetcher, make_session
from tests.support.feed_server import FeedServer

FEED = "/files/koreaboo-style-v-iu.xml"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("fd00::1", "unique local"),
        ("fc00::1", "unique local"),
        ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1, a loopback"),
        ("::ffff:10.0.0.1", "IPv6 form of 10.0.0.1, a private"),
        ("64:ff9b::a9fe:a9fe", "IPv6 form of 169.254.169.254"),  # NAT64
        ("2002:7f00:1::", "IPv6 form of 127.0.0.1"),  # 6to4
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "address"),  # reserved (class E)
        ("198.18.0.1", "benchmarking"),
    ],
)
def test_non_public_addresses_are_named(address, kind):
    problem = address_problem(address)
    assert problem is not None and kind in problem and problem.startswith(address)
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "151.101.1.69"])
def test_public_addresses_pass(address):
    assert address_problem(address) is None and is_public_address(address)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1/feed", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8080/feed", "::1 is a loopback address"),
        ("https://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fd00::1]/", "unique local"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1, a loopback"),
        ("http://localhost:8080/feed", "localhost resolves to"),  # a host name resolving to loopback
        ("http://127.1/", "resolves to 127.0.0.1"),  # legacy short form, as libc reads it
        ("http://2130706433/", "resolves to 127.0.0.1"),  # 127.0.0.1 as one number
        ("ftp://example.com/feed", "not an http(s) URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("http:///feed", "names no host"),
    ],
)
async def test_check_public_url_refuses(url, words):
    with pytest.raises(UnsafeAddress) as caught:
        await check_public_url(url)
    assert words in caught.value.reason


async def test_check_public_url_checks_every_resolved_address(monkeypatch):
    loop = asyncio.get_running_loop()

    async def fake_getaddrinfo(host, port, **kw):  # DNS cannot run here: answer as a public name would
        answers = {
            "news.example": ["93.184.216.34", "2606:2800:220:1::1"],
            "mixed.example": ["93.184.216.34", "10.0.0.7"],
        }
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    await check_public_url("https://news.example/feed")  # all public: no exception
    with pytest.raises(UnsafeAddress, match="mixed.example resolves to 10.0.0.7, a private address"):
        await check_public_url("https://mixed.example/feed")


@pytest.fixture
async def server():
    async with FeedServer(extra_hosts=("127.0.0.2",)) as running:
        yield running


class FixedResolver(AbstractResolver):
    """DNS for made-up names (no DNS here): every name resolves to one fixed address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.calls = 0

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.calls += 1
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


def config() -> PollingConfig:
    return replace(PollingConfig(), timeout_seconds=5.0)


async def test_guild_feeds_cannot_reach_loopback_but_operator_feeds_can(server):
    async with make_session(config()) as session:
        fetcher = Fetcher(session, config())
        guarded = await fetcher.fetch(server.url(FEED), max_bytes=1 << 20, allow_private=False)
        assert guarded.status == "error"
        assert "127.0.0.1 is a loopback address" in guarded.error
        assert "may only reach public internet addresses" in guarded.error
        assert server.hits[FEED] == 0  # refused before any request was sent
        operator = await fetcher.fetch(server.url(FEED), max_bytes=1 << 20, allow_private=True)
        assert operator.status == "ok"


async def test_a_redirect_from_a_public_looking_host_to_a_private_one_is_refused(server, monkeypatch):
    real_kind = address_guard.address_kind
    # 127.0.0.2 stands in for a public web server (there is no internet here); 127.0.0.1 stays private.
    monkeypatch.setattr(
        address_guard, "address_kind", lambda a: None if str(a) == "127.0.0.2" else real_kind(a)
    )
    start = server.url(f"/redirect-to?url={server.url(FEED)}", host="127.0.0.2")
    async with make_session(config()) as session:
        fetcher = Fetcher(session, config())
        result = await fetcher.fetch(start, max_bytes=1 << 20, allow_private=False)
    assert server.hits["/redirect-to"] == 1  # the public hop was made
    assert server.hits[FEED] == 0  # the private one never was
    assert result.status == "error" and "127.0.0.1 is a loopback address" in result.error


async def test_dns_rebinding_is_caught_at_connect_time(server, monkeypatch):
    loop = asyncio.get_running_loop()

    async def says_public(host, port, **kw):  # the check sees a public answer...
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(loop, "getaddrinfo", says_public)
    rebinding = FixedResolver("127.0.0.1")  # ...and the connection a private one
    url = f"http://rebind.example:{server.port}{FEED}"
    async with make_session(config(), resolver=rebinding) as session:
        fetcher = Fetcher(session, config())
        result = await fetcher.fetch(url, max_bytes=1 << 20, allow_private=False)
        assert result.status == "error"
        assert (
            "rebind.example resolves to 127.0.0.1, a loopback address (seen at connect time)" in result.error
        )
        assert server.hits[FEED] == 0
        # The same name for an operator source connects (operators may point anywhere).
        operator = await fetcher.fetch(url, max_bytes=1 << 20, allow_private=True)
        assert operator.status == "ok"
        # Now a kept-alive connection to 127.0.0.1 is pooled for that name: a guarded request must not use it.
        again = await fetcher.fetch(url, max_bytes=1 << 20, allow_private=False)
        assert again.status == "error" and "127.0.0.1" in again.error
        assert server.hits[FEED] <= 2  # at most the operator's and the refused one: no body read for it


async def test_article_pages_of_guild_feeds_are_guarded_too(server):
    async with make_session(config()) as session:
        fetcher = Fetcher(session, config())
        page = server.set_page("p", "<html><body>page</body></html>")
        assert await make_page_fetcher(fetcher, allow_private=False)(page) is None
        assert server.hits["/pages/p"] == 0
        assert await make_page_fetcher(fetcher, allow_private=True)(page) == "<html><body>page</body></html>"
