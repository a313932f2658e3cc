"""HTTP for feeds and article pages: one shared aiohttp session, conditional requests, hard limits.

Every limit is enforced while the bytes arrive: the body cap counts both the bytes on the wire and the bytes
after decompression (we inflate gzip/deflate ourselves, in bounded steps, so a gzip bomb is cut at the cap),
redirects are followed by hand so each hop is checked, and a whole fetch has one deadline so a server that
drips a byte a second is cut off too. Problems come back as a `FetchResult` with an `error` sentence a person
can act on; `fetch` raises only for programming errors.
"""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import hashlib
import http
import logging
import re
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from bot import USER_AGENT
from bot.address_guard import (
    GuardedResolver,
    UnsafeAddress,
    check_public_url,
    peer_problem,
    pooled_private_problem,
    public_only,
)
from bot.config import PollingConfig

log = logging.getLogger(__name__)
_E = TypeVar("_E", bound=BaseException)

ACCEPT_FEED = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, application/xml;q=0.9, "
    "text/xml;q=0.9, */*;q=0.5"
)
ACCEPT_PAGE = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
ACCEPT_ENCODING = "gzip, deflate"  # only what _Inflater decodes
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})  # the address moved for good; 302/303/307 are for now only
MAX_RETRY_AFTER = 7 * 24 * 3600.0  # a Retry-After further away than a week is a misconfigured server
_READ_CHUNK = 64 * 1024
_INFLATE_STEP = (
    1024 * 1024
)  # bytes inflated per zlib call: keeps each call short, so the loop stays responsive

FetchStatus = Literal["ok", "not_modified", "error"]
PageFetcher = Callable[[str], Awaitable[str | None]]


@dataclass
class FetchResult:
    url: str  # the final URL, after redirects
    status: FetchStatus
    http_status: int | None = None
    body: bytes | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    error: str | None = None  # a sentence a person can act on; None unless status == "error"
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After header
    gone: bool = False  # 410: the feed was removed
    moved_to: str | None = (
        None  # where the first answers' permanent redirects (301/308) led; None: no such move
    )
    elapsed: float = 0.0
    unreachable: bool = False  # no answer at all: timed out, refused, reset, DNS (not an HTTP status)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class _Redirect:
    target: URL
    permanent: bool


class FetchError(Exception):
    """A fetch that cannot finish; carries the FetchResult fields that explain why."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        gone: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after
        self.gone = gone
        self.unreachable = unreachable


class PageUnreachable(Exception):
    """An article page's host did not answer usefully (no answer in time, refused, 5xx, 429): what
    bot.article_pages counts towards the host's breaker, unlike a page that is merely of no use (None)."""


