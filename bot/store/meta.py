"""The bot's own small state (e.g. the hash of the commands last synced), as keys and values."""

from __future__ import annotations

from bot.store.database import Database


class MetaTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        return await self._db.fetchval("SELECT value FROM meta WHERE key = ?", (key,))

    async def set(self, key: str, value: str) -> None:
        async with self._db.transaction():
            await self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
