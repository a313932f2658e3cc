"""Round-up articles (monthly comeback lists, song rankings, award winners) end to end: the outlet-shaped HTML in
tests/fixtures/roundups/ goes through the one enrichment path, every act the article has an entry on is tagged,
`/news <act>` finds the round-up in a real store, and a story with 15 artists still makes a valid embed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.artists import ArtistIndex
from bot.embed import FOOTER_LIMIT, MAX_FOOTER_ARTISTS, TOTAL_LIMIT, build_story_embed, embed_length
from bot.enrich import enrich_entry
from bot.models import FeedEntry, Story
from bot.search import search_stories
from bot.store import Store
from bot.text import article_body, html_to_text, parse_html

FIXTURES = Path(__file__).parent / "fixtures"
ROUNDUPS = [
    case
    for case in json.loads((FIXTURES / "artist_labels.json").read_text(encoding="utf-8"))
    if case.get("fixture")
]


@pytest.fixture(scope="module")
def index() -> ArtistIndex:
    return ArtistIndex.load()


def enrich(case: dict, index: ArtistIndex, n: int = 1) -> Story:
    """The labelled case as its outlet publishes it: full content in the feed, or an excerpt and the page."""
    html = (FIXTURES / case["fixture"]).read_text(encoding="utf-8")
    link = f"https://news.example/roundup-{n}"
    published = datetime(2026, 12, 1, n % 24, tzinfo=UTC)
    if case["page"]:
        entry = FeedEntry(
            title=case["title"],
            link=link,
            summary_html="<p>Here is the list…</p>",
            categories=case["categories"],
            published=published,
        )
        return enrich_entry(entry, source_name="Soompi", artists=index, page_html=html)
    entry = FeedEntry(
        title=case["title"], link=link, content_html=html, categories=case["categories"], published=published
    )
    return enrich_entry(entry, source_name="Koreaboo", artists=index)


def test_the_roundups_are_labelled_and_shaped_like_the_outlets():
    assert len(ROUNDUPS) >= 6
    listed = [case for case in ROUNDUPS if len(case["artists"]) >= 5]
    assert len(listed) >= 6 and all(len(case["artists"]) <= 15 for case in listed)
    outlets = {case["fixture"].split("/")[1].split("-")[0] for case in ROUNDUPS}
    assert {"koreaboo", "soompi", "nme", "scmp"} <= outlets


@pytest.mark.parametrize("case", ROUNDUPS, ids=[case["fixture"].split("/")[1] for case in ROUNDUPS])
def test_every_act_with_an_entry_is_tagged(index, case):
    html = (FIXTURES / case["fixture"]).read_text(encoding="utf-8")
    # the labelled text is what enrichment reads: the feed's content, or the page's article body
    read = html_to_text("", node=article_body(parse_html(html))) if case["page"] else html_to_text(html)
    assert read == case["text"]
    story = enrich(case, index)
    assert sorted(ref.id for ref in story.artists) == sorted(case["artists"])


async def test_news_finds_the_roundup_for_each_act(tmp_path, index):
    stories = [enrich(case, index, n) for n, case in enumerate(ROUNDUPS, start=1)]
    store = await Store.open(tmp_path / "roundups.db", artists=index)
    try:
        await store.stories.add_many(stories, source_id=None)
        december = "Here Are All The K-Pop Comebacks And Debuts Coming In December 2026"
        result = await search_stories(store, index, "Red Velvet", limit=10)
        assert result.artist is not None and result.artist.id == "red-velvet"
        assert december in [story.title for story in result.stories]
        # a soloist named once, in an award list and in a comma list of winners
        result = await search_stories(store, index, "Crush", limit=10)
        assert {story.title for story in result.stories} == {
            "Winners Of The 2026 MAMA Awards",
            "Winners Of The 41st Golden Disc Awards",
            "The 8 best K-drama OSTs sung by K-pop idols",
        }
    finally:
        await store.close()


def test_a_story_with_fifteen_artists_makes_a_valid_embed(index):
    [case] = [case for case in ROUNDUPS if case["title"].startswith("15 K-Pop Songs")]
    story = enrich(case, index)
    assert len(story.artists) == 15
    embed = build_story_embed(story)
    footer = embed["footer"]["text"]
    assert footer.endswith(f"+{15 - MAX_FOOTER_ARTISTS} more") and footer.count(" · ") == MAX_FOOTER_ARTISTS
    assert len(footer) <= FOOTER_LIMIT and embed_length(embed) <= TOTAL_LIMIT
