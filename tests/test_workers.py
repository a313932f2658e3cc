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
