"""`kpopnews copy-db`: a populated SQLite store moved into PostgreSQL (twice), and back into SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from bot.config import SourceConfig
from bot.models import ArtistRef, Story
from bot.store import Store
from bot.store.copy import copy_database
from bot.store.text_search import text_matches
from tests.support.sql import rows, write

GUILD, CHANNEL, OTHER_CHANNEL, MESSAGE = (
    1161234567890123456,
    1171234567890123456,
    1181234567890123456,
    2**62 + 5,
)


async def populate(store: Store, stories: int = 60) -> None:
    """Every table with something in it: sources with polling state, stories in one or two feeds with artists,
    clusters, subscriptions, deliveries (sent and pending), a trending crossing and meta."""
    koreaboo, soompi = await store.sources.sync_config(
        [SourceConfig("Koreaboo", "https://www.koreaboo.com/feed/"), SourceConfig("Soompi", "https://x/feed")]
    )
    koreaboo.etag, koreaboo.body_hash, koreaboo.consecutive_failures = '"v1"', "abc", 2
    await store.sources.save_state(koreaboo)
    batch = [
        Story(
            key=f"guid-{n}",
            title=f"BTS's V sings to IU, part {n}" if n % 3 else f"Stray Kids announce world tour {n}",
            url=f"https://www.koreaboo.com/news/{n}",
            source="Koreaboo",
            canonical_url=f"https://www.koreaboo.com/news/{n}",
            summary="Beyoncé and 방탄소년단 in one summary." if n % 5 == 0 else "A summary.",
            artists=[ArtistRef("bts-v", "V", "BTS"), ArtistRef("iu", "IU", None)][: n % 3],
            text=f"The article {n}: V and IU sang together."
            if n % 2
            else "",  # story_texts: compressed bytes
        )
        for n in range(stories)
    ]
    stored = await store.stories.add_many(batch, source_id=koreaboo.id)
    await store.stories.add_many(batch[: stories // 2], source_id=soompi.id)
    ids = [s.id for s in stored]
    async with store.transaction():
        db = store._db
        for n, story_id in enumerate(ids):
            cluster = ids[n - n % 4]  # clusters of four: the id of their first story
            await db.execute("UPDATE stories SET cluster_id = ? WHERE id = ?", (cluster, story_id))
            await db.execute(
                "INSERT INTO cluster_features(story_id, cluster_id, at, cluster_at, artists, title_terms)"
                " VALUES (?,?,?,?,?,?)",
                (story_id, cluster, 1_700_000_000 + n, 1_700_000_000, "bts-v", "sing"),
            )
            await db.execute(
                "INSERT INTO cluster_keys(key, at, story_id) VALUES (?,?,?), (?,?,?)",
                ("a:bts-v", 1_700_000_000 + n, story_id, "t:sing", 1_700_000_000 + n, story_id),
            )
        for channel, artist in ((CHANNEL, "bts-v"), (CHANNEL, None), (OTHER_CHANNEL, "iu")):
            await db.insert(
                "INSERT INTO subscriptions(guild_id, channel_id, artist_id, source_id, only_trending, created_by,"
                " created_at, start_story_id) VALUES (?,?,?,?,?,?,?,?)",
                (GUILD, channel, artist, None, 0, GUILD + 1, "2026-12-01T00:00:00+00:00", ids[2]),
            )
        subscription = await db.fetchval("SELECT min(id) FROM subscriptions")
        for n, story_id in enumerate(ids[::4]):
            await db.execute(
                "INSERT INTO deliveries(story_id, cluster_id, guild_id, channel_id, subscription_id, status, nonce,"
                " message_id, created_at, sent_at, also_on_json) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    story_id,
                    story_id,
                    GUILD,
                    CHANNEL,
                    subscription,
                    "sent" if n % 2 else "pending",
                    f"nonce-{n}",
                    MESSAGE + n if n % 2 else None,
                    "2026-12-01T00:00:00+00:00",
                    "2026-12-01T00:01:00+00:00" if n % 2 else None,
                    '["Soompi"]',
                ),
            )
        await db.execute(
            "INSERT INTO trending_crossings(cluster_id, crossed_at, points, last_story_id) VALUES (?,?,?,?)",
            (ids[0], "2026-12-01T00:00:00+00:00", 12.345678901234, ids[3]),
        )
    await store.meta.set("commands_hash", "f00")


async def everything(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every copied table's rows in key order, as plain tuples."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for table in sorted(await store._db.describe_tables(), key=lambda t: t.name):
        columns = ", ".join(sorted(table.columns))
        found[table.name] = await rows(
            store, f"SELECT {columns} FROM {table.name} ORDER BY {', '.join(table.key)}"
        )
    return found


async def answers(store: Store) -> dict[str, Any]:
    """What the bot asks its store, answered: the same on both sides of a copy."""
    result: dict[str, Any] = {}
    for words, any_word in (
        (["tour"], False),
        (["beyonce"], False),
        (["iu", "tour"], True),
        (["방탄소년단"], False),
    ):
        result[f"search {words} {any_word}"] = await text_matches(
            store._db, words, any_word=any_word, window=200, cap=1000
        )
    ids = [row[0] for row in await rows(store, "SELECT id FROM stories ORDER BY id")]
    result["stories"] = await store.stories.get_many(ids)
    result["texts"] = await store.stories.texts_after(0, len(ids))
    result["sources"] = await store.sources.list()
    result["known"] = await store.stories.known_keys(
        ["guid-1", "guid-59", "nope"], ["https://www.koreaboo.com/news/7"]
    )
    result["artist newest"] = await rows(
        store,
        "SELECT story_id, sort_at FROM story_artists WHERE artist_id = 'bts-v' ORDER BY sort_at DESC, story_id DESC",
    )
    result["subscriptions"] = await rows(
        store, "SELECT channel_id, artist_id, start_story_id FROM subscriptions ORDER BY channel_id, id"
    )
    return result


def write_config(tmp_path: Path, database: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndatabase = "{database}"\n')
    return config


async def copy_db(config: Path, url: str, *, database_url: str = "") -> tuple[int, str, str]:
    """`kpopnews copy-db URL --config CONFIG`, as an operator runs it."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent.parent)}
    if database_url:
        env["KPOPNEWS_DATABASE_URL"] = database_url
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "copy-db", url, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return result.returncode, result.stdout, result.stderr


