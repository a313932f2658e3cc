"""A real HTTP server on loopback that behaves like feed sites do, good and bad. Reuse it in any test.

    from tests.support.feed_server import FeedServer, feed_server  # `feed_server` is a pytest fixture

    async def test_something(feed_server: FeedServer):
        feed_server.set_feed("koreaboo", koreaboo_bytes)          # served at /dyn/koreaboo with ETag + Last-Modified
        url = feed_server.url("/dyn/koreaboo")
        ...
        assert feed_server.hits["/dyn/koreaboo"] == 1             # requests per path (query string excluded)
        assert feed_server.requests[-1].headers["If-None-Match"]  # every request's headers are kept

Routes (all GET):
  /files/{name}            a file from tests/fixtures/feeds/ (or pages/, or fixtures/), with ETag/Last-Modified
                           and 304 on If-None-Match / If-Modified-Since
  /dyn/{name}              a body registered with set_feed(name, bytes, ...): 304 handling as above unless
                           validators=False (then no ETag/Last-Modified at all); set_feed again to change it;
                           set_status(name, 410) makes it answer that status instead, set_status(name, None) undoes it
  /pages/{name}            an HTML page registered with set_page(name, html) (article pages for enrichment)
  /hang/{name}             accepts the request and never answers (for `hang_seconds`, an hour by default): an
                           article page whose site has stalled
  /status/{code}           answers that status; ?retry_after=120 or an HTTP date adds Retry-After
  /flaky/{name}            answers ?code= (default 500) the first ?fail= (default 1) times, then serves /dyn/{name}
  /redirect/{n}?to=PATH    n redirects (302) in a chain, then to PATH (default /files/koreaboo-style-v-iu.xml)
  /redirect-to?url=URL     one 302 to any URL (e.g. a private address, or file:///etc/passwd)
  /moved/{name}            the redirect registered with set_redirect(name, to, status) (301, 302, 307, 308...);
                           without one (or after set_redirect(name, None)) the feed set_feed(name, ...) as /dyn/
  /loop/a, /loop/b         a redirect loop
  /slow-headers?delay=S    waits S seconds before answering
  /slow-drip?delay=S&chunks=N   a 200 whose body trickles out, one small chunk every S seconds
  /huge?mb=N               N MB streamed, no Content-Length (a 200 MB body by default)
  /huge-declared?mb=N      the same with an honest Content-Length
  /gzip-bomb?mb=N          Content-Encoding: gzip that inflates to N MB (1024 by default), compressed on the fly;
                           &members=1 sends it as N one-MB gzip members back to back
  /deflate                 a feed with Content-Encoding: deflate (zlib-wrapped); ?raw=1 for raw deflate
  /gzip                    a feed with Content-Encoding: gzip
  /html                    an HTML home page served as text/html where a feed was expected
  /wrong-encoding          a UTF-8 feed whose HTTP header and XML prolog both claim ISO-8859-1
  /empty                   200 with an empty body
  /reset                   closes the connection without answering
  /stats                   {"hits": {path: n}, "peak_in_flight": n} as JSON (for a server in another process)

Knobs: `latency` (seconds added to every request), `hits` (Counter by path), `requests` (the last 1000
aiohttp requests' method/path/headers as RequestRecord), `in_flight` / `peak_in_flight` (requests being
answered at once, now and at most), `hit_times` (path -> the unix time of each request), `reset_counters()`.
`FeedServer(host=..., extra_hosts=[...])` listens on several loopback addresses at once (127.0.0.2 ... are all
loopback on Linux), which bench/bench_ingest.py uses to look like many hosts.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

try:
    import pytest_asyncio
except ImportError:  # bench/ scripts use the server without the test extras
    pytest_asyncio = None  # type: ignore[assignment]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_DIRS = (FIXTURES / "feeds", FIXTURES / "pages", FIXTURES)

HTML_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Koreaboo - K-pop news</title></head>
<body><header><nav><a href="/">Home</a></nav></header><main><h1>Latest</h1><p>No feed here.</p></main></body></html>
"""


@dataclass
class Served:
    body: bytes
    content_type: str = "application/rss+xml; charset=UTF-8"
    validators: bool = True
    etag: str = ""
    last_modified: str = ""

    def __post_init__(self) -> None:
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'
        if not self.last_modified:
            self.last_modified = email.utils.formatdate(time.time(), usegmt=True)


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)


