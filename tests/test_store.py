import asyncio
import contextvars
import sqlite3
from datetime import UTC, datetime

import pytest

from bot.config import SourceConfig
from bot.models import Story
from bot.store import Store, StoreError, load_migrations
from bot.store import database as store_module
from bot.store.database import Migration
from bot.store.text_search import text_matches
from tests.support.sql import rows, write


def story(key: str, url: str, title: str = "BTS's V sings to IU") -> Story:
    return Story(key=key, title=title, url=url, source="Koreaboo", canonical_url=url, summary="A summary.")


async def test_migrations_apply_once_and_are_recorded(store_url, engine):
    db = await Store.open(store_url)
    assert db.dialect == engine
    versions = [m.version for m in load_migrations(engine)]
    assert versions == [m.version for m in load_migrations("sqlite")]  # the same numbers on both engines
    assert await rows(db, "SELECT version FROM schema_migrations ORDER BY version") == [
        (v,) for v in versions
    ]
    if engine == "sqlite":
        assert await rows(db, "PRAGMA journal_mode") == [("wal",)]
    await db.close()
    again = await Store.open(store_url)
    assert await again.migrate() == []
    await again.close()


async def test_a_failing_migration_rolls_back_and_says_which(store_url, engine, monkeypatch):
    good = load_migrations(engine)
    bad = Migration(9999, "broken", "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;")
    monkeypatch.setattr(store_module, "load_migrations", lambda dialect="sqlite": [*good, bad])
    if engine == "postgresql":
        from bot.store import postgres

        monkeypatch.setattr(postgres, "load_migrations", lambda dialect="sqlite": [*good, bad])
    with pytest.raises(StoreError, match="9999_broken"):
        await Store.open(store_url)
    monkeypatch.undo()
    if engine == "sqlite":
        con = sqlite3.connect(store_url)
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
        assert con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == good[-1].version
        con.close()
    else:
        db = await Store.open(store_url)  # the good ones stayed applied; nothing of the broken one did
        assert await rows(db, "SELECT to_regclass('half_done') IS NULL") == [(True,)]
        assert await rows(db, "SELECT max(version) FROM schema_migrations") == [(good[-1].version,)]
        await db.close()


async def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        await Store.open(tmp_path / "no" / "such" / "k.db")


async def test_a_story_in_two_feeds_is_stored_once(store_url):
    db = await Store.open(store_url)
    a, b = await db.sources.sync_config(
        [
            SourceConfig("Soompi", "https://www.soompi.com/feed"),
            SourceConfig("Soompi BTS", "https://x/tag/bts/feed"),
        ]
    )
    first = await db.stories.add_many([story("guid-1", "https://www.soompi.com/article/1")], source_id=a.id)
    second = await db.stories.add_many([story("guid-1", "https://www.soompi.com/article/1")], source_id=b.id)
    assert first[0].is_new and not second[0].is_new
    assert first[0].id == second[0].id
    # same canonical link under another guid: still the same story
    third = await db.stories.add_many(
        [story("other-guid", "https://www.soompi.com/article/1")], source_id=b.id
    )
    assert third[0].id == first[0].id and not third[0].is_new
    assert await rows(db, "SELECT count(*) FROM stories") == [(1,)]
    assert await rows(db, "SELECT count(*) FROM source_stories") == [(2,)]
    assert await db.stories.known_keys(["guid-1", "nope"], []) == {"guid-1": first[0].id}
    await db.close()


async def test_full_text_index_follows_the_stories(store_url):
    db = await Store.open(store_url)
    (stored,) = await db.stories.add_many(
        [story("k", "https://a/1", title="Stray Kids announce world tour")], source_id=None
    )

    async def matching(*words: str, any_word: bool = False) -> list[int]:
        found, total = await text_matches(db._db, list(words), any_word=any_word, window=10, cap=100)
        assert total == len(found)
        return [story_id for story_id, _ in found]

    assert await matching("tour") == [stored.id]
    assert await matching("TOUR", "stray") == [stored.id]  # every word, any case
    assert await matching("tour", "comeback") == []
    assert await matching("tour", "comeback", any_word=True) == [stored.id]
    assert await matching("summary") == [stored.id]  # the summary is searched too
    assert await matching('"tour', "NOT", "it's", "x:y", "a*") == []  # typed operators are only words
    await write(db, "UPDATE stories SET title = 'Stray Kids comeback' WHERE story_key = 'k'")
    assert await matching("tour") == []
    assert await matching("comeback") == [stored.id]
    await db.close()


async def test_full_text_search_ignores_accents_and_reads_hangul(store_url):
    db = await Store.open(store_url)
    (stored,) = await db.stories.add_many(
        [story("k", "https://a/1", title="Beyoncé meets 방탄소년단 뷔 at the K-pop awards")], source_id=None
    )
    for word in ("beyonce", "Beyoncé", "방탄소년단", "뷔", "pop"):
        found, _ = await text_matches(db._db, [word], any_word=False, window=10, cap=100)
        assert [story_id for story_id, _ in found] == [stored.id], word
    await db.close()


async def test_config_sources_sync(store_url):
    db = await Store.open(store_url)
    await db.sources.sync_config([SourceConfig("A", "https://a/feed"), SourceConfig("B", "https://b/feed")])
    await db.sources.sync_config([SourceConfig("A renamed", "https://a/feed")])
    by_url = {s.url: s for s in await db.sources.list()}
    assert by_url["https://a/feed"].name == "A renamed" and by_url["https://a/feed"].enabled
    assert by_url["https://b/feed"].disabled_reason == "removed from the configuration"
    await db.sources.sync_config([SourceConfig("A", "https://a/feed"), SourceConfig("B", "https://b/feed")])
    assert all(s.enabled for s in await db.sources.list())
    assert [s.url for s in await db.sources.list(enabled_only=True)] == ["https://a/feed", "https://b/feed"]
    await db.close()


