"""Keyset paging: the store's pages by (time, id) over a real SQLite file, the plans they run, and the custom
ids that carry a /news or /trending page in its Previous/Next buttons (round trip, 100 characters, hostile text).
The buttons over the wire, across a restart, are in tests/test_e2e_paging.py."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from bot.artists import ArtistIndex
from bot.models import ArtistRef, Story
from bot.search import search_stories
from bot.store import Store
from bot.store import stories as stories_module
from bot.store.database import SQLiteDatabase
from bot.timeutil import to_iso
from cogs.common import CUSTOM_ID_UNITS, base36, cut_to_units, utf16_units
from cogs.news import MAX_COUNT, QUERY_UNITS, NewsButton, NewsPageButton, clean_query
from cogs.trending import MAX_HOURS, TrendingButton, TrendingPageButton
from tests.support import sql
from tests.support.discord_server import text_length
from tests.test_search import T0, make_story

V = ArtistRef("bts-v", "V", "BTS")
JIMIN = ArtistRef("bts-jimin", "Jimin", "BTS")


def story(n: int, hours: float, artists: list[ArtistRef], title: str = "") -> Story:
    return make_story(n, title or f"Story number {n} about the comeback", artists, hours=hours)


@pytest.fixture
async def store(tmp_path):
    db = await Store.open(tmp_path / "paging.db")
    yield db
    await db.close()


async def ids_of(store: Store, keys: list[tuple[str, int]]) -> list[str]:
    return [s.key for s in await store.stories.get_many([story_id for _, story_id in keys])]


async def page_all(store: Store, artist_ids: list[str], limit: int) -> list[tuple[str, int]]:
    """Every story by Next pages of `limit`, as a person clicking through."""
    seen: list[tuple[str, int]] = []
    keys, _ = await store.stories.ids_by_artists(artist_ids, limit=limit, count_up_to=100)
    while keys:
        seen += keys
        assert len(seen) < 100, "paging does not end"
        keys, _ = await store.stories.ids_by_artists(
            artist_ids, limit=limit, before=keys[-1], count_up_to=100
        )
    return seen


# --- the store --------------------------------------------------------------------------------------------


async def test_a_story_stored_between_two_pages_does_not_shift_the_next(store):
    await store.stories.add_many([story(n, n, [V]) for n in range(1, 8)], source_id=None)
    first, total = await store.stories.ids_by_artists(["bts-v"], limit=3, count_up_to=100)
    assert await ids_of(store, first) == ["guid-7", "guid-6", "guid-5"] and total == 7
    # the newest story of all arrives, and one older than the whole list (a feed's backlog)
    await store.stories.add_many([story(8, 8, [V]), story(9, -5, [V])], source_id=None)
    second, total = await store.stories.ids_by_artists(["bts-v"], limit=3, before=first[-1], count_up_to=100)
    assert await ids_of(store, second) == ["guid-4", "guid-3", "guid-2"] and total == 9
    third, _ = await store.stories.ids_by_artists(["bts-v"], limit=3, before=second[-1], count_up_to=100)
    assert await ids_of(store, third) == ["guid-1", "guid-9"]  # the backlog story, by its time
    # back: the stories just newer than the first shown, still newest first; then the new one
    back, _ = await store.stories.ids_by_artists(["bts-v"], limit=3, after=second[0], count_up_to=100)
    assert back == first
    top, _ = await store.stories.ids_by_artists(["bts-v"], limit=3, after=back[0], count_up_to=100)
    assert await ids_of(store, top) == ["guid-8"]


async def test_ties_on_time_are_broken_by_id(store):
    stored = await store.stories.add_many([story(n, 1, [V]) for n in range(1, 6)], source_id=None)
    ids = sorted((s.id for s in stored), reverse=True)
    seen = await page_all(store, ["bts-v"], 2)
    assert [story_id for _, story_id in seen] == ids  # all five, once each, by id among equal times
    assert {t for t, _ in seen} == {to_iso(T0 + timedelta(hours=1))}
    back, _ = await store.stories.ids_by_artists(["bts-v"], limit=2, after=seen[-1], count_up_to=100)
    assert [story_id for _, story_id in back] == ids[2:4]


async def test_a_group_page_has_each_story_once(store):
    # stories tagged with two members of the group come from two artists' index walks
    stories = [story(n, n, [V, JIMIN] if n % 2 else [JIMIN]) for n in range(1, 10)]
    await store.stories.add_many(stories, source_id=None)
    seen = await page_all(store, ["bts", "bts-v", "bts-jimin"], 4)
    assert await ids_of(store, seen) == [f"guid-{n}" for n in range(9, 0, -1)]


@pytest.mark.parametrize("count_up_to", [100, 2], ids=["few matches: each looked up", "many: the time index"])
async def test_text_pages_after_a_cursor_are_exact_by_time(store, count_up_to):
    # ids do not follow time here: story 1 is the newest
    await store.stories.add_many([story(n, -n if n > 1 else 50, []) for n in range(1, 8)], source_id=None)
    await store.stories.add_many([story(20, 10, [], title="Nothing to see")], source_id=None)
    words = ["comeback"]
    first, total = await store.stories.search_text(words, any_word=False, limit=3, count_up_to=count_up_to)
    assert await ids_of(store, first) == ["guid-1", "guid-2", "guid-3"]
    assert total == min(7, count_up_to + 1)
    second, _ = await store.stories.search_text(
        words, any_word=False, limit=3, before=first[-1], count_up_to=count_up_to
    )
    assert await ids_of(store, second) == ["guid-4", "guid-5", "guid-6"]
    back, _ = await store.stories.search_text(
        words, any_word=False, limit=2, after=second[0], count_up_to=count_up_to
    )
    assert await ids_of(store, back) == ["guid-2", "guid-3"]


@pytest.mark.parametrize("budget", [10_000, 12], ids=["walked", "walked, then the rest looked up"])
async def test_walked_text_pages_are_exact_whatever_order_ids_come_in(store, monkeypatch, budget):
    # small batches, few id ranges and (second case) a small budget: every step of the walk is taken
    monkeypatch.setattr(stories_module, "WALK_FIRST_BATCH", 4)
    monkeypatch.setattr(stories_module, "WALK_MAX_BATCH", 16)
    monkeypatch.setattr(stories_module, "MAX_ID_RANGES", 3)
    monkeypatch.setattr(stories_module, "WALK_BUDGET", budget)
    rng = random.Random(4)
    stories = []
    for n in range(1, 241):
        if rng.random() < 0.2:
            hours = -rng.randrange(1, 2000)  # a feed's backlog: stored now, published long ago
        else:
            hours = n // 3  # arrival order, three to an hour: ties on time
        words = "the comeback stage" if rng.random() < 0.4 else "a drama stage"
        stories.append(story(n, hours, [], title=f"Story {n}: {words}"))
    stories.append(make_story(300, "Undated comeback news", [], hours=None))  # first seen now: the newest
    await store.stories.add_many(stories, source_id=None)
    stored = await sql.rows(
        store, "SELECT COALESCE(published_at, first_seen_at), id FROM stories WHERE title LIKE '%comeback%'"
    )
    expected = sorted(((t, story_id) for t, story_id in stored), reverse=True)
    assert len(expected) > 60

    def search(**cursor: Any) -> Any:
        return store.stories.search_text(["comeback"], any_word=False, limit=7, count_up_to=5, **cursor)

    older: list[tuple[str, int]] = []
    keys, total = await search(before=("9999", 0))  # from above the newest: every match, by Next pages
    while keys:
        assert total == 6  # counted up to count_up_to + 1: the walk, not the look-up of each match
        older += keys
        keys, total = await search(before=keys[-1])
    assert older == expected
    newer: list[tuple[str, int]] = []
    keys, _ = await search(after=("", 0))  # from below the oldest, by Previous pages
    while keys:
        newer = keys + newer
        keys, _ = await search(after=keys[0])
    assert newer == expected


async def test_search_pages_through_a_story_removed_meanwhile(store):
    index = ArtistIndex.load()
    await store.stories.add_many([story(n, n, [V]) for n in range(1, 6)], source_id=None)
    first = await search_stories(store, index, "V", limit=2)
    await sql.write(store, "DELETE FROM stories WHERE id = ?", (first.keys[-1][1],))
    second = await search_stories(store, index, "V", limit=2, before=first.keys[-1])
    assert [s.key for s in second.stories] == ["guid-3", "guid-2"] and second.has_more


# --- the plans: the indexes carry the cursor ----------------------------------------------------------------


class Statements:
    """The SELECTs the store runs, recorded, to ask SQLite how it runs them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, Any]] = []
        original = SQLiteDatabase.fetchall

        async def fetchall(db: SQLiteDatabase, sql: str, params: Any = ()) -> Any:
            self.seen.append((sql, params))
            return await original(db, sql, params)

        monkeypatch.setattr(SQLiteDatabase, "fetchall", fetchall)

    async def plans(self, store: Store) -> list[str]:
        found = []
        seen, self.seen = self.seen, []
        for statement, params in seen:
            rows = await sql.rows(store, "EXPLAIN QUERY PLAN " + statement, params)
            found.append(" | ".join(row[3] for row in rows))
        self.seen.clear()  # the EXPLAINs themselves
        return found