async def test_sqlite_to_postgresql_twice_then_back(tmp_path, postgres_url):
    sqlite_path = tmp_path / "kpopnews.db"
    source = await Store.open(sqlite_path)
    await populate(source)
    config = write_config(tmp_path, sqlite_path)

    code, out, err = await copy_db(config, postgres_url)
    assert (code, err) == (0, "")
    assert "stories: 60 rows copied, 0 removed" in out
    target = await Store.open(postgres_url)
    assert target.dialect == "postgresql"
    expected = await everything(source)
    assert await everything(target) == expected
    assert await answers(target) == await answers(source)

    # a second run changes nothing and duplicates nothing
    code, out, err = await copy_db(config, postgres_url)
    assert (code, err) == (0, "")
    assert await everything(target) == expected
    assert await rows(
        target, "SELECT count(*), count(DISTINCT (channel_id, cluster_id)) FROM deliveries"
    ) == [(15, 15)]

    # the source moves on (as a bot still running would); a third run follows it, deletions included
    (koreaboo, _) = await source.sources.list()
    koreaboo.etag = '"v2"'
    await source.sources.save_state(koreaboo)
    await write(source, "DELETE FROM subscriptions WHERE artist_id = 'iu'")
    await write(source, "UPDATE deliveries SET status = 'sent' WHERE status = 'pending'")
    await source.stories.add_many(
        [
            Story(
                key="new",
                title="NewJeans return",
                url="https://n/1",
                source="Koreaboo",
                canonical_url="https://n/1",
            )
        ],
        source_id=koreaboo.id,
    )
    code, out, err = await copy_db(config, postgres_url)
    assert code == 0
    assert "subscriptions: 2 rows copied, 1 removed" in out
    assert await everything(target) == await everything(source)
    assert await answers(target) == await answers(source)

    # the bot goes on numbering after the copied ids
    (fresh,) = await target.stories.add_many(
        [
            Story(
                key="after",
                title="After the move",
                url="https://n/2",
                source="Koreaboo",
                canonical_url="https://n/2",
            )
        ],
        source_id=None,
    )
    assert fresh.id == max(row[0] for row in await rows(source, "SELECT id FROM stories")) + 1

    # and back: PostgreSQL into a new SQLite file, with its full-text index rebuilt
    back_path = tmp_path / "back.db"
    back = await Store.open(back_path)
    await back.close()
    pg_source = await Store.open(postgres_url)
    back = await Store.open(back_path)
    await copy_database(pg_source._db, back._db)
    assert await everything(back) == await everything(target)
    assert await answers(back) == await answers(target)
    for store in (source, target, pg_source, back):
        await store.close()


