"""Keep feeds added from Discord (and the pages their stories link to) off private networks.

Two layers: `check_public_url` before every request hop (scheme, IP literals, every address the host name
resolves to), and `GuardedResolver`, the shared session's resolver, which filters addresses again at connect
time so a host that answers "public" to the check and "127.0.0.1" to the connection (DNS rebinding) is refused.
The resolver only filters inside `public_only()`; operator sources may point anywhere, loopback included.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Set while a request for a guild-owned feed (or its pages) runs; read by GuardedResolver at connect time.
_PUBLIC_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("kpopnews_public_only", default=False)

# Ranges `ipaddress` does not flag on every Python version, named so the refusal says what was hit.
_EXTRA_BLOCKED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("100.64.0.0/10"), "a carrier-grade NAT (CGNAT) address"),
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking address"),
    (ipaddress.ip_network("0.0.0.0/8"), "a 'this network' address"),
    (ipaddress.ip_network("fc00::/7"), "a private IPv6 address (unique local, fc00::/7)"),
    (ipaddress.ip_network("fec0::/10"), "a site-local IPv6 address"),
    (ipaddress.ip_network("2001:db8::/32"), "a documentation address"),
    (ipaddress.ip_network("100::/64"), "a discard-only address"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the IPv4 address is the last 32 bits


# Names this process has seen resolve to a non-public address (for an operator source), with that address.
# A guarded request to such a name is refused up front: the connector may hold a kept-alive connection to the
# private address, which it would reuse without asking the resolver again.
_PRIVATE_NAMES: dict[tuple[str, int], str] = {}
_PRIVATE_NAMES_MAX = 4096


class UnsafeAddress(Exception):
    """A URL that a guild-owned feed may not reach; `reason` says which address and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def address_kind(address: str | IPAddress) -> str | None:
    """What kind of non-public address this is ("a loopback address"), or None for a public one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 form that carries an IPv4 address is judged by the IPv4 address inside it.
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip.sixtofour is not None:
            embedded = ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_kind(embedded)
            return f"an IPv6 form of {embedded}, {inner}" if inner else None
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    for network, name in _EXTRA_BLOCKED:
        if ip.version == network.version and ip in network:
            return name
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public internet address"
    return None


def address_problem(address: str | IPAddress) -> str | None:
    """Why this address is not a public internet address ("127.0.0.1 is a loopback address"), or None."""
    kind = address_kind(address)
    return f"{address} is {kind}" if kind else None


def is_public_address(address: str | IPAddress) -> bool:
    return address_problem(address) is None


async def check_public_url(url: str | URL) -> None:
    """Raise UnsafeAddress unless `url` is http(s) and every address its host resolves to is public
    (socket.gaierror when the host name does not resolve at all)."""
    try:
        parsed = url if isinstance(url, URL) else URL(str(url))
    except (ValueError, TypeError):
        raise UnsafeAddress(f"{url!s} is not a valid URL") from None
    if parsed.scheme.lower() not in ("http", "https"):
        raise UnsafeAddress(f"{url!s} is not an http(s) URL (scheme {parsed.scheme or 'missing'!r})")
    host = (parsed.raw_host or "").strip("[]").rstrip(".")
    if not host:
        raise UnsafeAddress(f"{url!s} names no host")
    literal = _ip_literal(host)
    if literal is not None:
        kind = address_kind(literal)
        if kind:
            raise UnsafeAddress(f"{literal} is {kind}")
        return
    port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    loop = asyncio.get_running_loop()
    # A name that does not resolve raises socket.gaierror: not unsafe, just unreachable (the caller reports it).
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = {str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)}
    if not addresses:
        raise UnsafeAddress(f"host name {host} resolves to no IP address")
    for address in sorted(addresses):
        kind = address_kind(address)
        if kind:
            raise UnsafeAddress(f"{host} resolves to {address}, {kind}")


def _ip_literal(host: str) -> IPAddress | None:
    """The address of a host written as a canonical IP literal. Legacy numeric forms (127.1, 2130706433)
    are left to getaddrinfo, which maps them to the address a connection would reach."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


@contextmanager
def public_only(enabled: bool = True) -> Iterator[None]:
    """Within this block (and tasks started from it) the guarded resolver refuses non-public addresses."""
    token = _PUBLIC_ONLY.set(enabled)
    try:
        yield
    finally:
        _PUBLIC_ONLY.reset(token)


def public_only_active() -> bool:
    return _PUBLIC_ONLY.get()


class GuardedResolver(AbstractResolver):
    """The shared session's resolver: caches raw answers briefly, filters them per request.

    The connector's own DNS cache must be off (`use_dns_cache=False`): it would hand an answer fetched for an
    operator source to a guild-owned one without asking the resolver again."""

    def __init__(self, inner: AbstractResolver | None = None, *, ttl: float = 10.0) -> None:
        self._inner = inner
        self._ttl = ttl
        self._cache: dict[tuple[str, int, int], tuple[float, list[ResolveResult]]] = {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        key = (host, port, int(family))
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            results = cached[1]
        else:
            if self._inner is None:
                self._inner = DefaultResolver()
            results = await self._inner.resolve(host, port, family)
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + self._ttl, results)
        for result in results:
            if not is_public_address(result["host"]):
                if len(_PRIVATE_NAMES) >= _PRIVATE_NAMES_MAX:
                    _PRIVATE_NAMES.pop(next(iter(_PRIVATE_NAMES)))
                _PRIVATE_NAMES[(host.lower(), port)] = result["host"]
                break
        if not _PUBLIC_ONLY.get():
            return list(results)
        allowed = [r for r in results if is_public_address(r["host"])]
        if len(allowed) != len(results):
            # One private answer among public ones is already an attack pattern: refuse the host outright.
            bad = next(r["host"] for r in results if not is_public_address(r["host"]))
            raise UnsafeAddress(f"{host} resolves to {bad}, {address_kind(bad)} (seen at connect time)")
        return allowed

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def pooled_private_problem(host: str, port: int) -> str | None:
    """Why a guarded request to host:port must not be sent: the name resolved to a non-public address earlier
    in this process, so a kept-alive connection to that address may be waiting in the pool."""
    address = _PRIVATE_NAMES.get((host.lower().rstrip("."), port))
    if address is None:
        return None
    return f"{host} resolved to {address}, {address_kind(address)}, for another source"


def peer_problem(peer: Any) -> str | None:
    """Why a connected socket's peer (`transport.get_extra_info('peername')`) is not public, or None."""
    if not peer:
        return None
    address = str(peer[0] if isinstance(peer, tuple | list) else peer)
    kind = address_kind(address)
    return f"the server at {address} is {kind}" if kind else None