def make_session(config: PollingConfig, *, resolver: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """The one session the bot shares: guarded resolver, no cookies, no proxies from the environment,
    no automatic decompression (we inflate under the size cap). Call it inside the running loop.
    `resolver` is the DNS resolver GuardedResolver wraps (default: aiohttp's)."""
    connector = aiohttp.TCPConnector(
        limit=max(64, config.concurrency * 2),
        limit_per_host=0,  # Fetcher's per-host slots cover the whole request, body included
        use_dns_cache=False,  # the cache would skip GuardedResolver's per-request filter (see address_guard)
        resolver=GuardedResolver(resolver),
        enable_cleanup_closed=True,
    )
    timeout = aiohttp.ClientTimeout(
        total=None,  # one deadline per fetch, redirects included, is kept by Fetcher
        connect=config.connect_timeout_seconds,
        sock_connect=config.connect_timeout_seconds,
        sock_read=config.timeout_seconds,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class _HostSlots:
    """At most `limit` requests at once per host:port; entries vanish when unused so the map stays small."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._slots.get(key)
        if entry is None:
            entry = self._slots[key] = (asyncio.Semaphore(self._limit), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._slots.pop(key, None)


class Fetcher:
    """Fetches feeds and pages through the shared session, within the polling limits."""

    def __init__(self, session: aiohttp.ClientSession, config: PollingConfig) -> None:
        self.session = session
        self.config = config
        self._global = asyncio.Semaphore(config.concurrency)
        self._hosts = _HostSlots(config.per_host_concurrency)

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        max_bytes: int,
        allow_private: bool = True,
        accept: str = ACCEPT_FEED,
    ) -> FetchResult:
        """GET `url` (or read a local feed file), conditionally when a validator is given."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        final = url
        try:
            if is_local_source(url):
                if not allow_private:
                    raise FetchError(
                        f"{url} is a local file; only the operator's configured sources may read local files"
                    )
                result = await _read_file(url, etag=etag, max_bytes=max_bytes)
            else:
                result = await self._fetch_http(
                    url,
                    etag=etag,
                    last_modified=last_modified,
                    max_bytes=max_bytes,
                    allow_private=allow_private,
                    accept=accept,
                )
        except FetchError as exc:
            result = FetchResult(
                final,
                "error",
                http_status=exc.http_status,
                error=exc.message,
                retry_after=exc.retry_after,
                gone=exc.gone,
                unreachable=exc.unreachable,
            )
        result.elapsed = loop.time() - started
        return result

    async def _fetch_http(
        self,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        max_bytes: int,
        allow_private: bool,
        accept: str,
    ) -> FetchResult:
        try:
            current = URL(url)
        except (ValueError, TypeError):
            raise FetchError(f"{url!r} is not a valid URL") from None
        if current.scheme.lower() not in ("http", "https") or not current.host:
            raise FetchError(f"{url} is not an http(s) URL or a local file path")
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        visited: list[str] = [str(current)]
        moved_to: URL | None = None  # the end of the leading run of permanent redirects
        permanent_run = True
        with public_only(not allow_private):
            for _hop in range(self.config.max_redirects + 1):
                # Host slot first, then a global one: waiting on a busy host never holds a global slot.
                async with self._hosts.hold(_host_key(current)), self._global:
                    if deadline is None:  # the clock starts once we may send, not while queued
                        deadline = loop.time() + self.config.timeout_seconds
                    try:
                        async with asyncio.timeout_at(deadline):
                            outcome = await self._one_hop(
                                current, headers, max_bytes=max_bytes, allow_private=allow_private
                            )
                    except TimeoutError:
                        raise FetchError(
                            f"{current} gave no complete answer within {self.config.timeout_seconds:g} s "
                            "(polling.timeout_seconds): the server is too slow or stalled; will retry later",
                            unreachable=True,
                        ) from None
                if isinstance(outcome, FetchResult):
                    outcome.moved_to = str(moved_to) if moved_to is not None else None
                    return outcome
                target = outcome.target
                permanent_run = permanent_run and outcome.permanent
                if permanent_run:
                    moved_to = target
                if str(target) in visited:
                    loop_text = " -> ".join([*visited[visited.index(str(target)) :], str(target)])
                    raise FetchError(f"{url} redirects in a loop ({loop_text}); fix the URL")
                visited.append(str(target))
                current = target
        raise FetchError(
            f"{url} redirected more than {self.config.max_redirects} times (polling.max_redirects; last: "
            f"{current}); use the final URL"
        )

    async def _one_hop(
        self, current: URL, headers: dict[str, str], *, max_bytes: int, allow_private: bool
    ) -> FetchResult | _Redirect:
        """One request: a FetchResult, or where a redirect points to."""
        try:
            if not allow_private:
                await check_public_url(current)
                pooled = pooled_private_problem(current.raw_host or "", current.port or 0)
                if pooled:
                    raise UnsafeAddress(pooled)
            async with self.session.get(current, headers=headers, allow_redirects=False) as resp:
                if (
                    not allow_private
                    and resp.connection is not None
                    and resp.connection.transport is not None
                ):
                    problem = peer_problem(resp.connection.transport.get_extra_info("peername"))
                    if problem:  # a pooled connection opened for an operator source: never reuse it here
                        resp.connection.transport.close()
                        raise UnsafeAddress(problem)
                return await self._answer(current, resp, max_bytes=max_bytes)
        except FetchError:
            raise
        except UnsafeAddress as exc:
            raise FetchError(_unsafe_text(current, exc)) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            unsafe = _find_cause(exc, UnsafeAddress)
            if unsafe is not None:
                raise FetchError(_unsafe_text(current, unsafe)) from None
            raise FetchError(_network_error_text(current, exc), unreachable=True) from None

    async def _answer(
        self, current: URL, resp: aiohttp.ClientResponse, *, max_bytes: int
    ) -> FetchResult | _Redirect:
        status = resp.status
        if status in REDIRECT_STATUSES:
            location = resp.headers.get("Location", "").strip()
            if not location:
                raise FetchError(
                    f"{current} answered {status} without saying where to go", http_status=status
                )
            try:
                target = current.join(URL(location))
            except (ValueError, TypeError):
                raise FetchError(
                    f"{current} redirects to an invalid address {location[:200]!r}", http_status=status
                ) from None
            if target.scheme.lower() not in ("http", "https") or not target.host:
                raise FetchError(
                    f"{current} redirects to {str(target)[:200]}, which is not an http(s) URL; refused",
                    http_status=status,
                )
            return _Redirect(target.with_fragment(None), permanent=status in PERMANENT_REDIRECTS)
        etag, last_modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        content_type = resp.headers.get("Content-Type")
        if status == 304:
            return FetchResult(
                str(current),
                "not_modified",
                http_status=status,
                etag=etag,
                last_modified=last_modified,
                content_type=content_type,
            )
        if 200 <= status < 300:
            body = await _read_body(resp, current, max_bytes)
            return FetchResult(
                str(current),
                "ok",
                body=body,
                http_status=status,
                etag=etag,
                last_modified=last_modified,
                content_type=content_type,
            )
        raise _status_error(current, status, resp.headers.get("Retry-After"))


def is_local_source(url: str) -> bool:
    """A file:// URL or a plain path (the contract lets operator sources be local feed files)."""
    text = url.strip()
    if text.lower().startswith("file:"):
        return True
    return "://" not in text and not text.lower().startswith(("http:", "https:"))


def local_path(url: str) -> Path:
    text = url.strip()
    if text.lower().startswith("file:"):
        parsed = URL(text)
        if parsed.host not in (None, "", "localhost"):
            raise FetchError(f"{url}: file URLs on another host are not supported; use a local path")
        return Path(parsed.path)
    return Path(text).expanduser()


async def _read_file(url: str, *, etag: str | None, max_bytes: int) -> FetchResult:
    path = local_path(url)

    def read() -> FetchResult:  # in a thread: disk reads never block the loop
        try:
            stat = path.stat()
            validator = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'  # changes whenever the file is rewritten
            if etag is not None and etag == validator:
                return FetchResult(str(path), "not_modified", etag=validator)
            if stat.st_size > max_bytes:
                raise FetchError(_too_large_text(str(path), max_bytes))
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise FetchError(f"file {path} not found; check the path") from None
        except IsADirectoryError:
            raise FetchError(f"{path} is a folder, not a feed file") from None
        except PermissionError:
            raise FetchError(f"file {path} cannot be read (permission denied)") from None
        except OSError as exc:
            raise FetchError(f"file {path} cannot be read: {exc.strerror or exc}") from None
        if len(data) > max_bytes:
            raise FetchError(_too_large_text(str(path), max_bytes))
        modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        return FetchResult(str(path), "ok", body=data, etag=validator, last_modified=modified)

    return await asyncio.to_thread(read)


async def _read_body(resp: aiohttp.ClientResponse, url: URL, max_bytes: int) -> bytes:
    """The body, decoded from gzip/deflate, never holding more than about max_bytes (+ one chunk)."""
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    inflater: _Inflater | None = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = _Inflater(encoding)
    elif encoding not in ("", "identity"):
        raise FetchError(
            f"{url} sent its answer with content encoding {encoding!r}, which the bot did not ask for "
            "and cannot read"
        )
    elif resp.content_length is not None and resp.content_length > max_bytes:
        raise FetchError(_too_large_text(str(url), max_bytes))  # said so up front: not a byte read
    body = bytearray()
    wire = 0
    try:
        async for chunk in resp.content.iter_chunked(_READ_CHUNK):
            wire += len(chunk)
            if wire > max_bytes:
                raise FetchError(_too_large_text(str(url), max_bytes))
            if inflater is None:
                body += chunk
            else:
                for piece in inflater.feed(chunk, max_bytes - len(body)):
                    body += piece
                    await asyncio.sleep(0)  # a big inflate yields between steps
            if len(body) > max_bytes:
                raise FetchError(_too_large_text(str(url), max_bytes))
    except zlib.error as exc:
        raise FetchError(f"{url} sent a corrupt {encoding} body ({exc}); will retry later") from None
    if inflater is not None and not inflater.finished:
        log.debug("%s: %s stream ended early; keeping the %d bytes decoded", url, encoding, len(body))
    return bytes(body)


class _Inflater:
    """Incremental gzip/deflate decoding that never produces more than it is allowed to."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._decoder: zlib._Decompress | None = None
        self.finished = False

    def _new_decoder(self, first: bytes) -> zlib._Decompress:
        if self.encoding != "deflate":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped, but some servers send a raw deflate stream.
        if len(first) >= 2 and (first[0] & 0x0F) == 8 and ((first[0] << 8) | first[1]) % 31 == 0:
            return zlib.decompressobj(zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS)

    def feed(self, chunk: bytes, allowed: int) -> list[bytes]:
        """Decode `chunk`; stop (returning more than `allowed` bytes in total) once the cap is passed."""
        pieces: list[bytes] = []
        produced = 0
        data = chunk
        while data:
            if self._decoder is None:
                self._decoder = self._new_decoder(data)
                self.finished = False
            piece = self._decoder.decompress(data, max(1, min(_INFLATE_STEP, allowed - produced + 1)))
            if piece:
                pieces.append(piece)
                produced += len(piece)
                if produced > allowed:
                    return pieces
            if self._decoder.eof:
                self.finished = True
                rest = self._decoder.unused_data
                self._decoder = None
                # gzip may hold several members back to back; trailing NUL padding is not one
                data = rest if self.encoding != "deflate" and rest.strip(b"\0") else b""
            else:
                data = self._decoder.unconsumed_tail
        return pieces


def _host_key(url: URL) -> str:
    return f"{(url.host or '').lower()}:{url.port or ''}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _status_error(url: URL, status: int, retry_after_header: str | None) -> FetchError:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    said = f"{url} answered {status} {phrase}"
    retry_after = parse_retry_after(retry_after_header) if status in (429, 503) else None
    if status == 410:
        return FetchError(
            f"{said}: the site removed it; delete it, or re-add it at its new address if the site moved",
            http_status=status,
            gone=True,
        )
    if status in (429, 503):
        wait = (
            f"retrying after {retry_after:g} s as the server asked"
            if retry_after is not None
            else "will retry later"
        )
        why = "the site is rate-limiting the bot" if status == 429 else "the site is unavailable for now"
        return FetchError(f"{said}: {why}; {wait}", http_status=status, retry_after=retry_after)
    if status == 404:
        return FetchError(f"{said}: check the URL (the site may have moved its feed)", http_status=status)
    if status in (401, 403):
        return FetchError(
            f"{said}: the site refuses the bot; check the URL, or remove the source if it keeps refusing",
            http_status=status,
        )
    if 500 <= status < 600:
        return FetchError(f"{said}: a problem on the site's side; will retry later", http_status=status)
    return FetchError(f"{said}: unexpected answer; check the URL", http_status=status)


def _too_large_text(where: str, max_bytes: int) -> str:
    return (
        f"{where} is larger than the {_size(max_bytes)} limit (polling.max_feed_bytes / max_page_bytes); "
        "it was cut off unread"
    )


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def _unsafe_text(url: URL, exc: UnsafeAddress) -> str:
    return (
        f"{url} refused: {exc.reason}; feeds added from Discord, and the pages they link to, "
        "may only reach public internet addresses"
    )


def _find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, kind):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _network_error_text(url: URL, exc: BaseException) -> str:
    host = url.host or str(url)
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or _find_cause(exc, socket.gaierror) is not None:
        return f"host {host} not found (DNS); check the URL"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"{host} has an invalid TLS certificate ({exc.certificate_error}); the site must fix it"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS with {host} failed ({exc}); will retry later"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error) if exc.os_error else str(exc)
        return f"cannot connect to {host}:{url.port} ({reason}); the site may be down, will retry later"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return f"{host} closed the connection before the answer was complete; will retry later"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"{url} is not a valid URL"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{host} sent a broken HTTP answer ({exc.message}); will retry later"
    return f"request to {url} failed ({type(exc).__name__}: {exc}); will retry later"


# --- article pages ------------------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{1,40})""", re.IGNORECASE)
_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")


def charset_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def decode_html(body: bytes, content_type: str | None) -> str:
    """Bytes of an HTML page as text: BOM, then the HTTP charset, then <meta charset>, then UTF-8."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(name, errors="replace")
    candidates: list[str | None] = [charset_of(content_type)]
    match = _META_CHARSET.search(body[:4096])
    if match:
        candidates.append(match.group(1).decode("ascii", "ignore"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            codec = codecs.lookup(candidate)
        except LookupError:
            continue
        return body.decode(codec.name, errors="replace")
    return body.decode("utf-8", errors="replace")


def make_page_fetcher(fetcher: Fetcher, *, allow_private: bool) -> PageFetcher:
    """`async (url) -> str | None` for bot.article_pages: an article page as text, or None when it is of no use
    (not http(s), refused by the address guard, 404, too large, not HTML); PageUnreachable when its host did not
    answer usefully (no answer in time, connection refused, 5xx, 429). Same limits as feeds, with max_page_bytes."""

    async def fetch_page(url: str) -> str | None:
        if not url or is_local_source(url):
            return None
        result = await fetcher.fetch(
            url, max_bytes=fetcher.config.max_page_bytes, allow_private=allow_private, accept=ACCEPT_PAGE
        )
        status = result.http_status or 0
        if result.status == "error" and (result.unreachable or status == 429 or status >= 500):
            raise PageUnreachable(result.error or f"{url} did not answer")
        if result.status != "ok" or result.body is None:
            log.debug("article page not used: %s", result.error or result.status)
            return None
        kind = (result.content_type or "").split(";", 1)[0].strip().lower()
        if kind not in _HTML_TYPES:
            log.debug("article page %s is %s, not HTML", url, kind)
            return None
        return decode_html(result.body, result.content_type)

    return fetch_page


def body_hash(body: bytes) -> str:
    """What the poller compares to skip parsing a body it has already read (sha256, hex)."""
    return hashlib.sha256(body).hexdigest()