async def test_cursor_pages_start_at_the_cursor_in_the_indexes(store, monkeypatch):
    await store.stories.add_many([story(n, n, [V]) for n in range(1, 6)], source_id=None)
    statements = Statements(monkeypatch)
    cursor = (to_iso(T0 + timedelta(hours=3)) or "", 3)
    await store.stories.ids_by_artists(["bts-v", "bts"], limit=2, before=cursor, count_up_to=10)
    [plan] = await statements.plans(store)
    walk = "SEARCH story_artists USING COVERING INDEX story_artists_artist_time (artist_id=? AND (sort_at,story_id)"
    assert plan.count(walk + "<(?,?))") == 2 and "TEMP B-TREE" not in plan
    await store.stories.ids_by_artists(["bts-v"], limit=2, after=cursor, count_up_to=10)
    [plan] = await statements.plans(store)
    assert walk + ">(?,?))" in plan and "TEMP B-TREE" not in plan

    # many matches: the time index walked from the cursor, its ids checked by id ranges in the FTS index
    await store.stories.search_text(["comeback"], any_word=False, limit=2, before=cursor, count_up_to=2)
    plan, ranges, _times = await statements.plans(store)
    assert "SEARCH stories USING INDEX stories_sort_time (<expr><?)" in plan and "TEMP B-TREE" not in plan
    # FTS5's plan names what it was given: the MATCH (M) and both ends of the rowid range (> and <)
    assert ranges.startswith("SCAN stories_fts VIRTUAL TABLE INDEX 0:M") and ranges.endswith("><")
    await store.stories.search_text(["comeback"], any_word=False, limit=2, after=cursor, count_up_to=2)
    plan, ranges, _times = await statements.plans(store)
    assert "SEARCH stories USING INDEX stories_sort_time (<expr>>?)" in plan and "TEMP B-TREE" not in plan
    await store.stories.search_text(["comeback"], any_word=False, limit=2, before=cursor, count_up_to=100)
    [plan] = await statements.plans(store)
    assert "SEARCH stories USING INTEGER PRIMARY KEY (rowid=?)" in plan  # few matches: each by id


