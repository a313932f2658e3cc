"""The article-page stage: the pages excerpt-only feed items link to (their fan posts and lead image), fetched
with care for the sites that serve them.

A feed that carries only excerpts makes the bot read each story's page. Per pass over one feed:
- only the pages of stories that can still be posted (published within `[delivery] max_age_hours`; preview
  shows every story, so it asks for no age) are fetched, newest first, at most `[polling]
  article_pages_per_poll` of them; the rest are stored from the feed alone and `deferred`, so the poller
  completes them on a later poll while they are young (`Poller._complete_pages`);
- each distinct page once, a few at once (fewer per host), and all of them within one deadline (the poller and
  preview give it `polling.timeout_seconds`: a pass waits for pages no longer than for one request);
- a per-host breaker (`HostBreaker`): after `BREAKER_FAILURES` failures in a row on one host (no answer in time,
  connection refused, 5xx, 429) the host's other pages are skipped for the rest of the pass and deferred; the
  host is tried again after a backoff that doubles while it keeps failing.

What it gives the CPU stage (bot/enrich.enrich_batch) is {canonical link: page HTML, or None}.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.images import absolute_http_url
from bot.models import FeedEntry
from bot.timeutil import utcnow
from bot.urls import canonical_url

log = logging.getLogger(__name__)

# `async (url) -> HTML | None`: None when the host answered but the page is of no use (404, not HTML, too large);
# an exception when the host did not answer usefully (it counts towards the host's breaker). bot/fetch.py's
# make_page_fetcher is the real one.
PageFetcher = Callable[[str], Awaitable[str | None]]

PAGE_CONCURRENCY = 4  # pages of one feed fetched at once
PAGES_PER_HOST = 2  # of which for one site (callers pass polling.per_host_concurrency)
BREAKER_FAILURES = 3  # failures in a row on one host before its pages are skipped
BREAKER_BACKOFF = timedelta(minutes=5)  # before a tripped host is tried again; doubles per trip
BREAKER_MAX_BACKOFF = timedelta(hours=6)
BREAKER_HOSTS = 1000  # hosts remembered at most (the ones not waiting are forgotten first)

MAX_HTML_IN = 2 * 1024 * 1024  # HTML read per field (as bot/enrich reads it): beyond is no article's text
FULL_CONTENT_WORDS = 80  # fewer words (and no embed or picture) is an excerpt, not the article
_TAG = re.compile(r"<[^>]*>")
_EXCERPT_END = re.compile(r"(?:\[\s*(?:…|\.\.\.|&hellip;|&#8230;)\s*\]|\.\.\.|…)\s*$")


def wants_article_page(entry: FeedEntry) -> bool:
    """True for an excerpt-only item (no full content in the feed): its quotes and image are on the page.

    Cheap on purpose (a regex, no HTML parser): the poller asks it for every new item."""
    if absolute_http_url(entry.link) is None:
        return False
    html = entry.content_html or ""
    if not html.strip():
        return True
    head = html[:MAX_HTML_IN]
    lowered = head.lower()
    if "<blockquote" in lowered or "<img" in lowered:  # embeds or a picture: this is the article
        return False
    text = _TAG.sub(" ", head)
    if _EXCERPT_END.search(text.replace("&#8230;", "…").strip()):
        return True
    return len(text.split()) < FULL_CONTENT_WORDS


def pages_wanted(entries: list[FeedEntry]) -> dict[str, str]:
    """The article pages `entries` need (excerpt-only items), each once, in the entries' order:
    {canonical link: link to fetch}."""
    canonicals = [canonical_url(e.link) for e in entries]
    by_canonical = dict(zip(canonicals, (e.link for e in entries), strict=True))  # the last link wins
    wanted = dict.fromkeys(c for e, c in zip(entries, canonicals, strict=True) if wants_article_page(e))
    return {canonical: by_canonical[canonical] for canonical in wanted}


@dataclass
class PagePlan:
    """Which pages one pass fetches: `fetch` ({canonical link: link}, newest story first), `deferred` (wanted
    and young, but over the pass's cap: worth a later try) and how many were `too_old` to be worth a request."""

    fetch: dict[str, str] = field(default_factory=dict)
    deferred: set[str] = field(default_factory=set)
    too_old: int = 0


def plan_pages(
    entries: list[FeedEntry], *, limit: int | None, max_age: timedelta | None, now: datetime | None = None
) -> PagePlan:
    """The pages of `entries` one pass fetches: those excerpt-only items need, of stories published within
    `max_age` (None: any age; no date: young), newest first (a feed's own order breaks ties), at most `limit`
    (None: all). Cheap (a regex per item, no I/O), but many items: call it off the loop."""
    now = now or utcnow()
    oldest = now - max_age if max_age is not None else None
    wanted = pages_wanted(entries)
    if not wanted:
        return PagePlan()
    moment: dict[str, datetime] = {}
    for entry in entries:
        canonical = canonical_url(entry.link)
        if canonical in wanted:  # a story's time: published, never later than now (as delivery reads it)
            published = min(entry.published, now) if entry.published is not None else now
            moment[canonical] = max(moment.get(canonical, published), published)
    plan = PagePlan()
    young = [c for c in wanted if oldest is None or moment[c] >= oldest]
    plan.too_old = len(wanted) - len(young)
    young.sort(key=lambda c: moment[c], reverse=True)  # stable: the feed's order among equal times
    cap = len(young) if limit is None else max(0, limit)
    plan.fetch = {c: wanted[c] for c in young[:cap]}
    plan.deferred = set(young[cap:])
    return plan


@dataclass
class _HostState:
    failures: int = 0  # in a row
    trips: int = 0  # times the breaker opened in a row (the backoff doubles with each)
    closed_until: datetime | None = None  # its pages are skipped until then


class HostBreaker:
    """Per host: after `failures` failures in a row, the host's pages are skipped until a backoff has passed
    (5 min, doubling per trip up to 6 h); then one failure trips it again, one success resets it. Shared by every
    pass of a process (the poller keeps one), so a dead site costs a few requests per backoff, not per feed."""

    def __init__(
        self,
        *,
        failures: int = BREAKER_FAILURES,
        backoff: timedelta = BREAKER_BACKOFF,
        max_backoff: timedelta = BREAKER_MAX_BACKOFF,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.failures = max(1, failures)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._hosts: dict[str, _HostState] = {}

    def allows(self, host: str) -> bool:
        state = self._hosts.get(host)
        return state is None or state.closed_until is None or state.closed_until <= self.clock()

    def waiting_until(self, host: str) -> datetime | None:
        """When a tripped host is tried again; None when it is not skipped."""
        state = self._hosts.get(host)
        if state is None or state.closed_until is None or state.closed_until <= self.clock():
            return None
        return state.closed_until

    def succeeded(self, host: str) -> None:
        self._hosts.pop(host, None)

    def failed(self, host: str) -> bool:
        """Count a failure; True when it trips the breaker (the host is skipped from now on, for a while)."""
        state = self._hosts.get(host)
        if state is None:
            self._forget_some()
            state = self._hosts[host] = _HostState()
        if state.closed_until is not None and state.closed_until > self.clock():
            return True  # a request under way when it tripped: already counted, the backoff stands
        state.failures += 1
        if state.failures < self.failures:
            return False
        state.trips += 1
        wait = min(self.backoff * 2 ** min(state.trips - 1, 20), self.max_backoff)
        state.closed_until = self.clock() + wait
        state.failures = self.failures - 1  # after the wait, one more failure trips it again
        log.info("article pages of %s skipped for %s after %d failures in a row", host, wait, self.failures)
        return True

    def _forget_some(self) -> None:
        """Keep the map small: the hosts not waiting go first (a few failures long ago mean little)."""
        if len(self._hosts) < BREAKER_HOSTS:
            return
        now = self.clock()
        for host in [h for h, s in self._hosts.items() if s.closed_until is None or s.closed_until <= now]:
            del self._hosts[host]
        while len(self._hosts) >= BREAKER_HOSTS:
            del self._hosts[next(iter(self._hosts))]


@dataclass
class PageBatch:
    """What one pass got: `pages` ({canonical link: HTML, or None when the page is of no use}) and `deferred`
    (the canonical links worth a later try: over the cap, their host failing or skipped)."""

    pages: dict[str, str | None] = field(default_factory=dict)
    deferred: set[str] = field(default_factory=set)
    over_cap: int = 0  # of `deferred`: not asked for, over the pass's cap
    too_old: int = 0  # pages not wanted: their stories are past the delivery age

    @property
    def taken(self) -> int:
        """Pages this pass took a place of its cap for: fetched, of no use, failed, or skipped by the breaker."""
        return len(self.pages) + len(self.deferred) - self.over_cap


async def fetch_pages(
    links: dict[str, str],
    fetch_page: PageFetcher,
    *,
    breaker: HostBreaker | None = None,
    concurrency: int = PAGE_CONCURRENCY,
    per_host: int = PAGES_PER_HOST,
    deadline_seconds: float | None = None,
) -> PageBatch:
    """Fetch these pages ({canonical link: link}, in the order given), each once, at most `concurrency` at once
    and `per_host` at once per host, through `breaker` (a fresh one, for this pass alone, when None), within
    `deadline_seconds` in all (None: no limit). A page whose host failed, is skipped by its breaker, or was not
    in by the deadline is `deferred`; a host that trips during the pass is not asked again in it. A request the
    deadline cuts counts as its host's failure: it gave no answer in all the time a pass waits."""
    breaker = breaker or HostBreaker()
    batch = PageBatch()
    tripped: set[str] = set()  # hosts that tripped in this pass: skipped to its end, whatever the backoff
    in_flight: dict[str, str] = {}  # canonical link -> host, while its request is under way
    slots = asyncio.Semaphore(max(1, concurrency))
    host_slots: dict[str, asyncio.Semaphore] = {}

    def failed(host: str) -> None:
        if breaker.failed(host):
            tripped.add(host)

    async def load(canonical: str, link: str) -> None:
        host = _host(link)
        # the host's slot first: the breaker is asked just before a request goes, not while it queues
        async with host_slots.setdefault(host, asyncio.Semaphore(max(1, per_host))), slots:
            if host in tripped or not breaker.allows(host):
                batch.deferred.add(canonical)
                return
            in_flight[canonical] = host
            try:
                html = await fetch_page(link)
            except Exception as exc:  # a page is a bonus: the story stands without it
                log.debug("article page %s not fetched: %r", link, exc)
                batch.deferred.add(canonical)
                failed(host)
                return
            finally:
                in_flight.pop(canonical, None)
            breaker.succeeded(host)
            batch.pages[canonical] = html

    tasks = [asyncio.ensure_future(load(canonical, link)) for canonical, link in links.items()]
    if not tasks:
        return batch
    try:
        _done, late = await asyncio.wait(tasks, timeout=deadline_seconds)
    finally:
        cut = dict(in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if late:
        batch.deferred |= {c for c in links if c not in batch.pages}
        for host in cut.values():
            failed(host)
        log.debug("article pages: %d not in within %s s; tried again later", len(late), deadline_seconds)
    return batch


async def fetch_article_pages(
    entries: list[FeedEntry],
    fetch_page: PageFetcher,
    *,
    limit: int | None = None,
    max_age: timedelta | None = None,
    now: datetime | None = None,
    breaker: HostBreaker | None = None,
    concurrency: int = PAGE_CONCURRENCY,
    per_host: int = PAGES_PER_HOST,
    deadline_seconds: float | None = None,
) -> PageBatch:
    """The article pages one pass over `entries` fetches (see `plan_pages`: excerpt-only items, young, newest
    first, at most `limit`), through `fetch_pages`. The one page-fetching path of `preview` and the poller."""
    plan = await asyncio.to_thread(plan_pages, entries, limit=limit, max_age=max_age, now=now)  # many items
    batch = await fetch_pages(
        plan.fetch,
        fetch_page,
        breaker=breaker,
        concurrency=concurrency,
        per_host=per_host,
        deadline_seconds=deadline_seconds,
    )
    batch.deferred |= plan.deferred
    batch.over_cap = len(plan.deferred)
    batch.too_old = plan.too_old
    return batch


def _host(link: str) -> str:
    """host[:port], lower-cased: what the breaker counts by (the fetcher's per-host slots count the same)."""
    rest = link.split("://", 1)[1] if "://" in link else link
    return rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1].lower()
