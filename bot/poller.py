"""The poll stage: every source fetched on schedule, new entries enriched and stored once, health kept.

Per source: a conditional fetch (stored ETag / Last-Modified; a 304 costs nothing), a body-hash check (an
unchanged body is not parsed), feedparser in a worker process, only the entries not stored yet enriched (in a
worker process too, after their article pages are fetched here), one transaction to store them, then
`on_new_stories`. Failures back off exponentially with jitter, Retry-After is honoured, 410 Gone and
`max_failures` failures in a row disable the source with a reason a person can act on; a disabled source is
probed again with growing gaps and comes back by itself when it answers with a feed. A feed that redirects
permanently (301/308) on two polls in a row is polled at its new address from then on.
Nothing a source does can stop the poller or the other sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, TextIO

from bot.article_pages import HostBreaker, PageBatch, fetch_article_pages, fetch_pages
from bot.artists import load_artist_index
from bot.config import Config
from bot.enrich import enrich_batch  # imported here: a first import on the loop stalls it
from bot.fetch import Fetcher, FetchResult, body_hash, make_page_fetcher, make_session
from bot.models import FeedEntry, Source, Story
from bot.parse import FeedError
from bot.pipeline import after_store
from bot.source_health import disabled_text, when
from bot.store import Store
from bot.timeutil import utcnow
from bot.urls import canonical_url, story_key
from bot.workers import FeedBatch, WorkerError, Workers, shared_workers

if TYPE_CHECKING:
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

Outcome = Literal["fetched", "not_modified", "unchanged", "failed", "disabled", "skipped", "busy"]
NewStoriesHook = Callable[[list[Story]], Awaitable[None]]

MAX_BACKOFF_SECONDS = 6 * 3600.0
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0  # a server asking for more is still polled once a day
# The gaps between a disabled source's probes: 1 h, 6 h, 24 h, then daily.
PROBE_GAPS_SECONDS = (3600.0, 6 * 3600.0, 24 * 3600.0)
REDIRECTS_TO_MOVE = 2  # polls in a row answering the same permanent redirect before the source moves
RESCAN_SECONDS = 30.0  # run_forever looks for added/removed sources at least this often
# A claim on a source lasts about an interval (renewed while its poll runs), within these bounds.
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 5.0, 60.0
# The stories a feed carried lately, sent with its body to the worker, which skips them without enriching them.
KNOWN_KEYS_SENT = 500
PAGES_PER_SOURCE = 4  # article pages fetched at once for one source's stories
# Enrichment in this process (a custom artist index) is GIL-bound: more at once only delays the loop.
ENRICH_SLOTS = 2


@dataclass
class SourceReport:
    source: Source
    outcome: Outcome
    new_stories: int = 0
    stories_seen: int = 0
    error: str | None = None  # why it failed or was skipped
    warning: str | None = None  # the parser kept what it could read of a malformed feed
    article_pages: int = 0  # article pages this poll took from its budget (polling.article_pages_per_poll)
    notes: list[str] = field(default_factory=list)  # what changed about the source: moved, disabled, back

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    def line(self) -> str:
        """One line for `poll --once`: "Koreaboo: fetched, 20 stories, 3 new"."""
        name = self.source.name
        if self.outcome == "fetched":
            text = f"{name}: fetched, {_count(self.stories_seen, 'story', 'stories')}, {self.new_stories} new"
            text += f" (warning: {self.warning})" if self.warning else ""
        elif self.outcome == "not_modified":
            text = f"{name}: not modified"
        elif self.outcome == "unchanged":
            text = f"{name}: unchanged since the last poll"
        elif self.outcome == "skipped":
            text = f"{name}: skipped: {self.error}"
        elif self.outcome == "busy":
            text = f"{name}: being polled by another process right now (the bot): left to it"
        elif self.outcome == "disabled":
            text = f"{name}: still disabled, the probe failed: {self.error}"
        else:
            text = f"{name}: failed: {self.error}"
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")


@dataclass
class PollReport:
    sources: list[SourceReport]

    @property
    def new_total(self) -> int:
        return sum(r.new_stories for r in self.sources)

    @property
    def seen_total(self) -> int:
        return sum(r.stories_seen for r in self.sources)

    @property
    def failed(self) -> list[SourceReport]:
        return [r for r in self.sources if r.failed]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.sources if r.outcome == outcome)

    def total_line(self) -> str:
        """ "total: 7 sources, 5 fetched, 1 not modified, 1 failed; 60 stories, 12 new" """
        parts = [f"{self.count(o)} {label}" for o, label in _OUTCOME_LABELS if self.count(o)]
        head = f"total: {_count(len(self.sources), 'source', 'sources')}"
        if parts:
            head += ", " + ", ".join(parts)
        return f"{head}; {_count(self.seen_total, 'story', 'stories')}, {self.new_total} new"


_OUTCOME_LABELS: tuple[tuple[Outcome, str], ...] = (
    ("fetched", "fetched"),
    ("not_modified", "not modified"),
    ("unchanged", "unchanged"),
    ("failed", "failed"),
    ("disabled", "still disabled"),
    ("skipped", "skipped"),
    ("busy", "polled elsewhere"),
)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


class Poller:
    def __init__(
        self,
        config: Config,
        store: Store,
        fetcher: Fetcher,
        artists: ArtistIndex | None,
        *,
        on_new_stories: NewStoriesHook | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        workers: Workers | None = None,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.polling = config.polling
        self.store = store
        self.fetcher = fetcher
        self.artists = artists
        self.on_new_stories = on_new_stories
        self.clock = clock
        self.rng = rng or random.Random()
        self.workers = workers or shared_workers()  # the process's pool unless the caller wires its own
        self._enrich_slots = asyncio.Semaphore(ENRICH_SLOTS)
        self._page_hosts = HostBreaker(clock=clock)  # article-page sites that keep failing, across polls
        self._source_slots = asyncio.Semaphore(self.polling.concurrency)
        self._wake = asyncio.Event()
        self._owner = owner  # who holds this poller's claims on sources; None: the store's process
        self._claimed: set[int] = set()  # the sources this poller holds claims on (being polled)

    # --- one source -------------------------------------------------------------------------------------

    async def poll_source(self, source: Source) -> SourceReport:
        """Poll one source now (a disabled one only when the poller probes it) and save its state. Never raises
        (but for cancellation)."""
        if not source.enabled and source.probe_at is None:
            return SourceReport(source, "skipped", error=disabled_text(source))
        read_reason = source.disabled_reason
        new: list[Story] = []  # handed on below, not kept in the report: a pass over many feeds keeps counts
        try:
            report, new = await self._poll(source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a database problem: this source fails, the others go on
            log.error(
                "polling %s failed unexpectedly: %r",
                source.url,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            report = self._failed(
                source,
                f"internal error while polling ({type(exc).__name__}: {exc}); see the log, please report it",
            )
        try:
            await self._save(source, read_reason, report)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("cannot save the state of %s: %r", source.url, exc)
            message = f"internal error while saving its state ({type(exc).__name__}: {exc}); please report it"
            return SourceReport(source, "failed", error=report.error or message)
        after: list[Awaitable[None]] = []
        if new and self.on_new_stories is not None:
            after.append(self._hand_over(self.on_new_stories, source, new))
        if report.outcome in ("fetched", "not_modified", "unchanged"):
            after.append(self._complete_pages(source, report))
        await asyncio.gather(
            *after
        )  # older stories' pages come in while the new ones are clustered and queued
        return report

    @staticmethod
    async def _hand_over(hook: NewStoriesHook, source: Source, new: list[Story]) -> None:
        try:
            await hook(new)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # delivery's problem, not the source's: it stays healthy
            log.error("handling %d new stories of %s failed: %r", len(new), source.name, exc)

    async def _poll(self, source: Source) -> tuple[SourceReport, list[Story]]:
        """Fetch, parse and store one source: its report and the stories stored for the first time. Its state is
        updated here and saved by the caller."""
        allow_private = source.owner_guild_id is None  # the operator's sources may point anywhere
        probing = not source.enabled  # a probe asks for the feed itself: a 304 would prove nothing
        result = await self.fetcher.fetch(
            source.url,
            etag=None if probing else source.etag,
            last_modified=None if probing else source.last_modified,
            max_bytes=self.polling.max_feed_bytes,
            allow_private=allow_private,
        )
        if result.status == "error":
            return self._failed(
                source, result.error or "fetch failed", retry_after=result.retry_after, gone=result.gone
            ), []
        if result.status == "not_modified":
            return self._succeeded(source, SourceReport(source, "not_modified"), result), []

        body = result.body or b""
        digest = body_hash(body)
        if digest == source.body_hash:  # the server has no validators, or ignored them: same bytes, no parse
            return self._succeeded(source, SourceReport(source, "unchanged"), result), []

        try:
            batch = await self.workers.read_feed(
                body,
                url=result.url,
                content_type=result.content_type,
                source_name=source.name,
                known=await self._recent_keys(source),
                enrich=self._artists_in_workers(),
                with_artists=self.artists is not None,
                pages=self.polling.fetch_article_pages,
            )
        except FeedError as exc:
            return self._failed(source, str(exc)), []
        except WorkerError as exc:  # the feed (or enriching its new stories) hung or crashed its worker
            return self._failed(source, f"{source.url}: reading it or enriching its new stories {exc}"), []
        try:
            new, pages = await self._store_batch(source, batch, allow_private=allow_private)
        except WorkerError as exc:  # enriching the stories that waited for their pages hung or crashed
            return self._failed(source, f"{source.url}: enriching its new stories {exc}"), []
        report = SourceReport(source, "fetched", len(new), batch.seen, warning=batch.warning)
        report.article_pages = pages.taken
        return self._succeeded(source, report, result, body_hash=digest), new

    async def _recent_keys(self, source: Source) -> set[str]:
        if source.id is None:
            return set()
        return await self.store.stories.recent_keys_of_source(source.id, KNOWN_KEYS_SENT)

    async def _store_batch(
        self, source: Source, batch: FeedBatch, *, allow_private: bool
    ) -> tuple[list[Story], PageBatch]:
        """Store what a worker made of the feed (its pending items enriched here first, after the article pages
        this poll fetches for them), in one transaction; a story another source brought first is linked to this
        one instead. Returns the stories stored for the first time and the pages fetched (the young stories
        stored without theirs await them)."""
        backfill = source.last_success_at is None  # already in the feed when we first read it: never posted
        stories = list(batch.stories)
        pages = PageBatch()
        if batch.pending:
            entries = [p.entry for p in batch.pending]
            pages = await self._article_pages(entries, allow_private=allow_private, backfill=backfill)
            pending = await self._enrich(entries, source, pages=pages.pages)
            for story, item in zip(pending, batch.pending, strict=False):
                item.identify(story)
            stories += pending
        for story in stories:  # enrichment may drop or add entries: never store a story without identity
            story.key = story.key or story_key(None, story.url)
            story.canonical_url = story.canonical_url or canonical_url(story.url) or story.key
        stories = [s for s in stories if s.key]
        known = await self.store.stories.known_keys(
            [s.key for s in stories], [s.canonical_url for s in stories if s.canonical_url]
        )
        known_ids: set[int] = set()
        fresh: list[Story] = []
        for (
            story
        ) in stories:  # carried by another source already (or twice in this batch): linked, not stored
            found = known.get(story.key) or known.get(story.canonical_url or "")
            if found is not None:
                known_ids.add(found)
            else:
                fresh.append(story)

        async with self.store.transaction():
            if known_ids and source.id is not None:
                await self.store.stories.link_to_source(source.id, sorted(known_ids), at=self.clock())
            results = await self.store.stories.add_many(fresh, source_id=source.id, backfill=backfill)
            new = [story for story, stored in zip(fresh, results, strict=True) if stored.is_new]
            await self.store.stories.await_pages(self._pages_awaited(new, pages))
        return new, pages

    async def _article_pages(
        self, entries: list[FeedEntry], *, allow_private: bool, backfill: bool
    ) -> PageBatch:
        """The article pages of these new entries this poll fetches (bot.article_pages: young stories only,
        newest first, at most polling.article_pages_per_poll, through the poller's host breaker), on this loop.
        A first poll's stories (`backfill`) are never posted, so none waits for its page: they are all stored at
        once and completed after (`_complete_pages`, while they are clustered)."""
        if not self.polling.fetch_article_pages:
            return PageBatch()
        return await fetch_article_pages(
            entries,
            make_page_fetcher(self.fetcher, allow_private=allow_private),
            limit=0 if backfill else self.polling.article_pages_per_poll,
            max_age=timedelta(hours=self.config.delivery.max_age_hours),
            now=self.clock(),
            breaker=self._page_hosts,
            concurrency=PAGES_PER_SOURCE,
            per_host=self.polling.per_host_concurrency,
            deadline_seconds=self.polling.timeout_seconds,  # a poll waits for pages as long as for one request
        )

    def _pages_awaited(self, new: list[Story], pages: PageBatch) -> dict[int, datetime]:
        """{story id: until when its page is worth a later try} for the new stories stored without their page
        (over the cap, or their site failing): until they are too old to be posted."""
        if not pages.deferred:
            return {}
        now = self.clock()
        age = timedelta(hours=self.config.delivery.max_age_hours)
        return {
            story.id: min(story.published or now, now) + age
            for story in new
            if story.id is not None and canonical_url(story.url) in pages.deferred
        }

    async def _complete_pages(self, source: Source, report: SourceReport) -> None:
        """Give the young stories of this source stored without their article page (newest first) the pages
        this poll's budget has left: their quotes, image and text completed. Never raises (but for cancellation):
        the poll went well whatever happens here."""
        budget = self.polling.article_pages_per_poll - report.article_pages
        if not self.polling.fetch_article_pages or source.id is None or budget <= 0:
            return
        try:
            waiting = await self.store.stories.awaiting_pages(source.id, now=self.clock(), limit=budget)
            if not waiting:
                return
            links = {canonical_url(s.url): s.url for s in waiting}
            fetch_page = make_page_fetcher(self.fetcher, allow_private=source.owner_guild_id is None)
            pages = await fetch_pages(
                links,
                fetch_page,
                breaker=self._page_hosts,
                concurrency=PAGES_PER_SOURCE,
                per_host=self.polling.per_host_concurrency,
                deadline_seconds=self.polling.timeout_seconds,
            )
            report.article_pages += pages.taken
            answered = {s.id: pages.pages.get(canonical_url(s.url), "") for s in waiting}
            got = [s for s in waiting if answered[s.id]]  # "": not fetched this time, None: of no use
            given_up = [i for i, html in answered.items() if html is None and i is not None]
            completed = (
                await self._enrich([_entry_of(s) for s in got], source, pages=pages.pages) if got else []
            )
            for old, story in zip(got, completed, strict=True):
                story.id, story.first_seen = old.id, old.first_seen
            async with self.store.transaction():
                await self.store.stories.complete_pages(completed, given_up)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stories stay as stored; a later poll tries again
            log.warning("completing the stories of %s with their article pages failed: %r", source.name, exc)

    async def _enrich(
        self, entries: list[FeedEntry], source: Source, *, pages: dict[str, str | None]
    ) -> list[Story]:
        """bot.enrich's one path, the CPU work in a worker process, with the article pages fetched on this
        loop ({canonical link: HTML})."""
        if self._artists_in_workers():
            return await self.workers.enrich(
                entries, source_name=source.name, pages=pages, with_artists=self.artists is not None
            )
        async with self._enrich_slots:  # a custom artist index cannot cross to a worker: enrich here
            return await asyncio.to_thread(
                enrich_batch, entries, source_name=source.name, artists=self.artists, pages=pages
            )

    def _artists_in_workers(self) -> bool:
        """Whether a worker process can use the same artist index: none, or the packaged one it loads itself."""
        if self.artists is None:
            return True
        try:
            from bot.artists import ArtistIndex

            return self.artists is ArtistIndex.load()
        except Exception:
            return False

    # --- health -----------------------------------------------------------------------------------------

    def _succeeded(
        self, source: Source, report: SourceReport, result: FetchResult, *, body_hash: str | None = None
    ) -> SourceReport:
        """The source answered with a feed: healthy again (enabled again, if it was disabled), validators kept,
        its permanent redirect (if any) counted towards a move."""
        now = self.clock()
        source.last_fetched_at = now
        source.last_success_at = now
        source.last_status = "not_modified" if result.status == "not_modified" else "ok"
        source.last_error = None
        source.consecutive_failures = 0
        source.next_poll_at = now + timedelta(seconds=self._jittered(self.polling.interval_seconds))
        if result.status == "ok":  # a full answer: its validators (or their absence) replace ours
            source.etag, source.last_modified = result.etag, result.last_modified
        else:  # a 304 may repeat or refresh them
            source.etag = result.etag or source.etag
            source.last_modified = result.last_modified or source.last_modified
        if body_hash is not None:
            source.body_hash = body_hash
        if not source.enabled:
            source.disabled_reason, source.probe_at, source.probes = None, None, 0
            report.notes.append("enabled again: a probe found the feed answering")
        if result.moved_to is None or result.moved_to == source.url:
            source.redirect_to, source.redirects_seen = None, 0
        elif result.moved_to == source.redirect_to:
            source.redirects_seen += 1
        else:
            source.redirect_to, source.redirects_seen = result.moved_to, 1
        if source.redirect_to is not None and source.redirects_seen < REDIRECTS_TO_MOVE:
            report.notes.append(
                f"redirects permanently to {source.redirect_to}: moved there if the next poll says the same"
            )
        return report

    def _failed(
        self, source: Source, message: str, *, retry_after: float | None = None, gone: bool = False
    ) -> SourceReport:
        """Count the failure, back off (never sooner than Retry-After), disable when it is hopeless; a disabled
        source's failed probe schedules the next one. Validators and body hash are kept: a feed that failed to
        parse is fetched and parsed again next time."""
        now = self.clock()
        source.last_fetched_at = now
        source.last_status = "error"
        source.last_error = message
        source.consecutive_failures += 1
        source.redirect_to, source.redirects_seen = None, 0  # a move needs polls in a row that answer it
        wait = min(retry_after, MAX_RETRY_AFTER_SECONDS) if retry_after is not None else 0.0
        if not source.enabled:  # a probe that failed
            source.probes += 1
            source.probe_at = now + timedelta(seconds=max(wait, self.probe_gap_seconds(source.probes)))
            return SourceReport(
                source, "disabled", error=message, notes=[f"next probe {when(source.probe_at)}"]
            )
        source.next_poll_at = now + timedelta(
            seconds=max(wait, self.backoff_seconds(source.consecutive_failures))
        )
        if gone:
            source.disabled_reason = (
                f"the feed answered 410 Gone on {when(now)}: the site removed it. "
                "Remove this source, or add the feed again at its new address"
            )
        elif source.consecutive_failures >= self.polling.max_failures:
            source.disabled_reason = (
                f"disabled on {when(now)} after {source.consecutive_failures} failed polls in a row "
                f"(last: {message}). Check the URL in a browser, then fix or remove this source"
            )
        if source.enabled:
            return SourceReport(source, "failed", error=message)
        source.probes = 0
        source.probe_at = now + timedelta(seconds=max(wait, self.probe_gap_seconds(0)))
        return SourceReport(
            source, "failed", error=message, notes=[f"disabled; next probe {when(source.probe_at)}"]
        )

    def backoff_seconds(self, failures: int) -> float:
        """Exponential from the polling interval, capped (6 h, or the interval if longer), with ±20% jitter."""
        interval = self.polling.interval_seconds
        cap = max(MAX_BACKOFF_SECONDS, interval)
        base = min(cap, interval * 2 ** min(max(failures, 1) - 1, 30))
        return base * self.rng.uniform(0.8, 1.2)

    @staticmethod
    def probe_gap_seconds(failed_probes: int) -> float:
        """The wait before a disabled source's next probe: 1 h, 6 h, 24 h, then daily."""
        return PROBE_GAPS_SECONDS[min(failed_probes, len(PROBE_GAPS_SECONDS) - 1)]

    def _jittered(self, seconds: float) -> float:
        return seconds * self.rng.uniform(0.9, 1.1)  # sources drift apart instead of polling in lockstep

    async def _save(self, source: Source, read_reason: str | None, report: SourceReport) -> None:
        """Save the poll's outcome in one transaction: the move to a new address, when the feed answered the same
        permanent redirect enough polls in a row, and the state. A source switched on or off by someone else
        while it was polled stays as they left it."""
        async with self.store.transaction():
            if source.redirect_to is not None and source.redirects_seen >= REDIRECTS_TO_MOVE:
                old = source.url
                taken = await self.store.sources.move(source, source.redirect_to, at=self.clock())
                if taken is not None:
                    report.notes.append(
                        f"redirects permanently to {taken.url}, which is the source {taken.name!r} already: "
                        f"kept at {old}"
                    )
                else:
                    hint = "; update its url in the configuration" if source.owner_guild_id is None else ""
                    report.notes.append(f"moved permanently to {source.url}, was {old}{hint}")
            await self.store.sources.save_state(source, expected_reason=read_reason)

    # --- every source -----------------------------------------------------------------------------------

    async def poll_all(
        self, *, progress: Callable[[int, int, SourceReport], None] | None = None
    ) -> PollReport:
        """Every enabled source once, concurrently (bounded), and every disabled one whose probe is due. A source
        backing off after failures (or asked to wait by Retry-After) is skipped until its time, and one another
        process is polling at this moment (claimed: a running bot on the same database) is left to it. `progress` is told
        (sources done, sources in all, report) after each."""
        now = self.clock()
        sources = _interleave_hosts(
            [
                s
                for s in await self.store.sources.list_to_poll()
                if s.enabled or (s.probe_at is not None and s.probe_at <= now)
            ]
        )

        done: list[SourceReport] = []

        async def one(source: Source) -> SourceReport:
            waiting = (
                source.enabled
                and source.consecutive_failures > 0
                and source.next_poll_at is not None
                and source.next_poll_at > now
            )
            if waiting:
                assert source.next_poll_at is not None
                report = SourceReport(
                    source,
                    "skipped",
                    error=f"backing off until {when(source.next_poll_at)} after "
                    f"{_count(source.consecutive_failures, 'failure', 'failures')} (last: {source.last_error})",
                )
            else:
                async with self._source_slots:
                    report = await self._poll_if_free(source)
            done.append(report)
            if progress is not None:
                try:
                    progress(len(done), len(sources), report)
                except Exception as exc:  # a display problem must not lose the poll
                    log.debug("progress callback failed: %r", exc)
            return report

        renewer = asyncio.create_task(self._renew_claims(), name="poller: renew claims")
        try:
            reports = await asyncio.gather(*(one(s) for s in sources))
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        order = {id(s): i for i, s in enumerate(sorted(sources, key=lambda s: s.id or 0))}
        return PollReport(sorted(reports, key=lambda r: order[id(r.source)]))

    async def _poll_if_free(self, source: Source) -> SourceReport:
        """poll_source under a claim, as run_forever polls: a bot polling this source at this moment (another
        process on the same database) keeps it, and this pass leaves it alone instead of fetching it twice."""
        if source.id is None:
            return await self.poll_source(source)
        if not await self.store.sources.claim(source.id, self.owner, self.clock(), self.lease_seconds):
            return SourceReport(source, "busy")
        self._claimed.add(source.id)
        try:
            return await self.poll_source(source)
        finally:
            await self._release(source)

    async def _release(self, source: Source) -> None:
        """Give up the claim on a source just polled (its next poll advanced if its state could not be saved)."""
        assert source.id is not None
        self._claimed.discard(source.id)
        now = self.clock()
        fallback = now + timedelta(seconds=self._jittered(self.polling.interval_seconds))
        try:
            await asyncio.shield(
                self.store.sources.release(source.id, self.owner, now=now, fallback=fallback)
            )
        except Exception as exc:  # its lease runs out instead
            log.warning("could not release the claim on %s: %r", source.url, exc)

    def wake(self) -> None:
        """Make run_forever look at the sources now (e.g. one was just added from Discord)."""
        self._wake.set()

    @property
    def owner(self) -> str:
        return self._owner or self.store.owner

    @property
    def lease_seconds(self) -> float:
        """How long a claim on a source holds without renewal: about an interval, so the sources of a process
        that died are polled again by the others within two intervals."""
        return min(max(self.polling.interval_seconds, MIN_LEASE_SECONDS), MAX_LEASE_SECONDS)

    async def run_forever(self) -> None:
        """Poll each enabled source every interval and probe each disabled one at its probe_at, honouring each
        source's next_poll_at (backoff, Retry-After). The schedule is in the database: sources are claimed when
        due (`store.sources.claim_due`), so with several processes on one database each feed is fetched once per
        interval in all, and a process that dies loses its claims when their lease runs out. New sources are
        spread over the interval at start-up. Logs and goes on after any error; cancel to stop."""
        tasks: dict[int, asyncio.Task[SourceReport | None]] = {}
        first_scan = True
        renewer = asyncio.create_task(self._renew_claims(), name="poller: renew claims")
        try:
            while True:
                sleep_for = RESCAN_SECONDS
                try:
                    now = self.clock()
                    await self._schedule_new(now, startup=first_scan)
                    first_scan = False
                    free = self.polling.concurrency - len(self._claimed)
                    for source in await self.store.sources.claim_due(
                        self.owner, now, self.lease_seconds, free
                    ):
                        assert source.id is not None
                        self._claimed.add(source.id)
                        task = asyncio.create_task(self._claimed_poll(source), name=f"poll {source.url}")
                        tasks[source.id] = task
                        task.add_done_callback(functools.partial(_forget, tasks, source.id))
                    upcoming = await self.store.sources.next_due_at(self.owner, now)
                    if upcoming is not None:
                        sleep_for = max(0.05, min(RESCAN_SECONDS, (upcoming - now).total_seconds()))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("poll scheduler: %r; trying again shortly", exc, exc_info=True)
                    sleep_for = 5.0
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sleep_for):
                        await self._wake.wait()
        finally:
            renewer.cancel()
            running = list(tasks.values())
            for task in running:
                task.cancel()
            await asyncio.gather(renewer, *running, return_exceptions=True)
            with contextlib.suppress(Exception):  # stopping cleanly: the others may take them over at once
                await self.store.sources.release_all(self.owner)

    async def poll_claimed(self, source: Source) -> SourceReport | None:
        """Poll one source now unless another process is polling it (a feed just added from Discord): claimed
        for the poll, released after. None when another process holds it (it stores what the feed carries)."""
        assert source.id is not None
        if not await self.store.sources.claim(source.id, self.owner, self.clock(), self.lease_seconds):
            return None
        self._claimed.add(source.id)
        return await self._claimed_poll(source)

    async def _claimed_poll(self, source: Source) -> SourceReport | None:
        """Poll a source this process claimed, then release it (its next poll advanced if the save failed)."""
        assert source.id is not None
        report = None
        try:
            async with self._source_slots:
                report = await self.poll_source(source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # poll_source does not raise; this is the last net
            log.error("poll of %s failed: %r", source.url, exc)
        finally:
            await self._release(source)
            self._wake.set()
        return report

    async def _renew_claims(self) -> None:
        """Keep the claims on the sources being polled while their polls take longer than a third of a lease."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self._claimed:
                continue
            until = self.clock() + timedelta(seconds=self.lease_seconds)
            try:
                await self.store.sources.renew_claims(self.owner, sorted(self._claimed), until=until)
            except Exception as exc:
                log.warning("could not renew the claims on %d sources: %r", len(self._claimed), exc)

    async def _schedule_new(self, now: datetime, *, startup: bool) -> None:
        """Give a first slot to sources with none (new, enabled again); at start-up also to those nobody polled
        for a whole interval (the bot was down), spread over one interval instead of all at once."""
        overdue = now - timedelta(seconds=self.polling.interval_seconds) if startup else None
        sources = await self.store.sources.unscheduled(overdue_before=overdue)
        if sources:
            await self.store.sources.schedule(
                [(s, self._first_slot(s, now, startup=startup)) for s in sources]
            )

    def _first_slot(self, source: Source, now: datetime, *, startup: bool) -> datetime:
        if not source.enabled and source.probe_at is not None:
            return source.probe_at  # a disabled source is probed at its time, not before
        if source.next_poll_at is not None and source.next_poll_at > now:
            return source.next_poll_at  # backoff, Retry-After, or simply not due: kept across restarts
        interval = self.polling.interval_seconds
        # At start-up every due source is spread over one interval; a source added later starts soon.
        window = interval if startup else min(interval, 5.0)
        return now + timedelta(seconds=self.rng.uniform(0, window))


def _entry_of(story: Story) -> FeedEntry:
    """A stored story as the feed item it came from, for enriching it again with its article page: its summary
    (the feed's excerpt, as stored) read as the item's excerpt, its image as the feed's."""
    return FeedEntry(
        title=story.title,
        link=story.url,
        published=story.published,
        summary_html=html.escape(story.summary),
        categories=list(story.categories),
        media_images=[story.image] if story.image else [],
    )


def _forget(tasks: dict[int, asyncio.Task[SourceReport | None]], source_id: int, _task: object) -> None:
    tasks.pop(source_id, None)


def _interleave_hosts(sources: list[Source]) -> list[Source]:
    """Round-robin over hosts, so the first slots do not all wait on one busy host's per-host limit."""
    by_host: dict[str, list[Source]] = defaultdict(list)
    for source in sources:
        by_host[_host_of(source.url)].append(source)
    queues = list(by_host.values())
    result: list[Source] = []
    for i in range(max((len(q) for q in queues), default=0)):
        result.extend(q[i] for q in queues if i < len(q))
    return result


def _host_of(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else ""
    return rest.split("/", 1)[0].lower()


# --- `kpopnews poll --once` ---------------------------------------------------------------------------------


async def run_poll_once(config: Config, *, out: TextIO, err: TextIO) -> int:
    """`kpopnews poll --once`: one pass over every enabled source (and the disabled ones whose probe is due),
    stored, summarised. Posts nothing. The one place that wires the poll stage for the shell."""
    artists = await load_artist_index(err, without="stories are stored without artists")
    store = await Store.open_configured(config.storage, artists=artists)
    workers = Workers()
    try:
        configured = await store.sources.sync_config(config.sources)

        async def cluster_new(stories: list[Story]) -> None:
            # stored and clustered, so `kpopnews trending` sees them; nothing is queued for Discord
            async with store.transaction():
                await after_store(store, stories, config=config.delivery, deliver=False)

        async with make_session(config.polling) as session:
            fetcher = Fetcher(session, config.polling)
            poller = Poller(config, store, fetcher, artists, on_new_stories=cluster_new, workers=workers)
            tty = _isatty(err)

            def progress(done: int, total: int, report: SourceReport) -> None:
                err.write("\r\x1b[2K" + f"[{done}/{total}] {report.line()}"[:200])
                err.flush()

            report = await poller.poll_all(progress=progress if tty else None)
            if tty and report.sources:
                err.write("\r\x1b[2K")
                err.flush()
        polled = {r.source.id for r in report.sources}
        for source in configured:  # said once per run, so an operator does not forget them
            if not source.enabled and source.id not in polled:
                print(f"{source.name}: {disabled_text(source)}", file=out)
        for item in report.sources:
            print(item.line(), file=out)
        print(report.total_line(), file=out)
        # A source backing off was not read either: named like a failure, so cron mail says so.
        unread = [r for r in report.sources if r.outcome in ("failed", "skipped")]
        for item in unread:
            where = (
                item.source.name
                if item.source.url in (item.error or "")
                else f"{item.source.name} ({item.source.url})"
            )
            print(f"kpopnews: {where}: {item.error}", file=err)
        return 1 if unread else 0
    finally:
        await asyncio.to_thread(workers.close)  # the worker processes end with the command
        await store.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
