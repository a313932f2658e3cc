"""Search over a real SQLite store: artist search (any name, groups include members), newest first, paging,
FTS5 fallback that hostile text cannot break, suggestions, the CLI output, and retagging."""

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from bot import search as search_module
from bot.artists import ArtistIndex
from bot.config import Config, StorageConfig
from bot.models import ArtistRef, Story
from bot.search import query_words, render_text, retag_all, run_search, search_stories
from bot.store import Store
from bot.store.rows import pack_text
from bot.store.stories import fts5_match
from tests.support import sql

T0 = datetime(2024, 1, 30, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def index() -> ArtistIndex:
    return ArtistIndex.load()


def ref(index: ArtistIndex, artist_id: str) -> ArtistRef:
    artist = index.get(artist_id)
    assert artist is not None, artist_id
    return artist.ref()


def make_story(
    n: int, title: str, artists: list[ArtistRef], *, hours: float | None, summary: str = ""
) -> Story:
    url = f"https://www.koreaboo.com/news/story-{n}/"
    return Story(
        key=f"guid-{n}",
        title=title,
        url=url,
        canonical_url=url,
        source="Koreaboo",
        published=T0 + timedelta(hours=hours) if hours is not None else None,
        summary=summary or f"Summary of story {n}.",
        artists=artists,
    )


@pytest.fixture
async def store(tmp_path, index):
    db = await Store.open(tmp_path / "search.db")
    stories = [
        make_story(
            1,
            "BTS's V Is Going Viral With IU",
            [ref(index, "bts-v"), ref(index, "iu")],
            hours=0,
            summary="V and IU wowed fans with the video for Love Wins All.",
        ),
        make_story(2, "BTS Announces Full-Group Comeback", [ref(index, "bts")], hours=5),
        make_story(3, "Jungkook Breaks Spotify Record", [ref(index, "bts-jungkook")], hours=2),
        make_story(4, "Red Velvet's Joy Stars In Drama", [ref(index, "red-velvet-joy")], hours=3),
        # no publication date: its first-seen time orders it
        make_story(5, "Taehyung Shares Photos Of Yeontan", [ref(index, "bts-v")], hours=None),
        make_story(
            6,
            "Stray Kids Top Billboard 200 (Again!)",
            [ref(index, "stray-kids")],
            hours=1,
            summary='The group\'s seventh number one, with a "special" stage.',
        ),
    ]
    await db.stories.add_many(stories, source_id=None)
    # story 5 was first seen 10 hours after T0
    await sql.write(
        db,
        "UPDATE stories SET first_seen_at = ? WHERE story_key = 'guid-5'",
        ((T0 + timedelta(hours=10)).isoformat(),),
    )
    yield db
    await db.close()


@pytest.mark.parametrize(
    "query",
    ["V", "v", "Taehyung", "Kim Taehyung", "kim tae-hyung", "뷔", "Taehyng", "bts-v", "V (BTS)", "BTS's V"],
)
async def test_every_name_of_v_finds_his_stories_newest_first(store, index, query):
    result = await search_stories(store, index, query, limit=5)
    assert result.mode == "artist"
    assert result.artist is not None and result.artist.id == "bts-v"
    assert [s.key for s in result.stories] == ["guid-5", "guid-1"]  # first seen +10h, then published +0h
    assert result.total == 2


async def test_a_group_includes_its_members_stories(store, index):
    result = await search_stories(store, index, "BTS", limit=10)
    assert result.mode == "artist" and result.artist.id == "bts"
    assert [s.key for s in result.stories] == ["guid-5", "guid-2", "guid-3", "guid-1"]
    assert result.total == 4
    assert result.stories[-1].artists[0].id == "bts-v"  # stories come back with their artists


async def test_paging_by_cursor_and_limit(store, index):
    first = await search_stories(store, index, "방탄소년단", limit=2)
    second = await search_stories(store, index, "방탄소년단", limit=2, before=first.keys[-1])
    assert [s.key for s in first.stories] == ["guid-5", "guid-2"] and first.has_more
    assert [s.key for s in second.stories] == ["guid-3", "guid-1"] and not second.has_more
    assert first.total == second.total == 4
    back = await search_stories(store, index, "방탄소년단", limit=2, after=second.keys[0])
    assert [s.key for s in back.stories] == ["guid-5", "guid-2"] and not back.has_more  # nothing newer
    assert [k[1] for k in first.keys] == [s.id for s in first.stories]


async def test_big_totals_are_capped_not_counted_to_the_end(store, index, monkeypatch):
    monkeypatch.setattr(search_module, "TOTAL_CAP", 2)
    result = await search_stories(store, index, "BTS", limit=1)
    assert result.total == 2 and result.total_capped and result.total_label == "2+"
    assert result.has_more
    pages = [result]
    while pages[-1].has_more:
        pages.append(await search_stories(store, index, "BTS", limit=1, before=pages[-1].keys[-1]))
    # the cap never hides stories: paging goes on to the last one
    assert [p.stories[0].key for p in pages] == ["guid-5", "guid-2", "guid-3", "guid-1"]
    beyond = await search_stories(store, index, "BTS", limit=1, before=pages[-1].keys[-1])
    assert beyond.stories == [] and not beyond.has_more
    text = await search_stories(store, index, "Koreaboo story summary")
    assert text.mode == "text" and text.total_capped
    assert "of 2+, newest first" in render_text(text)


async def test_an_artist_without_stories_is_still_an_artist_answer(store, index):
    result = await search_stories(store, index, "Karina")
    assert result.mode == "artist" and result.artist.id == "aespa-karina"
    assert result.stories == [] and result.total == 0
    assert "none stored yet" in render_text(result)


async def test_a_shared_name_offers_the_other_artists(store, index):
    result = await search_stories(store, index, "Mark")
    assert result.mode == "artist"
    ids = {result.artist.id, *(a.id for a in result.suggestions)}
    assert {"nct-127-mark", "got7-mark"} <= ids


async def test_unknown_words_fall_back_to_full_text(store, index):
    result = await search_stories(store, index, "love wins all")
    assert result.mode == "text" and result.artist is None
    assert [s.key for s in result.stories] == ["guid-1"]
    result = await search_stories(store, index, "Billboard")
    assert [s.key for s in result.stories] == ["guid-6"]


async def test_any_word_matches_when_all_words_do_not(store, index):
    result = await search_stories(store, index, "spotify yeontan")
    assert result.mode == "text"
    assert {s.key for s in result.stories} == {"guid-3", "guid-5"}


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '""',
        "*",
        "(",
        ")",
        "NEAR(",
        "NEAR(a b",
        "OR",
        "AND",
        "NOT",
        "a OR",
        "title:Billboard",
        "^",
        '"unterminated',
        'special"',
        "(Again!)",
        "Billboard*",
        "-",
        "+",
        "{}",
        "🥹",
        "💜💜💜",
        "BTS 💜",
        "\x00",
        "'; DROP TABLE stories; --",
        "x" * 5000,
        "   ",
        "NEAR/2",
        "col:*",
    ],
)
async def test_hostile_queries_never_break_the_search(store, index, query):
    result = await search_stories(store, index, query)
    assert result.mode in ("artist", "text", "none")
    assert isinstance(render_text(result), str)
    assert await sql.rows(store, "SELECT count(*) FROM stories") == [(6,)]


