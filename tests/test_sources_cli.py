"""Feeds that change, seen from the shell: `poll --once` moving a redirected feed and probing a disabled one,
`kpopnews sources [--json]` and `kpopnews sources enable NAME`. The real program as a child process, feeds over
loopback, a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_kpopnews
from tests.support.feed_server import FeedServer, wordpress_feed

JSON_KEYS = {"name", "url", "enabled", "reason", "last_fetch", "next_poll", "stories"}


@pytest.fixture
async def server():
    async with FeedServer() as running:
        yield running


class Shell:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def configure(self, *sources: tuple[str, str]) -> None:
        text = f'[storage]\ndatabase = "{self.folder / "news.db"}"\n'
        for name, url in sources:
            text += f'\n[[sources]]\nname = "{name}"\nurl = "{url}"\n'
        (self.folder / "config.toml").write_text(text, encoding="utf-8")

    async def run(self, *args: str) -> tuple[int, str, str]:
        # in a thread: the feed server the program fetches from runs on this event loop
        done = await asyncio.to_thread(run_kpopnews, *args, cwd=self.folder, timeout=90)
        return done.returncode, done.stdout, done.stderr

    async def sources(self) -> dict[str, dict[str, Any]]:
        code, out, err = await self.run("sources", "--json")
        assert code == 0 and err == "", err
        found = [json.loads(line) for line in out.splitlines()]
        assert all(set(item) == JSON_KEYS for item in found), found
        return {item["name"]: item for item in found}

    def sql(self, statement: str, *args: object) -> list[tuple]:
        con = sqlite3.connect(self.folder / "news.db")
        try:
            rows = con.execute(statement, args).fetchall()
            con.commit()
            return rows
        finally:
            con.close()


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    return Shell(tmp_path)


async def test_sources_shows_each_sources_health_and_a_gone_feed_is_probed_until_it_is_back(shell, server):
    server.set_feed("good", wordpress_feed(3, prefix="good"))
    server.set_feed("gone", wordpress_feed(2, prefix="gone"))
    server.set_status("gone", 410)
    shell.configure(("Good", server.url("/dyn/good")), ("Gone", server.url("/dyn/gone")))

    code, out, err = await shell.run("poll", "--once")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "Good: fetched, 3 stories, 3 new"
    assert lines[1].startswith("Gone: failed: ") and "410 Gone" in lines[1]
    assert "(disabled; next probe " in lines[1]

    health = await shell.sources()
    good, gone = health["Good"], health["Gone"]
    assert good == good | {"url": server.url("/dyn/good"), "enabled": True, "reason": None, "stories": 3}
    fetched = datetime.fromisoformat(good["last_fetch"])
    assert fetched.utcoffset() == timedelta(0)
    assert (
        timedelta(seconds=200) < datetime.fromisoformat(good["next_poll"]) - fetched < timedelta(seconds=400)
    )
    assert gone["enabled"] is False and "410 Gone" in gone["reason"] and gone["stories"] == 0
    probe = datetime.fromisoformat(gone["next_poll"])  # a disabled source: its next probe
    assert probe - datetime.fromisoformat(gone["last_fetch"]) == timedelta(hours=1)

    code, text, err = await shell.run("sources")
    assert code == 0 and err == ""
    assert f"  {server.url('/dyn/gone')}\n  disabled: the feed answered 410 Gone" in text
    assert f"next probe {probe:%Y-%m-%d %H:%M} UTC" in text and "3 stories stored; last fetch" in text

    code, out, err = await shell.run("poll", "--once")  # the probe is not due: said, not fetched
    assert code == 0, err
    assert out.splitlines()[0].startswith("Gone: disabled: the feed answered 410 Gone")
    assert server.hits["/dyn/gone"] == 1

    shell.sql("UPDATE sources SET probe_at = '2000-01-01T00:00:00+00:00' WHERE name = 'Gone'")
    code, out, err = await shell.run("poll", "--once")
    assert code == 0, err
    assert "Gone: still disabled, the probe failed: " in out and "next probe" in out
    assert (await shell.sources())["Gone"]["enabled"] is False

    server.set_status("gone", None)  # the site put its feed back
    shell.sql("UPDATE sources SET probe_at = '2000-01-01T00:00:00+00:00' WHERE name = 'Gone'")
    code, out, err = await shell.run("poll", "--once")
    assert code == 0, err
    assert (
        "Gone: fetched, 2 stories, 2 new (enabled again: a probe found the feed answering)"
        in out.splitlines()
    )
    assert (await shell.sources())["Gone"] | {"last_fetch": None, "next_poll": None} == {
        "name": "Gone",
        "url": server.url("/dyn/gone"),
        "enabled": True,
        "reason": None,
        "last_fetch": None,
        "next_poll": None,
        "stories": 2,
    }


async def test_sources_enable_switches_a_disabled_source_back_on_at_once(shell, server):
    server.set_feed("gone", wordpress_feed(1, prefix="en"))
    server.set_status("gone", 410)
    shell.configure(
        ("Gone Feed", server.url("/dyn/gone")), ("Twin", server.url("/dyn/a")), ("Twin", server.url("/dyn/b"))
    )
    await shell.run("poll", "--once")
    assert (await shell.sources())["Gone Feed"]["enabled"] is False

    code, out, err = await shell.run("sources", "enable", "gone FEED")
    assert code == 0 and err == ""
    assert out.startswith("Gone Feed: enabled; polled at the next pass (was the feed answered 410 Gone")
    gone = (await shell.sources())["Gone Feed"]
    assert (gone["enabled"], gone["reason"], gone["next_poll"]) == (True, None, None)
    assert shell.sql(
        "SELECT probe_at, probes, consecutive_failures FROM sources WHERE name = 'Gone Feed'"
    ) == [(None, 0, 0)]
    code, out, err = await shell.run("sources", "enable", "Gone Feed")
    assert (code, out, err) == (0, "Gone Feed: enabled already\n", "")

    for args, words in [
        (("sources", "enable", "Nobody"), "no source named 'Nobody'"),
        (("sources", "enable", "twin"), "2 sources are named 'twin'; give the URL of one"),
        (("sources", "enable"), "the following arguments are required: NAME"),
        (("sources", "enable", "Twin", "--config", "missing.toml"), "config file missing.toml not found"),
    ]:
        code, out, err = await shell.run(*args)
        assert code == 2 and out == "", (args, out)
        assert len(err.splitlines()) == 1 and words in err, (args, err)

    shell.configure(("Twin", server.url("/dyn/a")))  # the others are removed from the configuration
    code, out, err = await shell.run("sources", "enable", server.url("/dyn/gone"))
    assert code == 2 and "was removed from the configuration; add it back there to enable it" in err
    gone = (await shell.sources())["Gone Feed"]  # switched off by the operator: no probe, no next poll
    assert (gone["enabled"], gone["reason"], gone["next_poll"]) == (
        False,
        "removed from the configuration",
        None,
    )


async def test_poll_once_moves_a_feed_that_redirects_permanently_twice(shell, server):
    server.set_feed("new", wordpress_feed(2, prefix="mv"))
    server.set_feed("stays", wordpress_feed(2, prefix="st"))
    old = server.set_redirect("old", "/dyn/new", 301)
    visiting = server.set_redirect("visiting", "/dyn/stays", 302)
    new = server.url("/dyn/new")
    shell.configure(("Moving", old), ("Visiting", visiting))

    code, out, err = await shell.run("poll", "--once")
    assert code == 0, err
    assert out.splitlines()[:2] == [
        f"Moving: fetched, 2 stories, 2 new (redirects permanently to {new}: moved there if the next poll says "
        "the same)",
        "Visiting: fetched, 2 stories, 2 new",
    ]
    assert (await shell.sources())["Moving"]["url"] == old

    code, out, err = await shell.run("poll", "--once")
    assert code == 0, err
    assert out.splitlines()[:2] == [
        f"Moving: not modified (moved permanently to {new}, was {old}; update its url in the configuration)",
        "Visiting: not modified",
    ]
    health = await shell.sources()
    assert health["Moving"]["url"] == new and health["Moving"]["enabled"] and health["Moving"]["stories"] == 2
    assert health["Visiting"]["url"] == visiting
    code, text, _ = await shell.run("sources")
    assert f"Moving\n  {new}\n  enabled\n" in text and f"moved from {old} on " in text

    hits = server.hits["/moved/old"]
    code, out, err = await shell.run("poll", "--once")  # config.toml still names the old address
    assert code == 0 and out.splitlines()[0] == "Moving: not modified"
    assert server.hits["/moved/old"] == hits
    assert len(await shell.sources()) == 2


async def test_a_move_onto_a_known_source_keeps_the_old_address_and_says_so(shell, server):
    server.set_feed("other", wordpress_feed(2, prefix="ot"))
    other = server.url("/dyn/other")
    old = server.set_redirect("old", "/dyn/other", 308)
    shell.configure(("Old", old), ("Other", other))
    for _ in range(2):
        code, out, err = await shell.run("poll", "--once")
        assert code == 0, err
    assert (
        f"Old: not modified (redirects permanently to {other}, which is the source 'Other' already: kept at {old})"
        in out
    )
    health = await shell.sources()
    assert (health["Old"]["url"], health["Other"]["url"]) == (old, other)
    code, text, _ = await shell.run("sources")
    assert f"its feed redirects permanently to {other}, which is another source already" in text