async def test_a_row_the_target_refuses_leaves_it_unchanged(tmp_path, postgres_url):
    sqlite_path = tmp_path / "kpopnews.db"
    source = await Store.open(sqlite_path)
    await populate(source, stories=8)
    await source.close()
    config = write_config(tmp_path, sqlite_path)
    assert (await copy_db(config, postgres_url))[0] == 0
    con = sqlite3.connect(sqlite_path)  # SQLite keeps what it is given; PostgreSQL will not take it
    con.execute("UPDATE sources SET consecutive_failures = 'many' WHERE id = 1")
    con.execute("UPDATE meta SET value = 'changed'")
    con.commit()
    con.close()

    code, out, err = await copy_db(config, postgres_url)
    assert code == 1
    assert err.count("\n") == 1 and "table sources" in err and "nothing was changed" in err
    target = await Store.open(postgres_url)
    assert await target.meta.get("commands_hash") == "f00"
    await target.close()


async def test_differing_schemas_are_refused(tmp_path, postgres_url):
    sqlite_path = tmp_path / "kpopnews.db"
    source = await Store.open(sqlite_path)
    await source.close()
    target = await Store.open(postgres_url)
    await write(
        target, "INSERT INTO schema_migrations VALUES (9999, 'from_the_future', '2030-01-01T00:00:00Z')"
    )
    await target.close()
    code, out, err = await copy_db(write_config(tmp_path, sqlite_path), postgres_url)
    assert code == 2
    assert err.startswith("kpopnews: the schemas differ") and err.count("\n") == 1


async def test_copy_db_says_what_is_wrong_in_one_line(tmp_path):
    sqlite_path = tmp_path / "kpopnews.db"
    config = write_config(tmp_path, sqlite_path)
    for url, says in (
        ("mysql://u:hunter2@h/db", "must be postgresql://"),
        ("postgresql://u:hunter2@h:5432", "names no database"),
        (str(sqlite_path), "is the configured database itself"),
        ("postgresql://u:hunter2@127.0.0.1:1/db", "cannot be opened"),
    ):
        code, out, err = await copy_db(config, url)
        assert code == 2, (url, err)
        assert says in err and err.count("\n") == 1, err
        assert "hunter2" not in err and "Traceback" not in err


async def test_postgresql_into_a_sqlite_file_with_the_url_from_the_environment(tmp_path, postgres_url):
    source = await Store.open(postgres_url)
    await populate(source, stories=12)
    target_path = tmp_path / "moved.db"
    config = write_config(tmp_path, tmp_path / "not-this.db")  # KPOPNEWS_DATABASE_URL wins over it
    code, out, err = await copy_db(config, str(target_path), database_url=postgres_url)
    assert (code, err) == (0, "")
    assert "stories: 12 rows copied" in out
    assert not (tmp_path / "not-this.db").exists()
    target = await Store.open(target_path)
    assert await everything(target) == await everything(source)
    assert await answers(target) == await answers(source)
    await source.close()
    await target.close()
