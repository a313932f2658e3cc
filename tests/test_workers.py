"""The parse/enrich worker processes end with the bot, even after a kill -9 that leaves no one to stop them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
