"""Locks every process of the bot shares: PostgreSQL advisory locks; on SQLite (one process) in-process locks.

async with store.locks.try_lock("command-sync") as held:   # held: no other process holds it now
    ...
async with store.transaction():
    await store.locks.serialize("clustering")          # until the commit, one such transaction at a time
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.store.database import Database


def lock_key(name: str) -> int:
    """A lock's name as PostgreSQL's advisory lock key: a signed 64-bit number, the same in every process."""
    return int.from_bytes(hashlib.sha256(f"kpopnews:{name}".encode()).digest()[:8], "big", signed=True)


class LockTable:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._local: dict[str, asyncio.Lock] = {}  # SQLite: one process, so a lock in it is enough

    @asynccontextmanager
    async def try_lock(self, name: str) -> AsyncIterator[bool]:
        """Hold the lock `name` for the block if no one (no other process, no other task) holds it: yields True;
        else yields False at once and holds nothing."""
        local = self._local.setdefault(name, asyncio.Lock())
        if local.locked():
            yield False
            return
        async with local:
            if self._db.dialect != "postgresql":
                yield True
                return
            async with self._db.session_lock(lock_key(name)) as held:
                yield held

    async def serialize(self, name: str) -> None:
        """Inside a transaction: wait until no other transaction holding `name` is open, and hold it until this
        one ends (PostgreSQL's pg_advisory_xact_lock). SQLite's single writer serialises transactions already."""
        if not self._db.in_transaction():
            raise RuntimeError("locks.serialize outside store.transaction()")
        if self._db.dialect == "postgresql":
            await self._db.fetchval("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))
