"""What only the PostgreSQL engine does: placeholders, processes starting together, what it says when it
cannot connect. (Everything the tables do is tested on both engines in test_store*.py.)"""

from __future__ import annotations

import asyncio

import pytest

from bot.store import Store, StoreError, load_migrations
from bot.store.postgres import _as_any, numbered
from tests.support.sql import rows


def test_placeholders_are_numbered_outside_literals_names_and_comments():
    sql = "SELECT '?', \"a?\", ? FROM t -- why?\nWHERE a = ? /* or ? */ AND b = 'it''s ?' AND c IN (?,?)"
    assert numbered(sql) == (
        "SELECT '?', \"a?\", $1 FROM t -- why?\nWHERE a = $2 /* or ? */ AND b = 'it''s ?' AND c IN ($3,$4)"
    )
    assert numbered(sql) is numbered(sql)  # translated once, then cached


def test_in_lists_become_one_array_parameter():
    assert (
        _as_any("SELECT id FROM s WHERE id IN ({marks}) AND x = ?")
        == "SELECT id FROM s WHERE id = ANY(?) AND x = ?"
    )
    assert _as_any("DELETE FROM s WHERE id NOT IN ( {marks} )") == "DELETE FROM s WHERE id <> ALL(?)"
    assert _as_any("INSERT INTO t VALUES ({marks})") is None  # not an IN list: the marks are spelled out


async def test_processes_starting_together_migrate_once(postgres_url):
    stores = await asyncio.gather(*(Store.open(postgres_url) for _ in range(4)))
    assert await rows(stores[0], "SELECT version FROM schema_migrations ORDER BY version") == [
        (m.version,) for m in load_migrations("postgresql")
    ]
    for store in stores:
        await store.close()


async def test_in_lists_of_any_length(postgres_url):
    store = await Store.open(postgres_url)
    assert await store.stories.known_keys([f"k{n}" for n in range(5000)], []) == {}
    assert await store._db.select_in("SELECT id FROM stories WHERE id IN ({marks})", []) == []
    await store.close()


async def test_raw_sqlite_connection_is_refused_with_a_reason(postgres_url):
    store = await Store.open(postgres_url)
    with pytest.raises(RuntimeError, match="not available on postgresql: move this SQL into bot/store"):
        store.db  # noqa: B018
    await store.close()


async def test_a_missing_database_is_a_clear_error_without_the_password(postgres_url):
    missing = (
        postgres_url.rsplit("/", 1)[0].replace("postgres@", "postgres:hunter2@") + "/kpopnews_no_such_db"
    )
    with pytest.raises(StoreError) as caught:
        await Store.open(missing)
    assert "does not exist" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "postgres:***@" in str(caught.value)
    with pytest.raises(StoreError, match="cannot be opened") as caught:
        await Store.open("postgresql://postgres:hunter2@127.0.0.1:1/kpopnews")
    assert "hunter2" not in str(caught.value)
