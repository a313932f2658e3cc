"""Worker processes for the CPU-heavy stages (feedparser, enrichment), so the event loop and its GIL stay free.

A feed that makes a stage hang or crash costs a worker process, never the bot; the workers are spawned (they
inherit no threads, loop or sockets) and end with the process that started them, even after a kill -9.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from bot.article_pages import wants_article_page
from bot.enrich import enrich_batch
from bot.models import FeedEntry, Story
from bot.parse import DistinctEntry, FeedError, ParsedFeed, distinct_entries, parse_feed

log = logging.getLogger(__name__)

# Parse and enrich run in worker processes (in threads they would contend for one GIL); one core is left to
# the event loop: on 2 (shared) cores, 100 feeds: 2 workers gave 15-30% more stories/s but a worst stall over
# 100 ms in 6 of 9 runs (53-149 ms); 1 worker stalled over 100 ms in 3 of 12 (57-191 ms, when others loaded it).
WORKER_PROCESSES = max(1, min(4, (os.cpu_count() or 2) - 1))
WORKER_NICENESS = 10  # the workers' priority below the bot's: the loop wins the CPU when both want it
WORKER_TIMEOUT_SECONDS = 60.0  # a feed that takes longer is hostile or broken: its worker is killed


@dataclass
class FeedBatch:
    """What one worker job makes of a feed's body: only what the poller needs back (no feedparser objects, no
    entries it already has), so little crosses between the processes."""

    warning: str | None  # the parser kept what it could read of a malformed feed
    seen: int  # distinct stories in the feed
    stories: list[Story] = field(
        default_factory=list
    )  # enriched: the items this source had not carried before
    # items it had not carried before that still need work here: their article page (excerpt feeds), or the
    # enrichment itself when the artist index cannot cross to a worker; with their key and canonical link
    pending: list[DistinctEntry] = field(default_factory=list)


class WorkerError(Exception):
    """A job in a worker process timed out or its worker died; the message says which and what follows."""


class Workers:
    """A pool of worker processes for parse and enrich jobs. Falls back to threads where processes cannot be
    started."""

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
        """bot.enrich.enrich_batch in a worker, with the article pages already fetched (as
        bot.article_pages.fetch_article_pages gives them) and the packaged artist index (loaded once per worker)
        when with_artists."""
        return await self.run(functools.partial(_enrich_job, entries, source_name, pages, with_artists))

    async def read_feed(
        self,
        body: bytes,
        *,
        url: str,
        content_type: str | None,
        source_name: str,
        known: Collection[str],
        enrich: bool,
        with_artists: bool,
        pages: bool,
    ) -> FeedBatch:
        """Parse a feed and enrich its new items in ONE worker job: `known` holds the keys and canonical links of
        the stories this source carried lately (skipped: nothing to do for them). Items that want their article
        page (when `pages`), and every new item when not `enrich`, come back pending. FeedError when the feed
        cannot be read; WorkerError when the job hangs or kills its worker."""
        job = functools.partial(
            _read_feed_job,
            body,
            url,
            content_type,
            source_name,
            frozenset(known),
            enrich,
            with_artists,
            pages,
        )
        return await self.run(job)

    async def run(self, job: Callable[[], Any]) -> Any:
        """Run a picklable job in a worker; WorkerError when it takes longer than `timeout` or kills its worker."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            # a job waiting beside each running one, so a worker starts its next job without waiting for this
            # loop to hand it over; the others wait here, so a job's timeout counts its own work and at most
            # the one ahead of it
            self._slots, self._slots_loop = asyncio.Semaphore(2 * self.workers), loop
        async with self._slots:
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
    """In a worker process: end with the bot that started it, and yield the CPU to it. After a kill -9 of the bot
    nobody shuts the pool down, and an orphaned worker would live on holding the bot's stderr; a watchdog thread
    notices. A lower priority lets the bot's event loop run as soon as it wakes (an interaction answered within
    Discord's 3 s, /news at once) while the workers parse and enrich with what is left."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="kpopnews-parent-watch", daemon=True).start()


def _read_feed_job(
    body: bytes,
    url: str,
    content_type: str | None,
    source_name: str,
    known: frozenset[str],
    enrich: bool,
    with_artists: bool,
    pages: bool,
) -> FeedBatch:
    """In a worker process: parse, drop what the source carried before, enrich what needs no page."""
    parsed = parse_feed(body, url=url, content_type=content_type)
    distinct = distinct_entries(parsed.entries)
    batch = FeedBatch(warning=parsed.warning, seen=len(distinct))
    fresh = [d for d in distinct if d.key not in known and not (d.canonical and d.canonical in known)]
    ready: list[DistinctEntry] = []
    for item in fresh:
        if not enrich or (pages and wants_article_page(item.entry)):
            batch.pending.append(item)
        else:
            ready.append(item)
    if ready:
        batch.stories = _enrich_job([d.entry for d in ready], source_name, {}, with_artists)
        for story, item in zip(batch.stories, ready, strict=True):
            item.identify(story)
    return batch


def _enrich_job(
    entries: list[FeedEntry], source_name: str, pages: dict[str, str | None], with_artists: bool
) -> list[Story]:
    """In a worker process: the one enrichment path, with the pages fetched by the parent."""
    artists = None
    if with_artists:
        from bot.artists import ArtistIndex

        artists = ArtistIndex.load()  # once per worker process
    return enrich_batch(entries, source_name=source_name, artists=artists, pages=pages)


_workers: Workers | None = None


def shared_workers() -> Workers:
    """The process's worker pool (shared by every Poller)."""
    global _workers
    if _workers is None:
        _workers = Workers()
    return _workers
