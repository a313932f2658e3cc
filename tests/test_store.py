import sqlite3
from datetime import UTC, datetime

import pytest

from bot.artists import ArtistIndex
from bot.config import SourceConfig
from bot.models import ArtistRef, Story
from bot.store import Store, StoreError, load_migrations
from bot.store import database as store_module
from bot.store.database import Migration


def story(key: str, url: str, title: str = "BTS's V sings to IU") -> Story:
    return Story(key=key, title=title, url=url, source="Koreaboo", canonical_url=url, summary="A summary.")


async def test_migrations_apply_once_and_are_recorded(tmp_path):
    path = tmp_path / "k.db"
    db = await Store.open(path)
    versions = [m.version for m in load_migrations()]
    async with db.db.execute("SELECT version FROM schema_migrations ORDER BY version") as cursor:
        assert [row[0] for row in await cursor.fetchall()] == versions
    async with db.db.execute("PRAGMA journal_mode") as cursor:
        assert (await cursor.fetchone())[0] == "wal"
    await db.close()
    again = await Store.open(path)
    assert await again.migrate() == []
    await again.close()


async def test_a_failing_migration_rolls_back_and_says_which(tmp_path, monkeypatch):
    good = load_migrations()
    bad = Migration(9999, "broken", "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;")
    monkeypatch.setattr(store_module, "load_migrations", lambda: [*good, bad])
    with pytest.raises(StoreError, match="9999_broken"):
        await Store.open(tmp_path / "k.db")
    con = sqlite3.connect(tmp_path / "k.db")
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    assert con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == good[-1].version
    con.close()


async def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        await Store.open(tmp_path / "no" / "such" / "k.db")


async def test_a_story_in_two_feeds_is_stored_once(tmp_path):
    db = await Store.open(tmp_path / "k.db")
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
    async with db.db.execute("SELECT count(*) FROM stories") as cursor:
        assert (await cursor.fetchone())[0] == 1
    async with db.db.execute("SELECT count(*) FROM source_stories") as cursor:
        assert (await cursor.fetchone())[0] == 2
    assert await db.stories.known_keys(["guid-1", "nope"], []) == {"guid-1": first[0].id}
    await db.close()


async def test_full_text_index_follows_the_stories(tmp_path):
    db = await Store.open(tmp_path / "k.db")
    await db.stories.add_many(
        [story("k", "https://a/1", title="Stray Kids announce world tour")], source_id=None
    )
    async with db.db.execute("SELECT rowid FROM stories_fts WHERE stories_fts MATCH 'tour'") as cursor:
        assert len(await cursor.fetchall()) == 1
    await db.db.execute("UPDATE stories SET title = 'Stray Kids comeback' WHERE story_key = 'k'")
    async with db.db.execute("SELECT rowid FROM stories_fts WHERE stories_fts MATCH 'tour'") as cursor:
        assert await cursor.fetchall() == []
    await db.close()


async def test_config_sources_sync(tmp_path):
    db = await Store.open(tmp_path / "k.db")
    await db.sources.sync_config([SourceConfig("A", "https://a/feed"), SourceConfig("B", "https://b/feed")])
    await db.sources.sync_config([SourceConfig("A renamed", "https://a/feed")])
    by_url = {s.url: s for s in await db.sources.list()}
    assert by_url["https://a/feed"].name == "A renamed" and by_url["https://a/feed"].enabled
    assert by_url["https://b/feed"].disabled_reason == "removed from the configuration"
    await db.sources.sync_config([SourceConfig("A", "https://a/feed"), SourceConfig("B", "https://b/feed")])
    assert all(s.enabled for s in await db.sources.list())
    assert [s.url for s in await db.sources.list(enabled_only=True)] == ["https://a/feed", "https://b/feed"]
    await db.close()


async def test_source_state_round_trips(tmp_path):
    db = await Store.open(tmp_path / "k.db")
    (source,) = await db.sources.sync_config([SourceConfig("A", "https://a/feed")])
    source.etag, source.consecutive_failures, source.last_error = '"abc"', 3, "timed out"
    await db.sources.save_state(source)
    loaded = await db.sources.get(source.id)
    assert (loaded.etag, loaded.consecutive_failures, loaded.last_error) == ('"abc"', 3, "timed out")
    await db.close()


async def test_meta(tmp_path):
    db = await Store.open(tmp_path / "k.db")
    assert await db.meta.get("x") is None
    await db.meta.set("x", "1")
    await db.meta.set("x", "2")
    assert await db.meta.get("x") == "2"
    await db.close()


async def test_sources_the_poller_disabled_before_probes_existed_are_probed_after_the_upgrade(
    tmp_path, monkeypatch
):
    every = load_migrations()
    monkeypatch.setattr(store_module, "load_migrations", lambda: [m for m in every if m.version < 700])
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
    monkeypatch.setattr(store_module, "load_migrations", lambda: every)
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
    await db.close()


async def test_without_an_artist_index_stored_artists_are_named_by_their_id(tmp_path):
    tagged = story("guid-1", "https://www.koreaboo.com/news/v-iu/")
    tagged.artists = [ArtistRef("bts-v", "V", "BTS"), ArtistRef("iu", "IU", None)]
    index = ArtistIndex.load()
    db = await Store.open(tmp_path / "k.db", artists=index)
    try:
        [added] = await db.stories.add_many([tagged], source_id=None)
        assert (await db.stories.get(added.id)).artists == tagged.artists
    finally:
        await db.close()

    db = await Store.open(tmp_path / "k.db", artists=None)  # the artist data could not be loaded
    try:
        by_id = [ArtistRef("bts-v", "bts-v", None), ArtistRef("iu", "iu", None)]
        assert (await db.stories.get(added.id)).artists == by_id
        assert [s.artists for s in await db.stories.get_many([added.id])] == [by_id]
        db.artists = index  # loaded later: named again
        assert (await db.stories.get(added.id)).artists == tagged.artists
    finally:
        await db.close()
