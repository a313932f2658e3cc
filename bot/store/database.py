"""The database underneath every table: one write connection owned by transactions, one read connection, migrations.

SQLite serves one process: a single aiosqlite connection carries every write, and `Database.transaction()` owns it
(the write lock, the commit, the rollback), so no caller can forget the lock or commit another task's half-done
writes. Readers (`/news`, `/trending`, the CLI) use a second, read-only connection, so a question is never queued
behind an ingest batch in aiosqlite's thread. A read inside a transaction uses the write connection, so it sees
the transaction's own writes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from bot.timeutil import to_iso, utcnow

log = logging.getLogger(__name__)

IN_CHUNK = 500  # values in one IN (...) list: well under SQLite's cap on bound parameters
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

Row = aiosqlite.Row


class StoreError(Exception):
    """The database cannot be opened or migrated; says which file and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    found: list[Migration] = []
    for entry in resources.files("bot.store.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a version number: {versions}")
    return found


class _Transaction:
    """The transaction a task holds; tables called from that task while it is open write and read through it."""

    def __init__(self) -> None:
        self.open = True


_current: contextvars.ContextVar[_Transaction | None] = contextvars.ContextVar("kpopnews_tx", default=None)


class Database:
    """The connections, the write lock and the statements every table runs through."""

    dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: str) -> None:
        self._writer = writer
        self._reader = reader
        self.path = path
        # One connection is one transaction at a time: `transaction()` holds this from the first write to the
        # commit, or one task's commit (or rollback) would take another task's half-done writes with it.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        path = str(path)
        _check_folder(path)
        try:
            writer = await aiosqlite.connect(path)
        except Exception as exc:  # sqlite3.OperationalError and friends: report, never a traceback
            raise StoreError(f"database {path} cannot be opened: {exc}") from None
        writer.row_factory = aiosqlite.Row
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
            await writer.execute("PRAGMA foreign_keys=ON")
            await writer.execute("PRAGMA busy_timeout=5000")
            await _migrate(writer)
            reader = writer if path == ":memory:" else await _open_reader(path)
        except StoreError:
            await writer.close()
            raise
        except Exception as exc:
            await writer.close()
            raise StoreError(f"database {path} cannot be used: {exc}") from None
        return cls(writer, reader, path)

    async def close(self) -> None:
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded (`open` does); returns the versions applied."""
        async with self._lock:
            return await _migrate(self._writer)

    # --- transactions -------------------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Hold the write connection: everything written inside commits together, or nothing does.

        A transaction opened inside another by the same task joins it (commits with the outer one)."""
        current = _current.get()
        if current is not None and current.open:
            yield
            return
        async with self._lock:
            tx = _Transaction()
            token = _current.set(tx)
            try:
                yield
                await self._writer.commit()
            except BaseException:
                await self._writer.rollback()
                raise
            finally:
                tx.open = False
                _current.reset(token)

    def in_transaction(self) -> bool:
        current = _current.get()
        return current is not None and current.open

    def _for_reading(self) -> aiosqlite.Connection:
        return self._writer if self.in_transaction() else self._reader

    def _for_writing(self) -> aiosqlite.Connection:
        if not self.in_transaction():
            raise RuntimeError("a write outside store.transaction(): open one around it")
        return self._writer

    # --- statements ---------------------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._for_reading().execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._for_reading().execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return row[0] if row is not None else None

    async def select_in(self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()) -> list[Row]:
        """The rows of `sql` for every value, asked IN_CHUNK values at a time (SQLite caps bound parameters).
        `sql` writes `{marks}` where the IN list goes; where it appears twice, each gets the chunk. `params`
        follow the IN lists."""
        rows: list[Row] = []
        uses = sql.count("{marks}")
        for start in range(0, len(values), IN_CHUNK):
            chunk = list(values[start : start + IN_CHUNK])
            rows.extend(
                await self.fetchall(sql.replace("{marks}", marks(len(chunk))), chunk * uses + [*params])
            )
        return rows

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write; returns the number of rows it changed."""
        cursor = await self._for_writing().execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT; returns the new row's id."""
        cursor = await self._for_writing().execute(sql, params)
        row_id = cursor.lastrowid
        await cursor.close()
        return int(row_id or 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._for_writing().executemany(sql, rows)

    async def execute_in(self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()) -> int:
        """`execute` for a statement with an IN list (`{marks}`), IN_CHUNK values at a time; `params` first."""
        changed = 0
        for start in range(0, len(values), IN_CHUNK):
            chunk = list(values[start : start + IN_CHUNK])
            changed += await self.execute(sql.replace("{marks}", marks(len(chunk))), [*params, *chunk])
        return changed


def marks(count: int) -> str:
    """`?,?,?` for an IN list of `count` values."""
    return ",".join("?" * count)


async def _open_reader(path: str) -> aiosqlite.Connection:
    reader = await aiosqlite.connect(f"file:{quote(path)}?mode=ro", uri=True)  # quoted: ? and # in a path
    reader.row_factory = aiosqlite.Row
    await reader.execute("PRAGMA busy_timeout=5000")
    return reader


async def _migrate(db: aiosqlite.Connection) -> list[int]:
    """Apply every packaged migration not yet recorded; returns the versions applied."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    async with db.execute("SELECT version FROM schema_migrations") as cursor:
        done = {row[0] for row in await cursor.fetchall()}
    applied: list[int] = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        try:
            # executescript commits first; the whole migration and its record go in one transaction
            await db.executescript(
                "BEGIN;\n"
                + migration.sql
                + f"\n;INSERT INTO schema_migrations VALUES ({migration.version}, '{migration.name}', "
                f"'{to_iso(utcnow())}');\nCOMMIT;"
            )
        except Exception as exc:
            await db.rollback()
            raise StoreError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from None
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied


def _check_folder(path: str) -> None:
    """A missing folder is a configuration mistake: say so instead of sqlite's 'unable to open'."""
    if path == ":memory:":
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise StoreError(
            f"database {path}: folder {parent} does not exist; create it or fix storage.database"
        )
