"""The fast RSS 2.0 reader (bot/parse_rss.py) against feedparser, the parser of record: on feedparser's own test
corpus and on our fixtures, parse_feed gives the same result (the same stories, or the same error) with the fast
path as without it; and the fast path does take the plain feeds it exists for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.parse import FeedError, ParsedFeed, parse_feed
from bot.parse_rss import read_rss
from tests.support.feed_server import rss, wordpress_feed

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "feedparser_corpus"
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
URL = "https://www.example.com/feed/"


def _documents() -> list[Path]:
    found = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix == ".xml")
    found += sorted((FIXTURES / "feeds").glob("*"))
    if SHARED.is_dir():
        found += sorted(SHARED.rglob("*.xml"))
    return found


def _parse(data: bytes, *, fast: bool) -> ParsedFeed | str:
    try:
        return parse_feed(data, url=URL, content_type="application/rss+xml", use_fast_path=fast)
    except FeedError as exc:
        return f"FeedError: {exc}"


def test_the_corpus_is_there():
    assert len(_documents()) > 1500  # feedparser's corpus, vendored: a missing folder must not pass quietly


def _with_links(data: bytes) -> bytes:
    """The document with a link opening each item: most of feedparser's RSS tests have items without one, which
    the fast path leaves to feedparser; with a link, their other elements go through the fast path too."""

    def add(item: re.Match[bytes]) -> bytes:
        if b"<link" in item.group(2):
            return item.group(0)
        return item.group(1) + b"<link>https://www.example.com/story</link>" + item.group(2)

    return re.sub(rb"(<item(?:\s[^>]*)?>)(.*?</item>)", add, data, flags=re.DOTALL)


@pytest.mark.parametrize("variant", ["as they are", "with a link in each item"])
def test_the_fast_path_gives_what_feedparser_gives_on_every_document(variant):
    taken: list[str] = []
    differences: list[str] = []
    for path in _documents():
        data = path.read_bytes()
        if variant != "as they are":
            data = _with_links(data)
        fast = _parse(data, fast=True)
        slow = _parse(data, fast=False)
        if fast != slow:
            differences.append(f"{path.relative_to(path.parents[2])}:\n  fast {fast!r}\n  slow {slow!r}")
        if read_rss(data) is not None:
            taken.append(path.name)
    assert not differences, f"{len(differences)} differ:\n" + "\n".join(differences[:5])
    # not a reader that declines everything: the plain RSS documents are read the fast way
    assert {"koreaboo-style-v-iu.xml", "soompi-style.xml", "wordpress-emoji.xml"} <= set(taken)
    assert len(taken) >= (15 if variant == "as they are" else 150), len(taken)


@pytest.mark.parametrize(
    "body",
    [
        wordpress_feed(20, prefix="wp", site="https://www.koreaboo.com"),
        rss(
            [
                {
                    "title": "V &amp; IU &lt;3",
                    "link": "https://www.soompi.com/article/1",
                    "guid": "https://www.soompi.com/article/1",
                    "description": "<p>IU and V <b>together</b></p>",
                    "pubDate": "Sat, 05 Dec 2026 10:00:00 +0900",
                    "categories": "IU,BTS,V",
                }
            ]
        ),
    ],
)
def test_plain_wordpress_feeds_are_read_fast_and_alike(body):
    assert read_rss(body) is not None
    assert _parse(body, fast=True) == _parse(body, fast=False)


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><rss version="2.0"><channel><item><title>a</title></item></channel></rss>',  # no link
        b'<rss version="2.0"><channel><item><link>/relative</link></item></channel></rss>',
        b'<rss version="0.91"><channel><item><link>https://a.example/1</link></item></channel></rss>',
        b'<rss version="2.0"><channel xml:base="https://a.example/"><item><link>https://a.example/1</link>'
        b"</item></channel></rss>",
        b'<rss version="2.0"><channel><item><link>https://a.example/1</link><description>a <b>b</b>'
        b"</description></item></channel></rss>",  # inline markup: feedparser rebuilds it its own way
        b'<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><item>'
        b'<link>https://a.example/1</link><atom:link rel="alternate" href="https://b.example/"/></item>'
        b"</channel></rss>",
        b'<rss version="2.0"><channel><item><link>https://a.example/1</link>'
        b"<link>https://a.example/2</link></item></channel></rss>",
        b'<rss version="2.0"><channel><item><link>https://a.example/1</link>&nbsp;</item></channel></rss>',
    ],
)
def test_what_the_fast_path_is_not_sure_of_goes_to_feedparser(body):
    assert read_rss(body) is None