async def test_words_inside_hostile_text_are_still_searched(store, index):
    result = await search_stories(store, index, '"Billboard" AND (again) NOT*')
    assert result.mode == "text"
    assert [s.key for s in result.stories] == ["guid-6"]


def fts_query(text: str, *, any_word: bool = False) -> str | None:
    """User text as the FTS5 query the store runs: the words search looks for, each quoted."""
    words = query_words(text, any_word=any_word)
    return fts5_match(words, any_word=any_word) if words else None


def test_fts_query_quotes_every_word():
    assert fts_query('NEAR(a "b") OR c*') == '"a" AND "b" AND "c"'
    assert fts_query("🥹 !!!") is None
    assert fts_query("xyz yes", any_word=True) == '"xyz" OR "yes"'
    # alone, one- and two-letter words are too vague to match on: "V LIVE" is not every story naming V
    assert fts_query("V LIVE", any_word=True) == '"LIVE"'
    assert fts_query("V IU", any_word=True) is None
    # the index keeps no positions: a word the tokenizer splits is its tokens, each required, never a phrase
    assert fts_query("jung_kook tour") == '("jung" AND "kook") AND "tour"'


async def test_a_word_the_tokenizer_splits_is_still_found(store, index):
    result = await search_stories(store, index, "Stray_Kids Billboard")
    assert result.mode == "text" and [s.key for s in result.stories] == ["guid-6"]


