"""What a story keeps of its article (issue 12): the clean text, zlib-compressed in story_texts, not the feed's HTML;
`retag` reads it; migration 1000 turns the HTML older versions stored into that text (in one transaction: an
interrupted upgrade leaves the old database as it was); `[storage] keep_text_days` drops old texts while the
stories stay findable. On both engines, real fixtures, real files."""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import retention
from bot.artists import ArtistIndex
from bot.enrich import enrich_entry
from bot.models import Story
from bot.parse import parse_feed
from bot.retention import drop_old_texts, drop_old_texts_hourly
from bot.search import retag_all, search_stories
from bot.store import Store, StoreError, migration_steps
from bot.store import database as store_module
from bot.store.database import load_migrations
from bot.store.text_search import text_matches
from bot.text import html_to_text
from tests.support.cli import run_kpopnews
from tests.support.feed_server import FeedServer, wordpress_feed
from tests.support.sql import rows, write

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def index() -> ArtistIndex:
    return ArtistIndex.load()


def koreaboo_html() -> str:
    return parse_feed((FEEDS / "koreaboo-style-v-iu.xml").read_bytes()).entries[0].content_html


def story(
    n: int, *, title: str = "", summary: str = "", text: str = "", seen: datetime | None = None
) -> Story:
    url = f"https://www.koreaboo.com/news/story-{n}/"
    return Story(
        key=f"guid-{n}",
        title=title or f"Story {n} of the week",
        url=url,
        canonical_url=url,
        source="Koreaboo",
        summary=summary or f"The summary of story {n}.",
        text=text,
        first_seen=seen,
    )


