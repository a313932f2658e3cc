"""Article pages that do not answer: `kpopnews preview` and `kpopnews poll --once` of one big excerpt feed.

A local feed file of N excerpt-only items (default 10,000; newest first, one every 30 s, so about 2,900 are
within the 24 h delivery age), each linking to an article page that does not answer: every other item's page
hangs (a loopback server that accepts the request and never answers, /hang/ of tests/support/feed_server.py),
the others' pages are on a loopback address where nothing listens (connection refused). Each command runs as
its own process, with the default configuration (the 20 s request timeout included) unless told otherwise;
this script prints its wall time, the peak RSS of its whole process tree (worker processes included, sampled
from /proc every 50 ms) and how many stories it printed or stored.

    python bench/bench_pages.py                  # 10,000 items, both commands
    python bench/bench_pages.py --items 200      # a quick run
    python bench/bench_pages.py --only preview --timeout 300

The machine is shared: the seconds move with its load; run it twice when a figure is close to a goal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.feed_server import FeedServer, rss  # noqa: E402

GOAL_SECONDS, GOAL_MB = 60.0, 300.0
PAGE_SIZE = 4096


def closed_port(host: str) -> int:
    """A port on `host` where nothing listens: bound, then closed (connection refused from then on)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def excerpt_feed(items: int, hang_base: str, refused_base: str) -> bytes:
    now = datetime.now(UTC)
    entries = []
    for i in range(items):
        base = hang_base + "/hang" if i % 2 == 0 else refused_base + "/pages"
        entries.append(
            {
                "title": f"Story {i}: the group announces a comeback",
                "link": f"{base}/story-{i}",
                "guid": f"bench-pages-{i}",
                "description": f"The group shared the news of story {i} with fans during a live [&#8230;]",
                "pubDate": format_datetime(now - timedelta(seconds=30 * i)),
            }
        )
    return rss(entries, title="Excerpts", link="http://127.0.0.1/")


def tree_rss_kb(root: int) -> int:
    """The summed VmRSS of `root` and every process below it."""
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tree_pids(root: int) -> set[int]:
    """`root` and every process below it, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    wanted = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return wanted


async def run_measured(
    args: list[str], *, cwd: Path, stdout: Path, limit_seconds: float
) -> tuple[float, float, int | None]:
    """(seconds, peak MB of the process tree, exit status or None when it was killed at `limit_seconds`)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    with stdout.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - polled below without blocking the loop
            [sys.executable, "-m", "bot", *args], cwd=cwd, stdout=out, stderr=subprocess.PIPE, env=env
        )
        peak = 0
        code: int | None = None
        while True:
            peak = max(peak, tree_rss_kb(proc.pid))
            code = proc.poll()
            if code is not None:
                break
            if time.perf_counter() - started > limit_seconds:
                for pid in tree_pids(proc.pid):  # the command and its worker processes, by id
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait()
                code = None
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if code not in (0, None):
        print(f"  (exit {code}) {err.strip()[-400:]}")
    return elapsed, peak / 1024, code


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--only", choices=("preview", "poll"), default=None)
    parser.add_argument("--timeout", type=float, default=180.0, help="a run still going after this is killed")
    parser.add_argument(
        "--page-timeout", type=float, default=None, help="polling.timeout_seconds (default 20)"
    )
    parser.add_argument(
        "--floor", action="store_true", help="also run both without article pages: what the pages add"
    )
    opts = parser.parse_args()

    server = FeedServer()
    await server.start()
    try:
        hang_base = server.base_url
        refused_base = f"http://127.0.0.2:{closed_port('127.0.0.2')}"
        with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
            folder = Path(tmp)
            feed = folder / "excerpts.xml"
            feed.write_bytes(excerpt_feed(opts.items, hang_base, refused_base))
            print(
                f"{opts.items:,} excerpt items ({feed.stat().st_size / 1e6:.1f} MB), pages hanging at {hang_base}"
                f" or refused at {refused_base}; goal < {GOAL_SECONDS:g} s and < {GOAL_MB:g} MB each"
            )
            for pages in (True, False) if opts.floor else (True,):
                polling = f"timeout_seconds = {opts.page_timeout}\n" if opts.page_timeout else ""
                polling += "" if pages else "fetch_article_pages = false\n"
                label = "" if pages else " (no pages)"
                (folder / "config.toml").write_text(
                    f'[storage]\ndatabase = "{folder / "k.db"}"\n[polling]\n{polling}'
                    f'[[sources]]\nname = "Excerpts"\nurl = "{feed}"\n',
                    encoding="utf-8",
                )
                (folder / "k.db").unlink(missing_ok=True)
                config = ["--config", str(folder / "config.toml")]
                if opts.only in (None, "preview"):
                    out = folder / "preview.txt"
                    seconds, mb, code = await run_measured(
                        ["preview", str(feed), *config], cwd=folder, stdout=out, limit_seconds=opts.timeout
                    )
                    text = out.read_text(encoding="utf-8")
                    printed = text.count("\n■ ") + text.startswith("■ ")
                    report("preview" + label, seconds, mb, code, printed, opts.items, "printed")
                if opts.only in (None, "poll"):
                    out = folder / "poll.txt"
                    seconds, mb, code = await run_measured(
                        ["poll", "--once", *config], cwd=folder, stdout=out, limit_seconds=opts.timeout
                    )
                    stored = 0
                    if (folder / "k.db").exists():
                        with sqlite3.connect(folder / "k.db") as db:
                            stored = db.execute("SELECT count(*) FROM stories").fetchone()[0]
                    report("poll --once" + label, seconds, mb, code, stored, opts.items, "stored")
            print(f"page requests answered by the hanging server: {sum(server.hits.values()):,}")
    finally:
        await server.close()


def report(what: str, seconds: float, mb: float, code: int | None, done: int, items: int, verb: str) -> None:
    finished = "killed at the timeout" if code is None else f"exit {code}"
    ok = code is not None and seconds < GOAL_SECONDS and mb < GOAL_MB and done == items
    print(
        f"{what:22} {seconds:6.1f} s  peak {mb:5.0f} MB  {done:,}/{items:,} stories {verb}  ({finished})"
        f"  {'ok' if ok else 'MISSED'}"
    )


if __name__ == "__main__":
    asyncio.run(main())
