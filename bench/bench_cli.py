"""`kpopnews search V`: the whole process, start to exit, against `python -c pass` (the interpreter's own start)
measured in the same run, median of N runs each, interleaved so a neighbour's burst hits both alike.

    /work/venv/bin/python bench/bench_cli.py               # 20 runs each, over a 20,000-story store
    /work/venv/bin/python bench/bench_cli.py --runs 40 --stories 100000 --no-bytecode

The program runs as `python -m bot` from this checkout, in a temporary folder holding the store (the default
`./kpopnews.db`). Bytecode is written and used as an installed copy would (one warm-up run first);
`--no-bytecode` measures every run compiling the sources that have no __pycache__ yet
(PYTHONDONTWRITEBYTECODE, as this machine's checkouts are run). Goal (issue 12): median < 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_search import fill  # noqa: E402
from bot.artists import ArtistIndex  # noqa: E402
from bot.store import Store  # noqa: E402


async def make_store(path: Path, stories: int) -> None:
    store = await Store.open(path)
    try:
        await fill(store, ArtistIndex.load(), stories)
    finally:
        await store.close()


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    parser.add_argument("--stories", type=int, default=20_000, help="stories in the store (default 20,000)")
    parser.add_argument("--no-bytecode", action="store_true", help="compile every run (no __pycache__)")
    parser.add_argument("--query", default="V", help="what to search for (default V)")
    parser.add_argument(
        "--compare",
        metavar="CHECKOUT",
        help="also time another checkout of the project (e.g. main) in the same run",
    )
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DISCORD_TOKEN")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    if args.no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        env["KPOPNEWS_CACHE_DIR"] = str(cwd / "cache")  # the kept artist index: written by the warm-up run
        if not args.no_bytecode:  # bytecode in a folder of its own: nothing written into any checkout
            env["PYTHONPYCACHEPREFIX"] = str(cwd / "pycache")
        asyncio.run(make_store(cwd / "kpopnews.db", args.stories))
        search = [sys.executable, "-m", "bot", "search", args.query]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "search": (search, env),
            "search --json": ([*search, "--json"], env),
            "python -c pass": ([sys.executable, "-c", "pass"], env),
        }
        if args.compare:
            other = {**env, "PYTHONPATH": str(Path(args.compare).resolve())}
            commands[f"search ({Path(args.compare).name})"] = (search, other)
            commands[f"search --json ({Path(args.compare).name})"] = ([*search, "--json"], other)
        first = timed(search, cwd, env)  # the first run builds and keeps the artist index
        for command, command_env in commands.values():  # warm-up: bytecode written, files in the page cache
            timed(command, cwd, command_env)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.runs):
            for label, (command, command_env) in commands.items():
                times[label].append(timed(command, cwd, command_env))
    base = statistics.median(times["python -c pass"])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"`kpopnews search {args.query}` over {args.stories:,} stories, {args.runs} runs each "
          f"({'no bytecode' if args.no_bytecode else 'bytecode cached'}; load average {load}):")  # fmt: skip
    print(f"  first run (artist index built and kept, bytecode compiled): {first * 1000:.0f} ms")
    for label, values in times.items():
        med = statistics.median(values)
        extra = "" if label == "python -c pass" else f"  (+{(med - base) * 1000:.0f} ms over the interpreter)"
        print(f"  {label:<16} median {med * 1000:6.0f} ms, min {min(values) * 1000:5.0f}, "
              f"max {max(values) * 1000:5.0f}{extra}")  # fmt: skip
    med = statistics.median(times["search"])
    print(f"goal median < 300 ms: {'met' if med < 0.300 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
