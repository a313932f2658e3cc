"""`kpopnews preview`: the real program in a subprocess, on fixture files and over loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from bot.config import Config
from bot.models import Quote, Story
from bot.preview import format_story, render_html, run_preview
from tests.support.feed_server import FeedServer

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
PAGES = Path(__file__).parent / "fixtures" / "pages"
CONTRACT_KEYS = {"title", "url", "source", "published", "image", "summary", "artists", "quotes", "embed"}
NO_PAGES = "[polling]\nfetch_article_pages = false\n"


async def preview(*args: str, cwd: Path, config: str | None = None) -> tuple[int, str, str]:
    """Run `python -m bot preview ARGS` and return (exit status, stdout, stderr)."""
    extra: list[str] = []
    if config is not None:
        (cwd / "config.toml").write_text(config, encoding="utf-8")
        extra = ["--config", str(cwd / "config.toml")]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "preview",
        *args,
        *extra,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode("utf-8"), err.decode("utf-8")


@pytest.fixture
async def feed_server():
    async with FeedServer() as running:
        yield running


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_json_on_fixture_files(tmp_path: Path) -> None:
    code, out, err = await preview(
        str(FEEDS / "koreaboo-style-v-iu.xml"),
        str(FEEDS / "atom-style.xml"),
        "--json",
        cwd=tmp_path,
        config=NO_PAGES,
    )
    assert code == 0, err
    stories = json_lines(out)
    assert len(stories) == 3 and all(set(s) == CONTRACT_KEYS for s in stories)
    koreaboo = stories[0]
    assert koreaboo["source"] == "Koreaboo" and koreaboo["published"] == "2024-01-30T02:58:11+00:00"
    assert koreaboo["image"] == "https://image.koreaboo.com/2024/01/bts-v-iu-love-wins-all-thumb.jpg"
    assert koreaboo["quotes"][0] == {
        "text": "so taehyung was really singing to iu at this scene 🥹 her hand on his neck & their smiling faces.. "
        "yeah i’m never moving on from this",
        "author": "daph",
        "handle": "babiejieun",
        "platform": "twitter",
        "url": "https://twitter.com/babiejieun/status/1751962233445566778",
    }
    assert len(koreaboo["quotes"]) == 3 and "<" not in koreaboo["summary"]
    assert all(set(a) == {"id", "name", "group"} for a in koreaboo["artists"])
    embed = koreaboo["embed"]
    assert embed["title"] == koreaboo["title"] and embed["url"] == koreaboo["url"]
    assert embed["fields"][0]["name"] == "What fans are saying"
    assert stories[1]["source"] == "K-pop Notes" and stories[2]["published"] == "2024-01-29T20:00:00+00:00"
    assert not [name for name in os.listdir(tmp_path) if ".db" in name]  # preview writes no database


async def test_a_bad_source_among_good_ones(tmp_path: Path) -> None:
    missing = tmp_path / "missing.xml"
    code, out, err = await preview(
        str(missing),
        str(FEEDS / "koreaboo-style-v-iu.xml"),
        str(FEEDS / "html-instead-of-feed.html"),
        str(FEEDS / "empty-feed.xml"),
        str(FEEDS / "malformed.xml"),
        cwd=tmp_path,
        config=NO_PAGES,
    )
    assert code == 1
    problems = [line for line in err.splitlines() if not line.startswith("kpopnews: warning:")]
    assert len(problems) == 3 and "Traceback" not in err
    assert str(missing) in problems[0] and "not found" in problems[0]
    assert "is an HTML page, not a feed" in problems[1] and "empty-feed.xml has no items" in problems[2]
    assert "malformed feed" in err  # a warning, not a failure: its two stories are shown
    assert out.count("■ ") == 3
    assert "BTS’s V Is Going Viral" in out and "What fans are saying:" in out
    assert "— daph (@babiejieun) on Twitter: https://twitter.com/babiejieun/status/1751962233445566778" in out


async def test_excerpt_feed_over_loopback_with_article_pages(tmp_path: Path, feed_server: FeedServer) -> None:
    base = feed_server.base_url
    body = (FEEDS / "soompi-style.xml").read_text(encoding="utf-8")
    body = re.sub(r"https://www\.soompi\.com/article/(\w+)/[^<#\s]+", rf"{base}/pages/\1", body)
    for article_id in ("1638512wpp", "1638530wpp", "1638544wpp"):  # 1638551wpp: 404
        feed_server.set_page(article_id, (PAGES / f"soompi-{article_id}.html").read_text(encoding="utf-8"))
    feed_url = feed_server.set_feed("soompi", body.encode())
    config = f'[[sources]]\nname = "Soompi"\nurl = "{feed_url}"\ncolor = "#00a0e9"\n'
    page_file = tmp_path / "preview.html"
    code, out, err = await preview(
        feed_url,
        feed_server.url("/status/404"),
        "--json",
        "--html",
        str(page_file),
        cwd=tmp_path,
        config=config,
    )
    assert code == 1 and "/status/404" in err and "404" in err
    iu, karina, felix, hanni = json_lines(out)
    assert {s["source"] for s in (iu, karina, felix, hanni)} == {"Soompi"}
    assert iu["embed"]["color"] == 0x00A0E9
    assert iu["url"] == f"{base}/pages/1638512wpp"
    assert (
        iu["image"]
        == "https://0.soompi.io/wp-content/uploads/2024/01/30051200/IU-V-Love-Wins-All-making.jpeg"
    )
    assert [q["handle"] for q in iu["quotes"]] == ["uaenaarchive"]
    assert karina["image"] == f"{base}/wp-content/uploads/2024/01/30034000/aespa-Karina-fanmeeting.jpg"
    assert {q["platform"] for q in karina["quotes"]} == {"bluesky", "tiktok", "reddit"}
    assert felix["quotes"][0]["platform"] == "x" and felix["image"].endswith("Felix-brownies.jpg")
    assert hanni["image"] is None and hanni["summary"].endswith("…")
    for article_id in ("1638512wpp", "1638530wpp", "1638544wpp", "1638551wpp"):
        assert feed_server.hits[f"/pages/{article_id}"] == 1  # every excerpt's page, once
    page = page_file.read_text(encoding="utf-8")
    assert page.count('<article class="embed"') == 4 and "<script" not in page
    assert "uaena archive (@uaenaarchive)" in page


async def test_hostile_feed_human_output_and_html(tmp_path: Path) -> None:
    page_file = tmp_path / "hostile.html"
    code, out, err = await preview(
        str(FEEDS / "hostile-content.xml"),
        "--limit",
        "2",
        "--html",
        str(page_file),
        cwd=tmp_path,
        config=NO_PAGES,
    )
    assert code == 0, err
    assert out.count("■ ") == 2
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out)  # nothing that could drive the terminal
    page = page_file.read_text(encoding="utf-8")
    assert "<script" not in page and "javascript:" not in page and "<@&" not in page
    assert "**NITRO**" in page  # shown as the text it is, not as markdown
    assert "evil.example/steal" not in re.findall(r'href="([^"]+)"', page)


def test_format_story_strips_terminal_escapes() -> None:
    story = Story(
        key="k",
        title="\x1b[2J\x1b[31mRed title",
        url="https://e.example/a\x1b[0m",
        source="S\x07",
        summary="Sum\x1b]0;pwned\x07mary.",
        quotes=[
            Quote("fan \x1b[5mtext\x1b[0m here", "A\x1b", "h", "twitter", "https://twitter.com/h/status/1")
        ],
    )
    text = format_story(story)
    assert "\x1b" not in text and "\x07" not in text and "Red title" in text


async def test_unwritable_html_path_is_a_usage_error(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await run_preview(
        Config(),
        [str(FEEDS / "koreaboo-style-v-iu.xml")],
        as_json=True,
        limit=None,
        html_path=str(tmp_path / "no-such-dir" / "x.html"),
        out=out,
        err=err,
    )
    assert code == 2 and "cannot write" in err.getvalue() and len(json_lines(out.getvalue())) == 1


def test_empty_html_page_is_valid() -> None:
    page = render_html([])
    assert page.startswith("<!doctype html>") and "0 stories" in page
