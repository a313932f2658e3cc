"""A test's own look at the tables, on either engine (tests only: the bot's SQL lives in bot/store)."""

from __future__ import annotations

from typing import Any

from bot.store import Store


async def rows(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await store._db.fetchall(sql, params)]


async def write(store: Store, sql: str, params: tuple[Any, ...] = ()) -> int:
    async with store._db.transaction():
        return await store._db.execute(sql, params)