async def test_source_state_round_trips(store_url):
    db = await Store.open(store_url)
    (source,) = await db.sources.sync_config([SourceConfig("A", "https://a/feed")])
    source.etag, source.consecutive_failures, source.last_error = '"abc"', 3, "timed out"
    await db.sources.save_state(source)
    loaded = await db.sources.get(source.id)
    assert (loaded.etag, loaded.consecutive_failures, loaded.last_error) == ('"abc"', 3, "timed out")
    await db.close()


async def test_meta(store_url):
    db = await Store.open(store_url)
    assert await db.meta.get("x") is None
    await db.meta.set("x", "1")
    await db.meta.set("x", "2")
    assert await db.meta.get("x") == "2"
    await db.close()


async def test_sources_the_poller_disabled_before_probes_existed_are_probed_after_the_upgrade(
    tmp_path, monkeypatch
):
    every = load_migrations()
    monkeypatch.setattr(
        store_module, "load_migrations", lambda dialect="sqlite": [m for m in every if m.version < 700]
    )
    old = await Store.open(tmp_path / "k.db")
    await old.close()
    con = sqlite3.connect(tmp_path / "k.db")
    reasons = {
        "gone": "the feed answered 410 Gone on 2024-01-30 03:00 UTC: the site removed it. Remove this source, "
        "or add the feed again at its new address",
        "failing": "disabled on 2024-01-30 03:00 UTC after 10 failed polls in a row (last: timed out). Check the "
        "URL in a browser, then fix or remove this source",
        "removed": "removed from the configuration",
        "fine": None,
    }
    for name, reason in reasons.items():
        con.execute(
            "INSERT INTO sources(url, name, disabled_reason, created_at) VALUES (?, ?, ?, '2024-01-01T00:00:00+00:00')",
            (f"https://{name}.example/feed", name, reason),
        )
    con.commit()
    con.close()
    monkeypatch.setattr(store_module, "load_migrations", lambda dialect="sqlite": every)
    db = await Store.open(tmp_path / "k.db")
    probed = {s.name: s.probe_at for s in await db.sources.list()}
    assert {name for name, at in probed.items() if at is not None} == {"gone", "failing"}
    assert [s.name for s in await db.sources.list_to_poll()] == ["gone", "failing", "fine"]
    await db.close()


async def test_a_story_linked_again_to_its_source_keeps_when_it_was_first_seen_there(tmp_path):
    db = await Store.open(tmp_path / "k.db")
    (source,) = await db.sources.sync_config([SourceConfig("A", "https://a/feed")])
    (stored,) = await db.stories.add_many([story("k", "https://a/k")], source_id=source.id)
    con = sqlite3.connect(tmp_path / "k.db")
    (first,) = con.execute("SELECT first_seen_at FROM source_stories").fetchone()
    await db.stories.link_to_source(source.id, [stored.id], at=datetime(2030, 1, 1, tzinfo=UTC))
    assert con.execute("SELECT first_seen_at FROM source_stories").fetchall() == [(first,)]
    assert await db.sources.story_counts() == {source.id: 1}
    con.close()


async def test_transactions_commit_together_or_not_at_all(store_url):
    db = await Store.open(store_url)
    with pytest.raises(RuntimeError, match="outside store.transaction"):
        await db._db.execute("DELETE FROM meta")
    with pytest.raises(ZeroDivisionError):
        async with db.transaction():
            await db.meta.set("a", "1")  # a write method joins the caller's transaction
            assert await db.meta.get("a") == "1"  # and a read inside sees it
            1 / 0  # noqa: B018
    assert await db.meta.get("a") is None

    outside: list[str | None] = []

    async def read_outside() -> None:
        outside.append(await db.meta.get("b"))

    async with db.transaction():
        await db.meta.set("b", "1")
        # a task with a context of its own is another reader: it does not see uncommitted writes
        await asyncio.create_task(read_outside(), context=contextvars.Context())
        await asyncio.create_task(read_outside())  # a task started inside shares the transaction
    await read_outside()
    assert outside == [None, "1", "1"]
    await db.close()


async def test_big_ids_and_snowflakes_round_trip(store_url):
    db = await Store.open(store_url)
    guild = 2**63 - 1  # Discord snowflakes need 64 bits
    source = await db.sources.add("https://guild/feed", "Guild feed", owner_guild_id=guild)
    assert (await db.sources.get(source.id)).owner_guild_id == guild
    await write(
        db,
        "INSERT INTO subscriptions(guild_id, channel_id, created_at, start_story_id) VALUES (?, ?, ?, ?)",
        (guild, guild - 1, "2026-12-01T00:00:00+00:00", 2**40),
    )
    assert await rows(db, "SELECT guild_id, channel_id, start_story_id FROM subscriptions") == [
        (guild, guild - 1, 2**40)
    ]
    await db.close()


async def test_times_sort_as_text_alike_on_both_engines(store_url):
    db = await Store.open(store_url)
    times = ["2026-12-01T09:00:00+00:00", "2026-12-01T10:00:00+00:00", "2026-11-30T23:59:59+00:00"]
    for n, at in enumerate(times):
        await write(
            db,
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            (f"Key-{n}" if n else f"key-{n}", at),  # mixed case: byte order puts capitals first
        )
    assert await rows(db, "SELECT value FROM meta ORDER BY value DESC") == [
        (t,) for t in sorted(times, reverse=True)
    ]
    assert await rows(db, "SELECT key FROM meta ORDER BY key") == [("Key-1",), ("Key-2",), ("key-0",)]
    await db.close()
