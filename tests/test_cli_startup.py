"""`kpopnews search` starts lean: it loads what a search needs (the store, the artist names) and nothing of the
bot, the feeds or the other engine; the answer is the same as ever."""

import json
import subprocess
import sys

from tests.support.cli import child_env, run_kpopnews

# run the command in a fresh interpreter, then list what it imported
PROBE = """
import io, json, sys
from bot.cli import main
code = main(sys.argv[1:], out=io.StringIO())
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
NEVER_FOR_SEARCH = {
    "discord",  # the bot
    "aiohttp",  # fetching
    "feedparser",  # parsing feeds
    "selectolax",  # reading article HTML
    "asyncpg",  # the other engine: this store is a SQLite file
    "bot.artists.tagging",  # a search looks names up, it tags nothing
    "bot.poller",
    "bot.enrich",
    "bot.clustering",
}


def imported_by(tmp_path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        env=child_env({"KPOPNEWS_CACHE_DIR": str(tmp_path / "cache"), **(env or {})}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    return {name.split(".")[0] if not name.startswith("bot.") else name for name in report["modules"]}


def test_search_imports_nothing_of_the_bot_or_the_feeds(tmp_path):
    # the store made first (creating a database may take more, once), with a kept index of its own elsewhere
    made = run_kpopnews("search", "V", cwd=tmp_path, env={"KPOPNEWS_CACHE_DIR": str(tmp_path / "elsewhere")})
    assert made.returncode == 0 and (tmp_path / "kpopnews.db").exists()
    for attempt in ("builds the artist index", "reads the kept artist index"):
        modules = imported_by(tmp_path, "search", "V")
        assert not modules & NEVER_FOR_SEARCH, attempt
        assert "bot.embed" not in modules  # the embed is drawn only for --json
        assert "aiosqlite" in modules  # it did search the store
    assert list((tmp_path / "cache").glob("artist-index-*"))
    modules = imported_by(tmp_path, "search", "V", "--json")
    # the embed's text helpers (bot/text.py) bring the HTML parser along; nothing else comes with --json
    assert not modules & (NEVER_FOR_SEARCH - {"selectolax"}) and "bot.embed" in modules


def test_search_answers_the_same_from_the_kept_index(tmp_path):
    env = {"KPOPNEWS_CACHE_DIR": str(tmp_path / "cache")}
    first = run_kpopnews("search", "Taehyung", cwd=tmp_path, env=env)
    assert list((tmp_path / "cache").glob("artist-index-*"))
    second = run_kpopnews("search", "Taehyung", cwd=tmp_path, env=env)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert second.stdout.startswith("Stories about V (BTS)")