# --- /news custom ids -----------------------------------------------------------------------------------------

OWNER = 1234567890123456789  # a snowflake of today's length
CURSOR = ("2024-01-30T03:00:00+00:00", 4711)

HOSTILE = [
    "V",
    "뷔",
    "방탄소년단 " * 20,  # Hangul, far longer than a custom id
    "💜" * 80,  # two UTF-16 units each
    "news:n:1:5:0:0:1:abts-v",  # a custom id as a query
    "a:b::c:::",
    "line one\nline two\r\n\tthree",
    "\x00\x1b[31m bell\x07",
    "\u202eevil\u200b zero\ufeffwidth",
    "@everyone <@123> `code` **bold** ||spoiler||",
    "x" * 5000,
    "  spaced   out  ",
    "Taehyung " + "a" * 60,  # a word too long to keep whole: cut inside it
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("forward", [True, False])
def test_news_custom_ids_round_trip_within_100_characters(query, forward):
    text = clean_query(query)
    assert text and text == clean_query(text)  # what /news searches is what the buttons carry
    button = NewsButton(forward, OWNER, 10, 1234, CURSOR, None, text)
    custom_id = button.custom_id()
    assert text_length(custom_id) <= CUSTOM_ID_UNITS and utf16_units(custom_id) == text_length(custom_id)
    assert NewsButton.read(custom_id) == button
    assert not any(ch in custom_id for ch in "\x00\n\r\t\x1b\u202e\ufeff")


def test_news_custom_ids_carry_an_artist_as_its_id():
    button = NewsButton(True, OWNER, 5, 0, CURSOR, "honey-popcorn-matsuda-miko")
    assert NewsButton.read(button.custom_id()) == button
    assert max(utf16_units(a.id) for a in ArtistIndex.load()) <= QUERY_UNITS  # every artist id fits
    assert button.custom_id().startswith("news:n:") and button.custom_id().endswith(
        ":ahoney-popcorn-matsuda-miko"
    )


def test_the_longest_fields_leave_query_units_for_the_query():
    # a user id of 64 bits, a position four digits deep, a time before 1970, a story id in the billions
    longest = NewsButton(
        False, 2**64 - 1, MAX_COUNT, 36**4 - 1, ("1000-01-01T00:00:00+00:00", 36**7 - 1), None
    )
    head = longest.custom_id()
    assert utf16_units(head) + QUERY_UNITS == CUSTOM_ID_UNITS
    text = clean_query("뷔 " * 100)
    assert utf16_units(text) <= QUERY_UNITS
    assert NewsButton.read(NewsButton(False, 2**64 - 1, MAX_COUNT, 0, longest.cursor, None, text).custom_id())


@pytest.mark.parametrize(
    "custom_id",
    [
        "news:next",  # before buttons carried their state
        "news:previous",
        "news:",
        "news:n:zz",
        "news:x:1:5:0:0:1:aV",  # no such way
        "news:n:0:5:0:0:1:aV",  # no such user
        "news:n:1:0:0:0:1:aV",  # no page of 0
        f"news:n:1:{base36(MAX_COUNT + 1)}:0:0:1:aV",
        "news:n:1:5:0:zzzzzzzzz:1:aV",  # a time no calendar holds
        "news:n:1:5:0:0:0:aV",  # no story 0
        "news:n:1:5:0:0:1:a",  # nothing searched
        "news:n:1:5:0:0:1:tV\x00",  # a control character
        "news:n:1:5:0:0:1:t  V",
        "news:N:1:5:0:0:1:aV",
        "news:n:1:5:0:0:1:t" + "x" * 70,  # longer than a button carries
    ],
)
def test_unreadable_news_custom_ids_are_no_button(custom_id):
    assert NewsButton.read(custom_id) is None
    item = NewsPageButton(custom_id)  # still an item: its click is answered "expired"
    assert item.state is None and item.template.fullmatch(custom_id)


def test_cut_to_units_counts_as_discord_and_cuts_at_a_word():
    assert cut_to_units("💜💜💜", 5) == "💜💜"
    assert cut_to_units("Kim Taehyung BTS", 14) == "Kim Taehyung"
    assert cut_to_units("abcdefghij", 4) == "abcd"
    assert cut_to_units("short", 54) == "short"
    assert base36(0) == "0" and base36(-36) == "-10" and base36(OWNER) == "9do1sj396nf9"


# --- /trending custom ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("hours", [1, 24, MAX_HOURS])
def test_trending_custom_ids_round_trip(hours):
    for button in (TrendingButton(True, OWNER, hours, 0), TrendingButton(False, OWNER, hours, 1)):
        custom_id = button.custom_id()
        assert len(custom_id) <= CUSTOM_ID_UNITS and TrendingButton.read(custom_id) == button


@pytest.mark.parametrize(
    "custom_id",
    [
        "trending:next",
        "trending:previous",
        "trending:n:1:0:0",
        f"trending:n:1:{base36(MAX_HOURS + 1)}:0",
        "trending:",
    ],
)
def test_unreadable_trending_custom_ids_are_no_button(custom_id):
    assert TrendingButton.read(custom_id) is None
    assert TrendingPageButton(custom_id).state is None
