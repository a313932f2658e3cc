"""Running the `kpopnews` program as a child process, the same way in every test.

    done = run_kpopnews("search", "V", "--json", cwd=tmp_path)            # never a traceback, or the test fails
    done = run_kpopnews("run", cwd=tmp_path, env={"DISCORD_TOKEN": ""})     # our environment, plus these
    done = run_kpopnews("poll", "--once", cwd=tmp_path, inherit_env=False)  # only PATH and PYTHONPATH

`bot_process` (tests/support/bot_harness.py) starts `kpopnews run` with the same command and environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 60.0  # seconds one command may take on a busy machine


def kpopnews_command() -> list[str]:
    """The installed `kpopnews` console script, else `python -m bot` (the same program)."""
    script = Path(sys.executable).with_name("kpopnews")
    if script.exists():
        return [str(script)]
    found = shutil.which("kpopnews")
    return [found] if found else [sys.executable, "-m", "bot"]


def child_env(env: Mapping[str, str] | None = None, *, inherit: bool = True) -> dict[str, str]:
    """The environment for the program: ours without DISCORD_TOKEN (a developer's real token never reaches a
    test), or with inherit=False only a system PATH (the program must not need anything else); this checkout
    first on PYTHONPATH either way, so the code under test runs, not an installed copy; then `env` on top."""
    if inherit:
        base = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    else:
        base = {"PATH": "/usr/bin:/bin"}
    paths = [str(REPO_ROOT), *(p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p)]
    base["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return {**base, **(env or {})}


def run_kpopnews(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
    timeout: float = RUN_TIMEOUT,
    command: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `kpopnews *args` in `cwd` to its end (stdin closed, output captured as text) and return what it did.
    Whatever the outcome, neither stdout nor stderr may hold a traceback: that fails the calling test.
    `command` replaces the program (e.g. `[sys.executable, "-m", "bot"]`)."""
    done = subprocess.run(
        [*(command or kpopnews_command()), *args],
        cwd=cwd,
        env=child_env(env, inherit=inherit_env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout
    return done
