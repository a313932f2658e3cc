"""The poll stage: every source fetched on schedule, new entries enriched and stored once, health kept.

Per source: a conditional fetch (stored ETag / Last-Modified; a 304 costs nothing), a body-hash check (an
unchanged body is not parsed), feedparser in a worker process, only the entries not stored yet enriched (in a
worker process too, after their article pages are fetched here), one
transaction to store them, then `on_new_stories`. Failures back off exponentially with jitter, Retry-After is
honoured, 410 Gone and `max_failures` failures in a row disable the source with a reason a person can act on.
Nothing a source does can stop the poller or the other sources.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TextIO

from bot.artists import load_artist_index
from bot.config import Config
from bot.enrich import (  # imported here: a first import on the loop stalls it
    enrich_batch,
    enrich_entries,
    pages_wanted,
    wants_article_page,
)
from bot.fetch import Fetcher, FetchResult, body_hash, make_page_fetcher, make_session
from bot.models import FeedEntry, Source, Story
from bot.parse import FeedError, ParsedFeed, parse_feed
from bot.pipeline import after_store
from bot.store import Store
from bot.timeutil import to_iso, utcnow
from bot.urls import canonical_url, story_key

if TYPE_CHECKING:
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

Outcome = Literal["fetched", "not_modified", "unchanged", "failed", "skipped"]
NewStoriesHook = Callable[[list[Story]], Awaitable[None]]

MAX_BACKOFF_SECONDS = 6 * 3600.0
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0  # a server asking for more is still polled once a day
RESCAN_SECONDS = 30.0  # run_forever looks for added/removed sources at least this often
# Parse and enrich run in worker processes (in threads they would contend for one GIL); one core is left to
# the event loop: on 2 (shared) cores, 100 feeds: 2 workers gave 15-30% more stories/s but a worst stall over
# 100 ms in 6 of 9 runs (53-149 ms); 1 worker stalled over 100 ms in 3 of 12 (57-191 ms, when others loaded it).
WORKER_PROCESSES = max(1, min(4, (os.cpu_count() or 2) - 1))
WORKER_TIMEOUT_SECONDS = 60.0  # a feed that takes longer is hostile or broken: its worker is killed
PAGES_PER_SOURCE = 4  # article pages fetched at once for one source's new stories
# Enrichment in this process (a custom artist index) is GIL-bound: more at once only delays the loop.
ENRICH_SLOTS = 2
_TIME = "%Y-%m-%d %H:%M UTC"


@dataclass
class SourceReport:
    source: Source
    outcome: Outcome
    new_stories: int = 0
    stories_seen: int = 0
    error: str | None = None  # why it failed or was skipped
    warning: str | None = None  # the parser kept what it could read of a malformed feed
    new: list[Story] = field(default_factory=list, repr=False)  # the stories stored for the first time

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    def line(self) -> str:
        """One line for `poll --once`: "Koreaboo: fetched, 20 stories, 3 new"."""
        name = self.source.name
        if self.outcome == "fetched":
            text = f"{name}: fetched, {_count(self.stories_seen, 'story', 'stories')}, {self.new_stories} new"
            return text + (f" (warning: {self.warning})" if self.warning else "")
        if self.outcome == "not_modified":
            return f"{name}: not modified"
        if self.outcome == "unchanged":
            return f"{name}: unchanged since the last poll"
        if self.outcome == "skipped":
            return f"{name}: skipped: {self.error}"
        return f"{name}: failed: {self.error}"


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
        parts = [
            f"{self.count(o)} {label}"
            for o, label in (
                ("fetched", "fetched"),
                ("not_modified", "not modified"),
                ("unchanged", "unchanged"),
                ("failed", "failed"),
                ("skipped", "skipped"),
            )
            if self.count(o)
        ]
        head = f"total: {_count(len(self.sources), 'source', 'sources')}"
        if parts:
            head += ", " + ", ".join(parts)
        return f"{head}; {_count(self.seen_total, 'story', 'stories')}, {self.new_total} new"


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
    ) -> None:
        self.config = config
        self.polling = config.polling
        self.store = store
        self.fetcher = fetcher
        self.artists = artists
        self.on_new_stories = on_new_stories
        self.clock = clock
        self.rng = rng or random.Random()
        # One aiosqlite connection is shared: two polls' transactions (or a poll's and a delivery's) must not
        # interleave on it, so every writer holds the store's lock.
        self._write_lock = store.write_lock if store is not None else asyncio.Lock()
        self.workers = workers or shared_workers()
        self._enrich_slots = asyncio.Semaphore(ENRICH_SLOTS)
        self._source_slots = asyncio.Semaphore(self.polling.concurrency)
        self._wake = asyncio.Event()

    # --- one source -------------------------------------------------------------------------------------

    async def poll_source(self, source: Source) -> SourceReport:
        """Poll one source now and save its state. Never raises (but for cancellation)."""
        if not source.enabled:
            return SourceReport(source, "skipped", error=f"disabled: {source.disabled_reason}")
        try:
            return await self._poll(source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a database problem: this source fails, the others go on
            log.error(
                "polling %s failed unexpectedly: %r",
                source.url,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            message = (
                f"internal error while polling ({type(exc).__name__}: {exc}); see the log, please report it"
            )
            try:
                return await self._failed(source, message)
            except Exception as again:
                log.error("cannot save the state of %s: %r", source.url, again)
                return SourceReport(source, "failed", error=message)

    async def _poll(self, source: Source) -> SourceReport:
        allow_private = source.owner_guild_id is None  # the operator's sources may point anywhere
        result = await self.fetcher.fetch(
            source.url,
            etag=source.etag,
            last_modified=source.last_modified,
            max_bytes=self.polling.max_feed_bytes,
            allow_private=allow_private,
        )
        if result.status == "error":
            return await self._failed(
                source, result.error or "fetch failed", retry_after=result.retry_after, gone=result.gone
            )
        if result.status == "not_modified":
            self._succeeded(source, "not_modified", result)
            await self._save(source)
            return SourceReport(source, "not_modified")

        body = result.body or b""
        digest = body_hash(body)
        if digest == source.body_hash:  # the server has no validators, or ignored them: same bytes, no parse
            self._succeeded(source, "ok", result)
            await self._save(source)
            return SourceReport(source, "unchanged")

        try:
            parsed = await self.workers.parse(body, url=result.url, content_type=result.content_type)
        except FeedError as exc:
            return await self._failed(source, str(exc))
        entries = [e for e in parsed.entries if e.link or e.guid]
        try:
            new, stored_total = await self._store_entries(source, entries, allow_private=allow_private)
        except WorkerError as exc:  # enriching the new stories hung or crashed its worker
            return await self._failed(source, f"{source.url}: enriching its new stories {exc}")
        self._succeeded(source, "ok", result, body_hash=digest)
        await self._save(source)
        if new and self.on_new_stories is not None:
            try:
                await self.on_new_stories(new)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # delivery's problem, not the source's: it stays healthy
                log.error("handling %d new stories of %s failed: %r", len(new), source.name, exc)
        return SourceReport(
            source, "fetched", len(new), stored_total, warning=getattr(parsed, "warning", None), new=new
        )

    async def _store_entries(
        self, source: Source, entries: list[FeedEntry], *, allow_private: bool
    ) -> tuple[list[Story], int]:
        """Enrich the entries not stored yet, store them in one transaction, link the known ones to this
        source. Returns the stories stored for the first time and the number of distinct entries seen."""
        distinct: list[tuple[FeedEntry, str, str]] = []
        seen: set[str] = set()
        for entry in entries:
            key = story_key(entry.guid, entry.link)
            canon = canonical_url(entry.link) if entry.link else ""
            if not key or key in seen or (canon and canon in seen):
                continue
            seen.update(filter(None, (key, canon)))
            distinct.append((entry, key, canon))
        known = await self.store.stories.known_keys(
            [k for _, k, _ in distinct], [c for _, _, c in distinct if c]
        )
        fresh = [(e, k, c) for e, k, c in distinct if k not in known and not (c and c in known)]
        known_ids = {known.get(k) or known[c] for e, k, c in distinct if k in known or (c and c in known)}

        stories: list[Story] = []
        if fresh:
            stories = await self._enrich([e for e, _, _ in fresh], source, allow_private=allow_private)
            for story, (_entry, key, canon) in zip(stories, fresh, strict=False):
                story.key = story.key or key
                story.canonical_url = story.canonical_url or canon or story.key
            for story in stories:  # enrichment may drop or add entries: never store a story without identity
                story.key = story.key or story_key(None, story.url)
                story.canonical_url = story.canonical_url or canonical_url(story.url) or story.key
            stories = [s for s in stories if s.key]

        backfill = source.last_success_at is None  # already in the feed when we first read it: never posted
        async with self._write_lock:
            if known_ids and source.id is not None:
                now = to_iso(self.clock())
                await self.store.db.executemany(
                    "INSERT OR IGNORE INTO source_stories(source_id, story_id, first_seen_at) VALUES (?,?,?)",
                    [(source.id, story_id, now) for story_id in sorted(known_ids)],
                )
            results = await self.store.stories.add_many(stories, source_id=source.id, backfill=backfill)
        new = [story for story, stored in zip(stories, results, strict=True) if stored.is_new]
        return new, len(distinct)

    async def _enrich(self, entries: list[FeedEntry], source: Source, *, allow_private: bool) -> list[Story]:
        """bot.enrich.enrich_entries, with the I/O here and the CPU work in a worker process: article pages
        (for the entries the enrich stage says need one) are fetched first, on this loop, then handed over."""
        pages: dict[str, str | None] = {}
        if self.polling.fetch_article_pages:
            fetch_page = make_page_fetcher(self.fetcher, allow_private=allow_private)
            wanted = await asyncio.to_thread(lambda: [e.link for e in entries if wants_article_page(e)])
            slots = asyncio.Semaphore(PAGES_PER_SOURCE)

            async def load(link: str) -> None:
                async with slots:
                    try:
                        pages[link] = await fetch_page(link)
                    except Exception as exc:  # a page is a bonus: the story stands without it
                        log.debug("article page %s not used: %r", link, exc)
                        pages[link] = None

            await asyncio.gather(*(load(link) for link in dict.fromkeys(wanted)))
        if self._artists_in_workers():
            return await self.workers.enrich(
                entries, source_name=source.name, pages=pages, with_artists=self.artists is not None
            )

        async def page(url: str) -> str | None:
            return pages.get(url)

        async with self._enrich_slots:  # a custom artist index cannot cross to a worker: enrich here
            return await enrich_entries(
                entries, source_name=source.name, artists=self.artists, fetch_page=page
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
        self, source: Source, status: str, result: FetchResult, *, body_hash: str | None = None
    ) -> None:
        now = self.clock()
        source.last_fetched_at = now
        source.last_success_at = now
        source.last_status = status
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

    async def _failed(
        self, source: Source, message: str, *, retry_after: float | None = None, gone: bool = False
    ) -> SourceReport:
        """Count the failure, back off (never sooner than Retry-After), disable when it is hopeless.
        Validators and body hash are kept: a feed that failed to parse is fetched and parsed again next time."""
        now = self.clock()
        source.last_fetched_at = now
        source.last_status = "error"
        source.last_error = message
        source.consecutive_failures += 1
        delay = self.backoff_seconds(source.consecutive_failures)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        source.next_poll_at = now + timedelta(seconds=delay)
        if gone:
            source.disabled_reason = (
                f"the feed answered 410 Gone on {now.strftime(_TIME)}: the site removed it. "
                "Remove this source, or add the feed again at its new address"
            )
        elif source.consecutive_failures >= self.polling.max_failures:
            source.disabled_reason = (
                f"disabled on {now.strftime(_TIME)} after {source.consecutive_failures} failed polls in a row "
                f"(last: {message}). Check the URL in a browser, then fix or remove this source"
            )
        await self._save(source)
        return SourceReport(source, "failed", error=message)

    def backoff_seconds(self, failures: int) -> float:
        """Exponential from the polling interval, capped (6 h, or the interval if longer), with ±20% jitter."""
        interval = self.polling.interval_seconds
        cap = max(MAX_BACKOFF_SECONDS, interval)
        base = min(cap, interval * 2 ** min(max(failures, 1) - 1, 30))
        return base * self.rng.uniform(0.8, 1.2)

    def _jittered(self, seconds: float) -> float:
        return seconds * self.rng.uniform(0.9, 1.1)  # sources drift apart instead of polling in lockstep

    async def _save(self, source: Source) -> None:
        async with self._write_lock:
            if source.id is not None and source.disabled_reason is None:
                # Disabled while we polled (say, removed from Discord): our stale copy must not re-enable it.
                async with self.store.db.execute(
                    "SELECT disabled_reason FROM sources WHERE id = ?", (source.id,)
                ) as cursor:
                    row = await cursor.fetchone()
                if row is None:
                    return  # deleted meanwhile
                source.disabled_reason = row[0]
            await self.store.sources.save_state(source)

    # --- every source -----------------------------------------------------------------------------------

    async def poll_all(
        self, *, progress: Callable[[SourceReport], None] | None = None, respect_backoff: bool = True
    ) -> PollReport:
        """Every enabled source once, concurrently (bounded). A source backing off after failures (or asked
        to wait by Retry-After) is skipped until its time unless respect_backoff is False."""
        sources = _interleave_hosts(await self.store.sources.list(enabled_only=True))
        now = self.clock()

        async def one(source: Source) -> SourceReport:
            waiting = (
                respect_backoff
                and source.consecutive_failures > 0
                and source.next_poll_at is not None
                and source.next_poll_at > now
            )
            if waiting:
                assert source.next_poll_at is not None
                report = SourceReport(
                    source,
                    "skipped",
                    error=f"backing off until {source.next_poll_at.strftime(_TIME)} after "
                    f"{_count(source.consecutive_failures, 'failure', 'failures')} (last: {source.last_error})",
                )
            else:
                async with self._source_slots:
                    report = await self.poll_source(source)
            if progress is not None:
                try:
                    progress(report)
                except Exception as exc:  # a display problem must not lose the poll
                    log.debug("progress callback failed: %r", exc)
            return report

        reports = await asyncio.gather(*(one(s) for s in sources))
        order = {id(s): i for i, s in enumerate(sorted(sources, key=lambda s: s.id or 0))}
        return PollReport(sorted(reports, key=lambda r: order[id(r.source)]))

    def wake(self) -> None:
        """Make run_forever look at the sources now (e.g. one was just added from Discord)."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Poll each enabled source every interval, spread over the interval with jitter, honouring each
        source's next_poll_at (backoff, Retry-After). Logs and goes on after any error; cancel to stop."""
        planned: dict[int, datetime] = {}
        running: dict[int, asyncio.Task[None]] = {}
        first_scan = True
        try:
            while True:
                sleep_for = RESCAN_SECONDS
                try:
                    sources = await self.store.sources.list(enabled_only=True)
                    now = self.clock()
                    alive = set()
                    for source in sources:
                        if source.id is None:
                            continue
                        alive.add(source.id)
                        if source.id in running:
                            continue
                        when = planned.get(source.id)
                        if when is None:
                            when = planned[source.id] = self._first_slot(source, now, startup=first_scan)
                        if when <= now:
                            running[source.id] = asyncio.create_task(
                                self._scheduled_poll(source, planned, running), name=f"poll {source.url}"
                            )
                    for source_id in [s for s in planned if s not in alive and s not in running]:
                        del planned[source_id]  # removed or disabled
                    first_scan = False
                    waits = [(t - now).total_seconds() for s, t in planned.items() if s not in running]
                    sleep_for = max(0.05, min([RESCAN_SECONDS, *waits]))
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
            for task in running.values():
                task.cancel()
            if running:
                await asyncio.gather(*running.values(), return_exceptions=True)

    def _first_slot(self, source: Source, now: datetime, *, startup: bool) -> datetime:
        if source.next_poll_at is not None and source.next_poll_at > now:
            return source.next_poll_at  # backoff, Retry-After, or simply not due: kept across restarts
        interval = self.polling.interval_seconds
        # At start-up every due source is spread over one interval; a source added later starts soon.
        window = interval if startup else min(interval, 5.0)
        return now + timedelta(seconds=self.rng.uniform(0, window))

    async def _scheduled_poll(
        self, source: Source, planned: dict[int, datetime], running: dict[int, asyncio.Task[None]]
    ) -> None:
        assert source.id is not None
        try:
            async with self._source_slots:
                await self.poll_source(source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # poll_source does not raise; this is the last net
            log.error("poll of %s failed: %r", source.url, exc)
        finally:
            fallback = self.clock() + timedelta(seconds=self._jittered(self.polling.interval_seconds))
            planned[source.id] = source.next_poll_at or fallback
            running.pop(source.id, None)
            self._wake.set()


class WorkerError(Exception):
    """A job in a worker process timed out or its worker died; the message says which and what follows."""


class Workers:
    """The CPU-heavy stages (feedparser, enrichment) in worker processes: the loop and its GIL stay free, a
    second core helps, and a feed that makes a stage hang or crash costs a worker process, never the bot.
    Falls back to threads where processes cannot be started."""

    def __init__(self, workers: int = WORKER_PROCESSES, timeout: float = WORKER_TIMEOUT_SECONDS) -> None:
        self.workers = workers
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._threads_only = False
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None  # a semaphore belongs to one event loop

    async def parse(self, body: bytes, *, url: str, content_type: str | None) -> ParsedFeed:
        """bot.parse.parse_feed off the loop; FeedError for a feed that cannot be read, hangs or crashes it."""
        try:
            return await self.run(functools.partial(parse_feed, body, url=url, content_type=content_type))
        except WorkerError as exc:
            raise FeedError(f"{url}: {exc}") from None

    async def enrich(
        self, entries: list[FeedEntry], *, source_name: str, pages: dict[str, str | None], with_artists: bool
    ) -> list[Story]:
        """bot.enrich.enrich_entries in a worker, with the article pages already fetched (keyed by link) and
        the packaged artist index (loaded once per worker) when with_artists."""
        return await self.run(functools.partial(_enrich_job, entries, source_name, pages, with_artists))

    async def run(self, job: Callable[[], Any]) -> Any:
        """Run a picklable job in a worker; WorkerError when it takes longer than `timeout` or kills its worker."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(self.workers), loop
        async with self._slots:  # queued jobs wait here, so the timeout measures the work alone
            pool = self._executor()
            if pool is None:
                return await asyncio.to_thread(job)
            try:
                # submit from a thread: it may start a worker process (tens of ms)
                try:
                    future = await asyncio.to_thread(pool.submit, job)
                except RuntimeError:  # another job's timeout just shut this pool down
                    raise WorkerError(
                        "was not processed: the worker processes were restarting; will retry later"
                    ) from None
                return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
            except TimeoutError:
                self._recycle(pool)
                raise WorkerError(
                    f"took longer than {self.timeout:g} s to process: too big or too complex to read"
                ) from None
            except concurrent.futures.BrokenExecutor:
                self._recycle(pool)
                raise WorkerError(
                    "the worker process stopped while reading it (out of memory?); will retry later"
                ) from None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor | None:
        if self._pool is None and not self._threads_only:
            try:
                # spawn: workers inherit no threads, loop or sockets, and are our children, so they die with us
                context = multiprocessing.get_context("spawn")
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=context,
                    initializer=_die_with_parent,
                    initargs=(os.getpid(),),
                )
            except (OSError, ValueError, NotImplementedError) as exc:
                log.warning("parsing and enrichment run in threads: worker processes cannot start (%s)", exc)
                self._threads_only = True
        return self._pool

    def _recycle(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """Kill a pool whose worker hangs or died; the next job starts a fresh one."""
        if self._pool is pool:
            self._pool = None
        for process in list(getattr(pool, "_processes", {}).values()):  # no public way to stop a busy worker
            with contextlib.suppress(Exception):
                process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _die_with_parent(parent_pid: int) -> None:
    """In a worker process: end with the bot that started it. After a kill -9 of the bot nobody shuts the pool
    down, and an orphaned worker would live on holding the bot's stderr; a watchdog thread notices."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="kpopnews-parent-watch", daemon=True).start()


def _enrich_job(
    entries: list[FeedEntry], source_name: str, pages: dict[str, str | None], with_artists: bool
) -> list[Story]:
    """In a worker process: the one enrichment path, its page fetcher answering from the pages given."""
    artists = None
    if with_artists:
        from bot.artists import ArtistIndex

        artists = ArtistIndex.load()  # once per worker process

    # enrich_entries without its event loop and threads (a loop per job cost ~5 ms): the same two steps
    # no page fetched (full-content feed, or pages off): every page is None, nothing to look up
    wanted = pages_wanted(entries) if pages else {}
    by_canonical = {canonical: pages.get(link) for canonical, link in wanted.items()}
    return enrich_batch(entries, source_name=source_name, artists=artists, pages=by_canonical)


_workers: Workers | None = None


def shared_workers() -> Workers:
    """The process's worker pool (shared by every Poller)."""
    global _workers
    if _workers is None:
        _workers = Workers()
    return _workers


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
    """`kpopnews poll --once`: one pass over every enabled source, stored, summarised. Posts nothing."""
    store = await Store.open_configured(config.storage)
    try:
        await store.sources.sync_config(config.sources)
        configured = {s.url for s in config.sources}
        disabled = [s for s in await store.sources.list() if s.url in configured and not s.enabled]
        artists = await load_artist_index(err, without="stories are stored without artists")
        store.artists = artists

        async def cluster_new(stories: list[Story]) -> None:
            # stored and clustered, so `kpopnews trending` sees them; nothing is queued for Discord
            async with store.write_lock:
                await after_store(store, stories, config=config.delivery, deliver=False)

        async with make_session(config.polling) as session:
            poller = Poller(
                config, store, Fetcher(session, config.polling), artists, on_new_stories=cluster_new
            )
            tty = _isatty(err)
            total = len(await store.sources.list(enabled_only=True))
            done = 0

            def progress(report: SourceReport) -> None:
                nonlocal done
                done += 1
                text = f"[{done}/{total}] {report.line()}"
                err.write("\r\x1b[2K" + text[:200])
                err.flush()

            try:
                report = await poller.poll_all(progress=progress if tty else None)
            finally:
                await asyncio.to_thread(poller.workers.close)  # the worker processes end with the command
            if tty and total:
                err.write("\r\x1b[2K")
                err.flush()
        for source in disabled:  # said once per run, so an operator does not forget them
            print(f"{source.name}: disabled: {source.disabled_reason}", file=out)
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
        await store.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