async def test_nothing_found_suggests_close_names(store, index):
    result = await search_stories(store, index, "Wonyung Jang")
    assert result.mode == "none" and result.stories == []
    assert result.suggestions and result.suggestions[0].id == "ive-jang-wonyoung"
    assert "Did you mean: Jang Wonyoung (IVE)" in render_text(result)


async def test_nothing_at_all_is_a_friendly_answer(store, index):
    result = await search_stories(store, index, "zzqx")
    assert result.mode == "none" and result.suggestions == []
    assert render_text(result) == "No stories match 'zzqx'."


async def test_cli_json_is_one_contract_object_per_line(tmp_path, store, index):
    config = Config(storage=StorageConfig(database=store.path))
    out = io.StringIO()
    assert await run_search(config, "Taehyung", as_json=True, limit=5, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) >= {"title", "url", "source", "published", "image", "summary", "artists", "quotes"}
    assert first["title"] == "Taehyung Shares Photos Of Yeontan" and first["published"] is None
    second = json.loads(lines[1])
    assert second["artists"] == [
        {"id": "bts-v", "name": "V", "group": "BTS"},
        {"id": "iu", "name": "IU", "group": None},
    ]
    assert second["published"] == "2024-01-30T03:00:00+00:00"
    assert second["embed"]["title"] == "BTS's V Is Going Viral With IU"


async def test_cli_text_output_is_readable(tmp_path, store, index):
    config = Config(storage=StorageConfig(database=store.path))
    out = io.StringIO()
    assert await run_search(config, "BTS", as_json=False, limit=2, out=out) == 0
    text = out.getvalue()
    assert text.startswith("Stories about BTS: 1-2 of 4, newest first")
    assert "1. Taehyung Shares Photos Of Yeontan" in text and "https://www.koreaboo.com/news/story-5/" in text
    assert "Koreaboo · 2024-01-30 13:00 UTC · V (BTS)" in text


@asynccontextmanager
async def write_held_open(store: Store, write: Callable[[], Awaitable[object]]) -> AsyncIterator[None]:
    """Another task's transaction, written and not committed, held open while the body runs."""
    written, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with store.transaction():
            await write()
            written.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(written.wait(), 5)
    try:
        yield
    finally:
        release.set()
        await task


async def test_searches_read_the_read_connection_not_a_writers_transaction(store, index):
    """/news and `kpopnews search` neither wait for an ingest's transaction nor see its uncommitted stories."""
    fresh = make_story(7, "Taehyung Uncommitted Yeontan Story", [ref(index, "bts-v")], hours=30)
    async with write_held_open(store, lambda: store.stories.add_many([fresh], source_id=None)):
        by_artist = await asyncio.wait_for(search_stories(store, index, "V"), 5)
        by_text = await asyncio.wait_for(search_stories(store, index, "Uncommitted Yeontan"), 5)
    assert [s.key for s in by_artist.stories] == ["guid-5", "guid-1"]
    assert by_text.mode == "text" and [s.key for s in by_text.stories] == ["guid-5"]  # any word: "Yeontan"
    committed = await search_stories(store, index, "V")
    assert [s.key for s in committed.stories] == ["guid-7", "guid-5", "guid-1"]


async def test_sort_time_follows_the_story(store, index):
    await sql.write(
        store,
        "UPDATE stories SET published_at = ? WHERE story_key = 'guid-1'",
        ((T0 + timedelta(hours=20)).isoformat(),),
    )
    result = await search_stories(store, index, "V")
    assert [s.key for s in result.stories] == ["guid-1", "guid-5"]


async def test_retag_all_fixes_old_tags_in_batches(store, index):
    [(story_id,)] = await sql.rows(store, "SELECT id FROM stories WHERE story_key = 'guid-4'")
    await sql.write(
        store,
        "INSERT INTO story_texts(story_id, seen_at, text_zlib) VALUES (?, 0, ?)",
        (story_id, pack_text("Red Velvet's Joy will star in a new drama, SM Entertainment said.")),
    )
    await store.stories.set_artists({story_id: [ArtistRef("old-id", "Old", None)]})
    changed = await retag_all(store, index, batch=2)
    assert changed >= 1
    story = await store.stories.get(story_id)
    assert [a.id for a in story.artists] == ["red-velvet-joy"]
    assert await retag_all(store, index, batch=2) == 0  # nothing changes twice
