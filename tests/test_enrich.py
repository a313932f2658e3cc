"""bot/enrich.py: the one enrichment path, on site-shaped fixtures, with the real artist index."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from bot.artists import ArtistIndex
from bot.enrich import MAX_TITLE_CHARS, enrich_entries, enrich_entry, wants_article_page
from bot.models import ArtistRef, FeedEntry
from bot.parse import parse_feed
from bot.urls import canonical_url

FIXTURES = Path(__file__).parent / "fixtures"
SOOMPI_PAGES = {
    "1638512wpp": "soompi-1638512wpp.html",
    "1638530wpp": "soompi-1638530wpp.html",
    "1638544wpp": "soompi-1638544wpp.html",
}  # 1638551wpp has no page: it answers 404


def entries(name: str) -> list[FeedEntry]:
    return parse_feed((FIXTURES / "feeds" / name).read_bytes()).entries


def soompi_page(url: str) -> str | None:
    for article_id, name in SOOMPI_PAGES.items():
        if f"/article/{article_id}/" in url:
            return (FIXTURES / "pages" / name).read_text(encoding="utf-8")
    return None


@pytest.fixture(scope="module")
def artists() -> ArtistIndex:
    return ArtistIndex.load()


def test_koreaboo_story(artists) -> None:
    [entry] = entries("koreaboo-style-v-iu.xml")
    story = enrich_entry(entry, source_name="Koreaboo", artists=artists)
    assert story.key == "https://www.koreaboo.com/?p=1480001"
    assert story.url == entry.link and story.canonical_url == canonical_url(entry.link)
    assert story.title == (
        "BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU — Making One Scene Even More Romantic"
    )
    assert story.summary.startswith("BTS‘s V is going viral for a behind-the-scenes clip with IU")
    assert story.summary.endswith("love, loss, and sacrifice.")
    assert "<" not in story.summary and "Your browser" not in story.summary
    assert story.image == "https://image.koreaboo.com/2024/01/bts-v-iu-love-wins-all-thumb.jpg"
    assert [q.handle for q in story.quotes] == ["babiejieun", "onlyfthv", "taeguide"]
    assert {a.id for a in story.artists} >= {"bts-v", "iu"}
    assert story.categories == ["News", "BTS", "IU", "V"]
    assert story.content_html == entry.content_html
    assert story.published is not None and story.published.isoformat() == "2024-01-30T02:58:11+00:00"
    assert story.source == "Koreaboo"


def test_without_an_artist_index() -> None:
    [entry] = entries("koreaboo-style-v-iu.xml")
    story = enrich_entry(entry, source_name="Koreaboo", artists=None)
    assert story.artists == [] and len(story.quotes) == 3


def test_wants_article_page() -> None:
    [koreaboo] = entries("koreaboo-style-v-iu.xml")
    soompi = entries("soompi-style.xml")
    scmp = entries("scmp-style.xml")
    atom_full, atom_short = entries("atom-style.xml")
    assert not wants_article_page(koreaboo)  # full content:encoded
    assert all(wants_article_page(e) for e in soompi + scmp)  # excerpts and teasers
    assert not wants_article_page(atom_full) and wants_article_page(atom_short)
    assert not wants_article_page(FeedEntry(title="t", link="javascript:alert(1)"))
    cut = FeedEntry(
        title="t", link="https://e.example/a", content_html="<p>" + "word " * 200 + "[&#8230;]</p>"
    )
    assert wants_article_page(cut)


async def test_excerpt_feed_takes_quotes_and_image_from_its_pages(artists) -> None:
    calls: list[str] = []

    async def fetch_page(url: str) -> str | None:
        calls.append(url)
        await asyncio.sleep(0)
        return soompi_page(url)

    items = entries("soompi-style.xml")
    stories = await enrich_entries(items, source_name="Soompi", artists=artists, fetch_page=fetch_page)
    assert [s.url for s in stories] == [e.link for e in items]
    assert sorted(calls) == sorted(e.link for e in items)  # every excerpt's page, once
    iu, karina, felix, hanni = stories
    assert iu.image and iu.image.endswith("IU-V-Love-Wins-All-making.jpeg")
    assert [q.handle for q in iu.quotes] == ["uaenaarchive"]  # not the sidebar's tweet
    assert (
        iu.summary.startswith("IU has unveiled") and "singing along to the song between takes." in iu.summary
    )
    assert "Karina" in karina.summary and {q.platform for q in karina.quotes} == {
        "bluesky",
        "tiktok",
        "reddit",
    }
    assert felix.image and felix.image.endswith("Felix-brownies.jpg") and felix.quotes[0].platform == "x"
    assert felix.content_html.startswith(
        '<div class="article-wrapper">'
    )  # the page's article, kept to re-enrich
    assert "SEE ALSO" not in felix.summary
    # No page (404): the excerpt, cut mid-sentence by the feed, still makes a clean summary.
    assert hanni.image is None and hanni.quotes == []
    assert hanni.summary.endswith("promised…") and "[" not in hanni.summary
    assert {a.id for a in hanni.artists} == {"newjeans-hanni"}


async def test_pages_fetched_once_and_with_bounded_concurrency() -> None:
    in_flight = 0
    peak = 0
    calls: list[str] = []

    async def fetch_page(url: str) -> str | None:
        nonlocal in_flight, peak
        calls.append(url)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return None

    items = [
        FeedEntry(
            title=f"story {i}",
            link=f"https://e.example/story/{i % 10}?utm_source=rss",
            summary_html="Excerpt",
        )
        for i in range(30)
    ]
    stories = await enrich_entries(
        items, source_name="E", artists=None, fetch_page=fetch_page, page_concurrency=3
    )
    assert len(stories) == 30
    assert len(calls) == 10  # the same story in the batch three times: its page once
    assert peak == 3


async def test_a_failing_page_or_tagger_costs_nothing_but_itself() -> None:
    async def fetch_page(url: str) -> str | None:
        raise ConnectionResetError("peer went away")

    class BrokenTagger:
        def tag(self, title: str, text: str, categories: list[str]) -> list[ArtistRef]:
            raise RuntimeError("artist data broken")

    items = entries("soompi-style.xml")
    stories = await enrich_entries(items, source_name="Soompi", artists=BrokenTagger(), fetch_page=fetch_page)
    assert len(stories) == 4 and all(s.summary and s.artists == [] for s in stories)


async def test_enrichment_runs_off_the_event_loop() -> None:
    threads: set[int] = set()

    class RecordingTagger:
        def tag(self, title: str, text: str, categories: list[str]) -> list[ArtistRef]:
            threads.add(threading.get_ident())
            return [ArtistRef("iu", "IU", None)]

    stories = await enrich_entries(
        entries("koreaboo-style-v-iu.xml"), source_name="K", artists=RecordingTagger()
    )
    assert stories[0].artists == [ArtistRef("iu", "IU", None)]
    assert threads and threading.get_ident() not in threads


def test_hostile_entries_become_safe_stories() -> None:
    items = entries("hostile-content.xml")
    stories = [enrich_entry(e, source_name="Hostile", artists=None) for e in items]
    first, huge, rtl = stories
    assert "<script>" not in first.title and "alert(1)" not in first.title  # the script tag's text is gone
    assert first.title.startswith("@everyone FREE **NITRO**")  # plain text: escaping is the embed's job
    assert "fetch(" not in first.summary and "display:none" not in first.summary and "<" not in first.summary
    assert first.image is None
    assert len(huge.title) <= MAX_TITLE_CHARS and huge.title.endswith("…")
    assert len(huge.summary) <= 400
    assert "\u202e" not in rtl.title and rtl.title == "Reversed txet and control characters"
    assert [q.handle for q in first.quotes] == ["evil_fan"]


def test_untitled_item_gets_its_first_words() -> None:
    entry = FeedEntry(
        title="  ", link="https://e.example/a", summary_html="<p>IU announced a new tour today.</p>"
    )
    story = enrich_entry(entry, source_name="E", artists=None)
    assert story.title == "IU announced a new tour today."
