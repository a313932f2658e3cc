"""The parse/enrich worker processes: jobs run outside this process, a stuck one costs its worker, and workers end
with the bot, even after a kill -9 that leaves no one to stop them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.parse import FeedError
from bot.workers import Workers
from tests.support.feed_server import wordpress_feed

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, os, sys, time
from bot.workers import Workers

async def main():
    print(await Workers(1).run(os.getpid), flush=True)
    time.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended; only its exit status is left
        return stat.read().split()[2] != "Z"


def test_a_worker_outlives_no_kill_9_of_its_bot(tmp_path):
    script = tmp_path / "bot_like.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        worker = int(child.stdout.readline())
        assert worker != child.pid and _alive(worker)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker process outlived its bot"
    finally:
        child.kill()


async def test_parsing_runs_in_worker_processes_that_survive_a_parse_that_takes_too_long():
    parsers = Workers(workers=1, timeout=30)
    try:
        parsed = await parsers.parse(wordpress_feed(3, prefix="w"), url="http://x/feed", content_type=None)
        assert [e.link for e in parsed.entries] == [f"https://news.example.com/news/w-{i}/" for i in range(3)]
        first_pool = parsers._pool
        assert first_pool is not None and all(p.pid != os.getpid() for p in first_pool._processes.values())
        with pytest.raises(FeedError, match="HTML"):  # the parser's own error crosses the process boundary
            await parsers.parse(
                b"<!doctype html><html><body>home</body></html>", url="http://x/", content_type=None
            )
        parsers.timeout = 0.0001
        with pytest.raises(FeedError, match="took longer than 0.0001 s to process"):
            await parsers.parse(wordpress_feed(200, prefix="big"), url="http://x/big", content_type=None)
        assert parsers._pool is None  # the stuck worker was killed with its pool
        parsers.timeout = 30
        again = await parsers.parse(wordpress_feed(1, prefix="a"), url="http://x/feed", content_type=None)
        assert len(again.entries) == 1 and parsers._pool is not first_pool
    finally:
        parsers.close()


async def test_one_job_reads_a_feed_and_enriches_only_what_the_source_did_not_carry():
    from bot.urls import story_key

    body = wordpress_feed(3, prefix="known", site="https://www.koreaboo.com")
    first, second, third = (story_key(f"https://www.koreaboo.com/?p=known-{i}", "") for i in range(3))
    workers = Workers(workers=1, timeout=30)
    try:
        batch = await workers.read_feed(
            body,
            url="https://www.koreaboo.com/feed/",
            content_type="application/rss+xml",
            source_name="Koreaboo",
            known={first, "https://www.koreaboo.com/news/known-1/"},  # by key, and by canonical link
            enrich=True,
            with_artists=False,
            pages=True,
        )
    finally:
        workers.close()
    assert batch.seen == 3 and batch.pending == []  # full-content items: no page wanted
    assert [s.key for s in batch.stories] == [third]
    assert second not in {s.key for s in batch.stories}
    assert batch.stories[0].title.startswith("BTS’s V and IU story known-2")
    assert batch.stories[0].canonical_url == "https://www.koreaboo.com/news/known-2/"


async def test_excerpt_items_come_back_pending_for_their_pages_and_everything_when_enrichment_stays_here():
    from tests.support.feed_server import rss

    items = [
        {"title": f"IU news {i}", "link": f"https://www.soompi.com/article/{i}", "description": "Short […]"}
        for i in range(2)
    ]
    body = rss(items, title="Soompi", link="https://www.soompi.com/")
    workers = Workers(workers=1, timeout=30)
    try:
        read = {"url": "https://www.soompi.com/feed", "content_type": None, "source_name": "Soompi"}
        paged = await workers.read_feed(body, **read, known=(), enrich=True, with_artists=False, pages=True)
        no_pages = await workers.read_feed(
            body, **read, known=(), enrich=True, with_artists=False, pages=False
        )
        here = await workers.read_feed(body, **read, known=(), enrich=False, with_artists=False, pages=False)
    finally:
        workers.close()
    assert [p.canonical for p in paged.pending] == [i["link"] for i in items] and paged.stories == []
    assert [s.url for s in no_pages.stories] == [i["link"] for i in items] and no_pages.pending == []
    assert len(here.pending) == 2 and here.stories == []