def rss(
    items: list[dict[str, str]], *, title: str = "Test Feed", link: str = "https://example.com/"
) -> bytes:
    """A WordPress-shaped RSS 2.0 document; each item may give title, link, guid, description, content, pubDate,
    categories (comma-separated)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:media="http://search.yahoo.com/mrss/"><channel>',
        f"<title>{title}</title><link>{link}</link><description>K-pop news</description>",
    ]
    for item in items:
        parts.append("<item>")
        parts.append(f"<title>{item.get('title', 'Untitled')}</title>")
        if "link" in item:
            parts.append(f"<link>{item['link']}</link>")
        if "guid" in item:
            parts.append(f'<guid isPermaLink="false">{item["guid"]}</guid>')
        parts.append(f"<pubDate>{item.get('pubDate', 'Tue, 30 Jan 2024 02:58:11 +0000')}</pubDate>")
        parts.append("<dc:creator><![CDATA[Staff Writer]]></dc:creator>")
        for category in filter(None, item.get("categories", "").split(",")):
            parts.append(f"<category><![CDATA[{category.strip()}]]></category>")
        parts.append(f"<description><![CDATA[{item.get('description', '')}]]></description>")
        if "content" in item:
            parts.append(f"<content:encoded><![CDATA[{item['content']}]]></content:encoded>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


_LOREM = (
    "The group shared the news with fans during a live broadcast, and the clip quickly spread online. "
    "Fans praised the members for their sincerity and their vocals, and the comeback stage drew record views. "
)


def wordpress_feed(
    n_items: int,
    *,
    prefix: str = "story",
    site: str = "https://news.example.com",
    title: str = "Example K-pop News",
    body_bytes: int = 2000,
    published: str | None = None,
) -> bytes:
    """A realistic WordPress feed with n_items items (unique guids and links per prefix), each with a ~body_bytes
    content:encoded body: what a busy K-pop site publishes. 20 items at the default size make ~50 KB. `published`
    (an RFC 822 date) dates every item; else the fixtures' date, long past."""
    items = []
    paragraph = f"<p>{_LOREM}</p>"
    content = paragraph * max(1, body_bytes // len(paragraph))
    for i in range(n_items):
        slug = f"{prefix}-{i}"
        items.append(
            {
                "title": f"BTS&#8217;s V and IU story {slug} &#8212; fans react",
                "link": f"{site}/news/{slug}/",
                "guid": f"{site}/?p={prefix}-{i}",  # the dash: f1 + "10" and f11 + "0" must differ
                "description": f"An excerpt about {slug}, ending the WordPress way [&#8230;]",
                "content": f"<p>BTS&#8217;s V and IU in {slug}.</p>{content}",
                "categories": "News,BTS,IU",
                **({"pubDate": published} if published else {}),
            }
        )
    return rss(items, title=title, link=site + "/")


class FeedServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, extra_hosts: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port
        self.extra_hosts = extra_hosts
        self.latency = 0.0
        self.hits: Counter[str] = Counter()
        self.hit_times: defaultdict[str, list[float]] = defaultdict(
            list
        )  # path -> when each request came (unix)
        self.in_flight = 0  # requests being answered right now, and the most there ever were at once
        self.peak_in_flight = 0
        self.requests: list[RequestRecord] = []
        self.feeds: dict[str, Served] = {}
        self.pages: dict[str, str] = {}
        self.redirects: dict[str, tuple[int, str]] = {}
        self.statuses: dict[str, int] = {}
        self.hang_seconds = 3600.0  # how long /hang/{name} keeps a request waiting
        self._runner: web.AppRunner | None = None
        self._flaky_left: dict[str, int] = {}

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> FeedServer:
        app = web.Application(middlewares=[self._count, self._client_gone])
        app.router.add_get("/files/{name}", self._files)
        app.router.add_get("/dyn/{name}", self._dyn)
        app.router.add_get("/pages/{name}", self._page)
        app.router.add_get("/hang/{name}", self._hang)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/flaky/{name}", self._flaky)
        app.router.add_get("/redirect/{n}", self._redirect_chain)
        app.router.add_get("/redirect-to", self._redirect_to)
        app.router.add_get("/moved/{name}", self._moved)
        app.router.add_get("/loop/{side}", self._loop)
        app.router.add_get("/slow-headers", self._slow_headers)
        app.router.add_get("/slow-drip", self._slow_drip)
        app.router.add_get("/huge", self._huge)
        app.router.add_get("/huge-declared", self._huge_declared)
        app.router.add_get("/gzip-bomb", self._gzip_bomb)
        app.router.add_get("/gzip", self._gzip)
        app.router.add_get("/deflate", self._deflate)
        app.router.add_get("/html", self._html)
        app.router.add_get("/wrong-encoding", self._wrong_encoding)
        app.router.add_get("/empty", self._empty)
        app.router.add_get("/reset", self._reset)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        for extra in self.extra_hosts:
            await web.TCPSite(self._runner, extra, self.port).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FeedServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- helpers for tests ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def set_feed(
        self,
        name: str,
        body: bytes,
        *,
        content_type: str = "application/rss+xml; charset=UTF-8",
        validators: bool = True,
    ) -> str:
        """Serve `body` at /dyn/{name} (replacing what was there); returns the full URL."""
        self.feeds[name] = Served(body, content_type, validators)
        return self.url(f"/dyn/{name}")

    def set_status(self, name: str, status: int | None) -> None:
        """Make /dyn/{name} (and /moved/{name} without a redirect) answer `status`; None: serve the feed again."""
        if status is None:
            self.statuses.pop(name, None)
        else:
            self.statuses[name] = status

    def set_redirect(self, name: str, to: str | None, status: int = 301) -> str:
        """Make /moved/{name} answer `status` with Location `to` (a path or a URL); None: serve the feed `name`
        there instead. Returns the full URL of /moved/{name}."""
        if to is None:
            self.redirects.pop(name, None)
        else:
            self.redirects[name] = (status, to)
        return self.url(f"/moved/{name}")

    def set_page(self, name: str, html: str) -> str:
        self.pages[name] = html
        return self.url(f"/pages/{name}")

    def reset_counters(self) -> None:
        self.hits.clear()
        self.hit_times.clear()
        self.requests.clear()
        self.peak_in_flight = self.in_flight

    # --- middleware and handlers ------------------------------------------------------------------------

    @web.middleware
    async def _count(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.hits[request.path] += 1
        self.hit_times[request.path].append(time.time())
        self.requests.append(
            RequestRecord(request.method, request.path, request.query_string, dict(request.headers))
        )
        del self.requests[:-1000]
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return await handler(request)
        finally:
            self.in_flight -= 1

    @web.middleware
    async def _client_gone(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """A client that hangs up mid-body (it hit its size cap or timeout) is expected here, not an error."""
        try:
            return await handler(request)
        except ConnectionResetError:
            return web.Response(status=499)  # never sent: the connection is gone

    @staticmethod
    def _conditional(request: web.Request, served: Served) -> web.StreamResponse:
        if served.validators:
            if request.headers.get("If-None-Match") == served.etag:
                return web.Response(status=304, headers={"ETag": served.etag})
            if (
                "If-None-Match" not in request.headers
                and request.headers.get("If-Modified-Since") == served.last_modified
            ):
                return web.Response(status=304, headers={"Last-Modified": served.last_modified})
            headers = {"ETag": served.etag, "Last-Modified": served.last_modified}
        else:
            headers = {}
        return web.Response(body=served.body, headers=headers | {"Content-Type": served.content_type})

    async def _files(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        for folder in FIXTURE_DIRS:
            path = folder / name
            if "/" not in name and path.is_file():
                served = self.feeds.get(f"file:{name}")
                body = path.read_bytes()
                if served is None or served.body != body:
                    kind = (
                        "text/html; charset=UTF-8"
                        if name.endswith(".html")
                        else "application/rss+xml; charset=UTF-8"
                    )
                    served = self.feeds[f"file:{name}"] = Served(body, kind)
                return self._conditional(request, served)
        raise web.HTTPNotFound(text=f"no fixture {name}")

    async def _dyn(self, request: web.Request) -> web.StreamResponse:
        status = self.statuses.get(request.match_info["name"])
        if status is not None:
            return web.Response(status=status, text=f"status {status}")
        served = self.feeds.get(request.match_info["name"])
        if served is None:
            raise web.HTTPNotFound(text="no such feed")
        return self._conditional(request, served)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        html = self.pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound(text="no such page")
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(self.hang_seconds)  # the client gives up first; handler_cancellation ends this
        return web.Response(status=504, text="gave up")

    async def _status(self, request: web.Request) -> web.StreamResponse:
        code = int(request.match_info["code"])
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=code, text=f"status {code}", headers=headers)

    async def _flaky(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        left = self._flaky_left.setdefault(name, int(request.query.get("fail", "1")))
        if left > 0:
            self._flaky_left[name] = left - 1
            return web.Response(status=int(request.query.get("code", "500")), text="try again")
        return await self._dyn(request)

    async def _redirect_chain(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        to = request.query.get("to", "/files/koreaboo-style-v-iu.xml")
        if n <= 0:
            raise web.HTTPFound(to)
        raise web.HTTPFound(f"/redirect/{n - 1}?to={to}")

    async def _redirect_to(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["url"])

    async def _moved(self, request: web.Request) -> web.StreamResponse:
        redirect = self.redirects.get(request.match_info["name"])
        if redirect is None:
            return await self._dyn(request)
        status, to = redirect
        return web.Response(status=status, headers={"Location": to}, text=f"moved ({status})")

    async def _loop(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/loop/b" if request.match_info["side"] == "a" else "/loop/a")

    async def _slow_headers(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("delay", "30")))
        return web.Response(body=wordpress_feed(1), content_type="application/rss+xml")

    async def _slow_drip(self, request: web.Request) -> web.StreamResponse:
        delay = float(request.query.get("delay", "1"))
        chunks = int(request.query.get("chunks", "60"))
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        await response.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>slow</title>')
        for _ in range(chunks):
            await asyncio.sleep(delay)
            await response.write(b"<!-- . -->")
        await response.write(b"</channel></rss>")
        return response

    async def _stream_junk(self, request: web.Request, mb: int, declared: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        if declared:
            response.content_length = mb * 1024 * 1024
        await response.prepare(request)
        block = b"<!-- padding padding padding -->" * 2048  # 64 KB
        for _ in range(mb * 16):
            await response.write(block)
        await response.write_eof()
        return response

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        return await self._stream_junk(request, int(request.query.get("mb", "200")), declared=False)

    async def _huge_declared(self, request: web.Request) -> web.StreamResponse:
        return await self._stream_junk(request, int(request.query.get("mb", "200")), declared=True)

    async def _gzip_bomb(self, request: web.Request) -> web.StreamResponse:
        mb = int(request.query.get("mb", "1024"))
        members = request.query.get("members") == "1"  # one gzip member per MB (also valid gzip)
        response = web.StreamResponse(
            headers={"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
        )
        await response.prepare(request)
        zeros = b"\0" * (1024 * 1024)
        if members:
            member = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            one = member.compress(zeros) + member.flush()
            for _ in range(mb):
                await response.write(one)
        else:
            compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            await response.write(compressor.compress(b'<?xml version="1.0"?><rss><channel><title>'))
            for _ in range(mb):
                piece = compressor.compress(zeros)
                if piece:
                    await response.write(piece)
                await asyncio.sleep(0)  # compressing is CPU work: let the client (same loop in tests) run
            await response.write(compressor.flush())
        await response.write_eof()
        return response

    async def _gzip(self, request: web.Request) -> web.StreamResponse:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        body = compressor.compress(wordpress_feed(3, prefix="gz")) + compressor.flush()
        return web.Response(
            body=body, headers={"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
        )

    async def _deflate(self, request: web.Request) -> web.StreamResponse:
        wbits = -zlib.MAX_WBITS if request.query.get("raw") else zlib.MAX_WBITS
        compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
        body = compressor.compress(wordpress_feed(3, prefix="df")) + compressor.flush()
        return web.Response(
            body=body, headers={"Content-Type": "application/rss+xml", "Content-Encoding": "deflate"}
        )

    async def _html(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=HTML_PAGE, content_type="text/html", charset="utf-8")

    async def _wrong_encoding(self, request: web.Request) -> web.StreamResponse:
        body = rss(
            [{"title": "IU’s “Love wins all” — 아이유", "link": "https://example.com/iu/", "guid": "iu-1"}]
        ).replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"')
        return web.Response(body=body, headers={"Content-Type": "application/rss+xml; charset=ISO-8859-1"})

    async def _empty(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"", content_type="application/rss+xml")

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"hits": dict(self.hits), "peak_in_flight": self.peak_in_flight})

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=500)  # never reaches the client


async def _feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


feed_server = pytest_asyncio.fixture(_feed_server) if pytest_asyncio is not None else None
