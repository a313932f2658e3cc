"""The store: the only place with SQL. One table class per purpose, one way in for writes.

    store = await Store.open_configured(config.storage, artists=index)   # SQLite file or PostgreSQL URL
    story = await store.stories.get(story_id)               # a read: the read connection
    async with store.transaction():                         # writes that belong together: one commit
        await store.subscriptions.delete(...)
        await store.deliveries.drop(...)

Every write method is a transaction of its own when called outside `transaction()`, and joins the caller's
transaction when called inside one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from bot.config import StorageConfig
from bot.models import ArtistRef
from bot.store.clusters import ClusterMember, ClusterMerge, ClusterSpan, ClusterTable
from bot.store.database import Database, StoreError, load_migrations, open_database
from bot.store.deliveries import DeliveryTable
from bot.store.direct_messages import DirectMessageTable
from bot.store.follows import FollowTable
from bot.store.locks import LockTable
from bot.store.meta import MetaTable
from bot.store.rates import RateTable
from bot.store.sources import SourceTable
from bot.store.stories import ArtistNamer, StoredStory, StoryTable, StoryText
from bot.store.subscriptions import SubscriptionTable

__all__ = [
    "ArtistLookup",
    "ClusterMember",
    "ClusterMerge",
    "ClusterSpan",
    "Store",
    "StoreError",
    "StoredStory",
    "StoryText",
    "load_migrations",
]


class _Artist(Protocol):
    def ref(self) -> ArtistRef: ...


class ArtistLookup(Protocol):
    """What the store needs of the artist index: an artist by id (the index itself fits)."""

    def get(self, artist_id: str) -> _Artist | None: ...


class Store:
    """The database and its tables."""

    def __init__(self, db: Database, *, artists: ArtistLookup | None = None) -> None:
        self._db = db
        self.path = db.path
        self.artists = artists  # the artist index that names stored artist ids; None: named by their ids
        self.meta = MetaTable(db)
        self.sources = SourceTable(db)
        self.stories = StoryTable(db, self._artist_namer)
        self.subscriptions = SubscriptionTable(db)
        self.deliveries = DeliveryTable(db)
        self.clusters = ClusterTable(db)
        self.follows = FollowTable(db)
        self.direct_messages = DirectMessageTable(db)
        self.locks = LockTable(db)
        self.rates = RateTable(db)
        # who holds this process's claims on sources and deliveries: unique per process and start (os.urandom,
        # what secrets.token_hex reads, without importing `secrets` and its hashing modules for every command)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"

    @classmethod
    async def open(cls, target: str | Path, *, artists: ArtistLookup | None = None) -> Store:
        """The store at `target`: a postgresql:// URL, else a SQLite file; migrated to the newest schema."""
        return cls(await open_database(target), artists=artists)

    @classmethod
    async def open_configured(cls, storage: StorageConfig, *, artists: ArtistLookup | None = None) -> Store:
        """The store the configuration names ([storage] url, else database): what every command opens."""
        return await cls.open(storage.target, artists=artists)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @property
    def shared(self) -> bool:
        """Whether several processes may use this database at once (PostgreSQL; SQLite serves one process)."""
        return self._db.dialect == "postgresql"

    async def close(self) -> None:
        await self._db.close()

    async def migrate(self) -> list[int]:
        return await self._db.migrate()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Store]:
        """Writes inside commit together or not at all; holds the one write connection meanwhile."""
        async with self._db.transaction():
            yield self

    def _artist_namer(self) -> ArtistNamer | None:
        index = self.artists
        if index is None:
            return None

        def name(artist_id: str) -> ArtistRef | None:
            artist = index.get(artist_id)
            return artist.ref() if artist is not None else None

        return name