def only_before_1000(monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    """Open stores as a version before 1000 did (its schema: stories.content_html holds the feed's HTML)."""
    old = [m for m in load_migrations(engine) if m.version < 1000]  # type: ignore[arg-type]
    monkeypatch.setattr(store_module, "load_migrations", lambda dialect="sqlite": old)
    if engine == "postgresql":
        from bot.store import postgres

        monkeypatch.setattr(postgres, "load_migrations", lambda dialect="sqlite": old)


async def store_as_before_1000(
    store_url: str, engine: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A database written by the version before 1000: three stories, their HTML as it stored it. Returns
    {story key: HTML}."""
    only_before_1000(monkeypatch, engine)
    old = await Store.open(store_url)
    stored = {
        "koreaboo": koreaboo_html(),
        "empty": "",  # a story whose feed gave no content
        "only-markup": "<p> </p><img src='https://e.example/a.jpg'>",  # HTML without any text
    }
    for n, (key, html) in enumerate(stored.items()):
        await write(
            old,
            "INSERT INTO stories(story_key, canonical_url, url, title, source_name, first_seen_at, summary,"
            " content_html) VALUES (?, ?, ?, ?, 'Koreaboo', ?, ?, ?)",
            (
                key,
                f"https://k.example/{n}",
                f"https://k.example/{n}",
                f"Story {key}",
                NOW.isoformat(),
                "",
                html,
            ),
        )
    await old.close()
    monkeypatch.undo()
    return stored


# --- storing ------------------------------------------------------------------------------------------------


async def test_a_story_keeps_its_clean_text_compressed_not_its_html(store_url):
    [entry] = parse_feed((FEEDS / "koreaboo-style-v-iu.xml").read_bytes()).entries
    enriched = enrich_entry(entry, source_name="Koreaboo", artists=None)
    db = await Store.open(store_url)
    try:
        (kept,) = await db.stories.add_many([enriched], source_id=None)
        (bare,) = await db.stories.add_many([story(2)], source_id=None)  # no text: no row
        [(story_id, blob)] = await rows(db, "SELECT story_id, text_zlib FROM story_texts")
        assert story_id == kept.id
        text = zlib.decompress(blob).decode("utf-8")
        assert text == html_to_text(entry.content_html) and "Love Wins All" in text
        assert len(blob) < len(text.encode("utf-8")) < len(entry.content_html) / 3
        # no column of the story holds HTML any more
        [(html, summary)] = await rows(
            db, "SELECT content_html, summary FROM stories WHERE id = ?", (kept.id,)
        )
        assert html == "" and "<" not in summary
        texts = {t.id: t.text for t in await db.stories.texts_after(0, 10)}
        assert texts == {kept.id: text, bare.id: ""}
        # a story read back is whole but for its text, which only retagging reads
        got = await db.stories.get(kept.id)
        assert got is not None and got.title == enriched.title and got.quotes == enriched.quotes
        assert got.text == ""
    finally:
        await db.close()


async def test_retag_reads_the_kept_text_and_after_retention_the_summary(store_url, index):
    db = await Store.open(store_url, artists=index)
    try:
        (drama,) = await db.stories.add_many(
            [
                story(
                    1,
                    title="A new weekend drama is confirmed",
                    summary="The network confirmed the cast on Monday.",
                    text="The network confirmed the cast on Monday. Red Velvet member Joy will star in the "
                    "drama. Joy said she was happy.",
                    seen=NOW - timedelta(days=40),
                )
            ],
            source_id=None,
        )
        assert await retag_all(db, index) == 1  # stored untagged: the text names Joy
        got = await db.stories.get(drama.id)
        assert got is not None and [a.id for a in got.artists] == ["red-velvet-joy"]
        assert await retag_all(db, index) == 0
        assert await drop_old_texts(db, 30, now=NOW) == 1
        # without its text a retag reads title and summary, as the search does
        assert await retag_all(db, index) == 1
        got = await db.stories.get(drama.id)
        assert got is not None and got.artists == [] and got.title == "A new weekend drama is confirmed"
    finally:
        await db.close()


# --- migration 1000 -----------------------------------------------------------------------------------------


async def test_migration_1000_turns_stored_html_into_kept_text(store_url, engine, monkeypatch, index):
    stored = await store_as_before_1000(store_url, engine, monkeypatch)
    db = await Store.open(store_url, artists=index)
    try:
        assert (1000,) in await rows(db, "SELECT version FROM schema_migrations")
        assert await rows(db, "SELECT count(*) FROM stories WHERE content_html <> ''") == [(0,)]
        texts = {t.title: t.text for t in await db.stories.texts_after(0, 10)}
        assert texts == {
            "Story koreaboo": html_to_text(stored["koreaboo"]),
            "Story empty": "",
            "Story only-markup": "",
        }
        assert await rows(db, "SELECT count(*) FROM story_texts") == [(1,)]
        # the full-text index (rebuilt on SQLite, without positions) finds the old stories by their titles
        found, total = await text_matches(db._db, ["story", "markup"], any_word=False, window=10, cap=10)
        assert total == 1 and len(found) == 1
        found, total = await text_matches(db._db, ["story"], any_word=False, window=10, cap=10)
        assert total == 3
        # retag tags from the converted text as it did from the HTML: V and IU are in the article only
        assert await retag_all(db, index) == 1
        [(key, artists)] = [
            (s.key, {a.id for a in s.artists})
            for s in await db.stories.get_many([t.id for t in await db.stories.texts_after(0, 10)])
            if s.artists
        ]
        assert key == "koreaboo" and {"bts-v", "iu"} <= artists
    finally:
        await db.close()
    again = await Store.open(store_url)  # recorded: not run twice
    assert await again.migrate() == []
    await again.close()


async def test_an_interrupted_migration_1000_leaves_the_old_database_and_runs_again(
    store_url, engine, monkeypatch
):
    stored = await store_as_before_1000(store_url, engine, monkeypatch)
    monkeypatch.setattr(migration_steps, "STEP_BATCH", 1)  # one story per batch: fails after the first
    packed: list[str] = []
    real_pack = migration_steps.pack_text

    def pack_then_fail(text: str) -> bytes | None:
        if packed:
            raise RuntimeError("the machine went down")
        packed.append(text)
        return real_pack(text)

    monkeypatch.setattr(migration_steps, "pack_text", pack_then_fail)
    with pytest.raises(StoreError, match="1000_story_text"):
        await Store.open(store_url)
    assert packed  # it had converted a story when it failed
    monkeypatch.undo()
    only_before_1000(monkeypatch, engine)
    old = await Store.open(store_url)  # as the old version sees it: nothing of 1000 is there
    try:
        assert await rows(old, "SELECT max(version) FROM schema_migrations") == [(900,)]
        html = {key: value for key, value in await rows(old, "SELECT story_key, content_html FROM stories")}
        assert html == stored
    finally:
        await old.close()
    monkeypatch.undo()
    db = await Store.open(store_url)
    try:
        texts = {t.title: t.text for t in await db.stories.texts_after(0, 10)}
        assert texts["Story koreaboo"] == html_to_text(stored["koreaboo"])
    finally:
        await db.close()


# --- retention ------------------------------------------------------------------------------------------------


async def test_old_texts_are_dropped_and_the_stories_stay_findable(store_url, index):
    db = await Store.open(store_url)
    try:
        ages = {1: 40, 2: 20, 3: 0}  # days since first stored
        ids = {}
        for n, days in ages.items():
            (stored,) = await db.stories.add_many(
                [
                    story(
                        n,
                        title=f"Comeback number {n} is a chart record",
                        text=f"The whole article {n}, long enough to keep.",
                        seen=NOW - timedelta(days=days),
                    )
                ],
                source_id=None,
            )
            ids[n] = stored.id

        async def kept() -> set[int]:
            return {t.id for t in await db.stories.texts_after(0, 10) if t.text}

        assert await drop_old_texts(db, 0, now=NOW) == 0  # 0: kept for ever
        assert await kept() == set(ids.values())
        assert await drop_old_texts(db, 30, now=NOW) == 1
        assert await kept() == {ids[2], ids[3]}
        assert await drop_old_texts(db, 30, now=NOW) == 0  # already done
        assert await drop_old_texts(db, 60, now=NOW) == 0
        assert await drop_old_texts(db, 30, now=NOW + timedelta(days=15)) == 1
        assert await kept() == {ids[3]}
        # every story is still whole and found by its title and summary
        found = await search_stories(db, index, "chart record", limit=10)
        assert sorted(s.id for s in found.stories) == sorted(ids.values())
        old = await db.stories.get(ids[1])
        assert old is not None and old.title == "Comeback number 1 is a chart record" and old.summary
        assert await rows(db, "SELECT count(*) FROM stories") == [(3,)]
    finally:
        await db.close()


async def test_the_bots_retention_runs_at_once_and_then_again(store_url, monkeypatch):
    db = await Store.open(store_url)
    now = [NOW]
    real = retention.drop_old_texts

    async def at_now(store: Store, keep_days: float) -> int:  # the service's clock, moved by the test
        return await real(store, keep_days, now=now[0])

    monkeypatch.setattr(retention, "drop_old_texts", at_now)
    try:
        await db.stories.add_many(
            [story(1, text="old text", seen=NOW - timedelta(days=31)), story(2, text="young", seen=NOW)],
            source_id=None,
        )
        task = asyncio.create_task(drop_old_texts_hourly(db, 30, every=0.05))
        try:
            for _ in range(100):
                if len(await rows(db, "SELECT story_id FROM story_texts")) == 1:
                    break
                await asyncio.sleep(0.02)
            assert await rows(db, "SELECT count(*) FROM story_texts") == [(1,)]
            now[0] = NOW + timedelta(days=31)  # a month later, the same running service
            for _ in range(100):
                if not await rows(db, "SELECT story_id FROM story_texts"):
                    break
                await asyncio.sleep(0.02)
            assert await rows(db, "SELECT count(*) FROM story_texts") == [(0,)]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await db.close()


async def test_poll_once_drops_old_texts_after_its_pass(tmp_path):
    async with FeedServer() as server:
        server.set_feed("site", wordpress_feed(3, prefix="first"))
        (tmp_path / "config.toml").write_text(
            f'[storage]\ndatabase = "{tmp_path / "news.db"}"\nkeep_text_days = 30\n'
            f'\n[[sources]]\nname = "Site"\nurl = "{server.url("/dyn/site")}"\n',
            encoding="utf-8",
        )
        first = await asyncio.to_thread(run_kpopnews, "poll", "--once", cwd=tmp_path, timeout=90)
        assert first.returncode == 0, first.stderr
        con = sqlite3.connect(tmp_path / "news.db")
        try:
            assert con.execute("SELECT count(*) FROM story_texts").fetchone() == (3,)
            # two of them were first stored 40 days ago (as the story and its kept text both record)
            long_ago = datetime.now(UTC) - timedelta(days=40)
            first_two = "SELECT id FROM stories ORDER BY id LIMIT 2"
            con.execute(
                f"UPDATE stories SET first_seen_at = ? WHERE id IN ({first_two})",
                (long_ago.isoformat(timespec="seconds"),),
            )
            con.execute(
                f"UPDATE story_texts SET seen_at = ? WHERE story_id IN ({first_two})",
                (int(long_ago.timestamp()),),
            )
            con.commit()
        finally:
            con.close()
        server.set_feed("site", wordpress_feed(1, prefix="second"))
        second = await asyncio.to_thread(run_kpopnews, "poll", "--once", cwd=tmp_path, timeout=90)
        assert second.returncode == 0, second.stderr
    con = sqlite3.connect(tmp_path / "news.db")
    try:
        kept = con.execute(
            "SELECT s.story_key FROM story_texts t JOIN stories s ON s.id = t.story_id ORDER BY s.id"
        ).fetchall()
        assert [key.split("p=")[1] for (key,) in kept] == ["first-2", "second-0"]
        assert con.execute("SELECT count(*) FROM stories").fetchone() == (4,)
    finally:
        con.close()
