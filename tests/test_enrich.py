"""bot/enrich.py: the one enrichment path, on site-shaped fixtures, with the real artist index."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from bot.article_pages import wants_article_page
from bot.artists import ArtistIndex
from bot.enrich import MAX_TITLE_CHARS, enrich_entries, enrich_entry
from bot.models import ArtistRef, FeedEntry
from bot.parse import parse_feed
from bot.text import html_to_text
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
    assert story.text == html_to_text(entry.content_html)  # kept for retagging: the text, not the HTML
    assert "Love Wins All" in story.text and "<" not in story.text
    assert story.published is not None and story.published.isoformat() == "2024-01-30T02:58:11+00:00"
    assert story.source == "Koreaboo"


def test_without_an_artist_index() -> None:
    [entry] = entries("koreaboo-style-v-iu.xml")
    story = enrich_entry(entry, source_name="Koreaboo", artists=None)
    assert story.artists == [] and len(story.quotes) == 3


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
    assert "brownies" in felix.text.lower() and "<div" not in felix.text  # the page's article text, kept
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


def test_wordpress_emoji_pictures_read_as_emoji_everywhere() -> None:
    [entry] = entries("wordpress-emoji.xml")
    story = enrich_entry(entry, source_name="Koreaboo", artists=None)
    assert story.title == "NewJeans’ Hanni Leaves Bunnies In Tears With A Handwritten Letter 😭"
    assert story.summary == (
        "NewJeans’ Hanni left Bunnies in tears 😭 with a handwritten letter she shared after the group’s fan "
        "meeting. The letter, written in Korean and signed “하니 🐰,” thanked fans for always being by her side "
        "❤️ and promised new music soon. Bunnies quickly flooded social media with their reactions."
    )
    assert story.image == "https://image.koreaboo.com/2024/01/newjeans-hanni-letter.jpg"  # never an emoji
    assert [q.text for q in story.quotes] == [
        "hanni wrote the whole letter in korean so cute 😭 i can’t",
        "her handwriting is so neat ❤️\u200d🔥 she really practiced korean for us",
        "하니야 편지 고마워 🐰 버니즈가 항상 옆에 있을게 🫶🏻",
    ]
    assert story.quotes[0].author == "pham hanni 🇻🇳"


def test_excerpt_and_page_with_emoji_pictures() -> None:
    [full] = entries("wordpress-emoji.xml")
    excerpt_only = FeedEntry(
        title=full.title, link=full.link, guid=full.guid, summary_html=full.summary_html, content_html=""
    )
    # no page: the feed's excerpt (raw emoji, cut by the feed mid-sentence) says it goes on
    alone = enrich_entry(excerpt_only, source_name="Koreaboo", artists=None)
    assert alone.summary == (
        "NewJeans’ Hanni left Bunnies in tears 😭 with a handwritten letter she shared after the group’s fan "
        "meeting."
    )
    assert wants_article_page(excerpt_only)
    emoji = (
        '<img draggable="false" role="img" class="emoji" alt="{0}" '
        'src="https://s.w.org/images/core/emoji/15.0.3/svg/{1}.svg">'
    )
    page_html = (
        '<html><head><meta property="og:image" content="https://image.koreaboo.com/2024/01/og.jpg"></head>'
        '<body><article><div class="entry-content"><p>NewJeans’ Hanni left Bunnies in tears '
        + emoji.format("😭", "1f62d")
        + " with a handwritten letter.</p><p>She signed it “하니 "
        + emoji.format("🐰", "1f430")
        + "” and fans cried "
        + emoji.format("", "1f979")  # no alt: the file name says which
        + " all night.</p></div></article></body></html>"
    )
    paged = enrich_entry(excerpt_only, source_name="Koreaboo", artists=None, page_html=page_html)
    assert paged.summary == (
        "NewJeans’ Hanni left Bunnies in tears 😭 with a handwritten letter. "
        "She signed it “하니 🐰” and fans cried 🥹 all night."
    )
    assert paged.image == "https://image.koreaboo.com/2024/01/og.jpg"


def test_a_cut_excerpt_prefers_the_page_and_a_whole_one_stands() -> None:
    cut = FeedEntry(
        title="IU",
        link="https://e.example/a",
        summary_html="<p>IU announced a tour, and she promised [&#8230;]</p>",
    )
    page_html = (
        "<html><body><article><p>IU announced a tour. She promised new songs.</p></article></body></html>"
    )
    assert (
        enrich_entry(cut, source_name="E", artists=None).summary == "IU announced a tour, and she promised…"
    )
    paged = enrich_entry(cut, source_name="E", artists=None, page_html=page_html)
    assert paged.summary == "IU announced a tour. She promised new songs."
    whole = FeedEntry(title="IU", link="https://e.example/a", summary_html="<b>IU on tour</b><br/>")
    assert enrich_entry(whole, source_name="E", artists=None).summary == "IU on tour"
