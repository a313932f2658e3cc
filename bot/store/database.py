"""The database underneath every table: the engine-neutral statements, transactions and migrations.

Two engines serve the same API: SQLite (the default, one process: `SQLiteDatabase` here) and PostgreSQL (several
processes on one database: `bot/store/postgres.py`). Tables write their SQL once, with `?` placeholders; the few
statements that must differ ask `db.dialect`.

`Database.transaction()` owns the writes (a process-local write lock, the commit, the rollback), so no caller can
forget the lock or commit another task's half-done writes. A transaction opened inside another by the same task
joins it. Reads outside a transaction go to a reader (SQLite: a read-only connection; PostgreSQL: the pool), so a
question is never queued behind an ingest batch; reads inside one see the transaction's own writes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias
from urllib.parse import quote

import aiosqlite

from bot.config import is_postgres_url
from bot.store.migration_steps import STEPS, Step
from bot.timeutil import to_iso, utcnow

log = logging.getLogger(__name__)

IN_CHUNK = 500  # values in one IN (...) list: well under SQLite's cap on bound parameters
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgresql))?\.sql$")

Dialect = Literal["sqlite", "postgresql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql")
# A row as the engine returns it (aiosqlite.Row, asyncpg.Record): row["col"], row[0], `for a, b in rows`.
Row: TypeAlias = Any


class StoreError(Exception):
    """The database cannot be opened, migrated or copied; says which one and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    step: Step | None = None  # Python run after `sql`, in its transaction (bot/store/migration_steps.py)


def load_migrations(dialect: Dialect = "sqlite") -> list[Migration]:
    """The packaged migrations for one engine, in version order.

    `NNNN_name.sql` serves both engines unless `NNNN_name.postgresql.sql` / `NNNN_name.sqlite.sql` exist."""
    files: dict[int, dict[str | None, tuple[str, str]]] = {}  # version -> {dialect or None: (name, sql)}
    # the files beside this module (not importlib.resources: it imports tempfile, shutil and the compressors)
    for entry in _MIGRATIONS.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if not match:
            continue
        version, name, only = int(match.group(1)), match.group(2), match.group(3)
        variants = files.setdefault(version, {})
        if any(other_name != name for other_name, _ in variants.values()):
            raise StoreError(f"migration version {version:04d} is used by two names: {entry.name}")
        variants[only] = (name, entry.read_text(encoding="utf-8"))
    found: list[Migration] = []
    for version, variants in sorted(files.items()):
        chosen = variants.get(dialect) or variants.get(None)
        if chosen is None:
            name = next(iter(variants.values()))[0]
            raise StoreError(f"migration {version:04d}_{name} has no {dialect} version")
        found.append(Migration(version, chosen[0], chosen[1], STEPS.get(version)))
    return found


class _Transaction:
    """What a task holds while its transaction (or read snapshot) is open; its statements run through it."""

    def __init__(self, connection: Any, *, writable: bool = True) -> None:
        self.connection = connection
        self.writable = writable
        self.open = True
        # tasks started inside a transaction share it: one statement at a time on its connection
        self.busy = asyncio.Lock()


@dataclass
class TableInfo:
    """A table as `copy-db` needs to know it (bot/store/copy.py)."""

    name: str
    columns: list[str]  # the columns a copy writes (PostgreSQL's generated ones left out), in table order
    key: list[str]  # the primary key
    kinds: dict[str, str] = field(default_factory=dict)  # column -> "int" | "float" | "text" | "other"
    parents: set[str] = field(default_factory=set)  # tables its foreign keys point to


class Database(ABC):
    """The statements every table runs, transactions and migrations; one subclass per engine."""

    dialect: ClassVar[Dialect]

    def __init__(self, where: str) -> None:
        self.path = where  # for messages: the SQLite file, or the PostgreSQL URL without its password
        # Process-local: a transaction holds it from its first write to the commit (PostgreSQL too, for now:
        # the same guarantees within a process as SQLite; across processes, row locks will do).
        self._lock = asyncio.Lock()
        # per database, so a task may hold transactions on two databases at once (copy-db)
        self._current: contextvars.ContextVar[_Transaction | None] = contextvars.ContextVar(
            f"kpopnews_tx_{id(self)}", default=None
        )
        self.rollbacks = 0  # transactions rolled back so far: what a cache of this process's reads may check

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded (`open` does); returns the versions applied."""

    async def applied_migrations(self) -> list[int]:
        return [
            row[0] for row in await self.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        ]

    # --- transactions -------------------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Everything written inside commits together, or nothing does.

        A transaction opened inside another by the same task joins it (commits with the outer one)."""
        current = self._current.get()
        if current is not None and current.open:
            if not current.writable:
                raise RuntimeError("a write inside a read snapshot")
            yield
            return
        async with self._lock:
            tx = await self._begin()
            token = self._current.set(tx)
            try:
                yield
                await self._commit(tx)
            except BaseException:
                self.rollbacks += 1
                await self._rollback(tx)
                raise
            finally:
                tx.open = False
                self._current.reset(token)
                await self._end(tx)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Reads inside (by this task) all see one consistent state of the database, whatever other
        processes or tasks commit meanwhile: for copying a database that is in use."""
        tx = await self._begin_snapshot()
        token = self._current.set(tx)
        try:
            yield
        finally:
            tx.open = False
            self._current.reset(token)
            await self._end_snapshot(tx)

    def in_transaction(self) -> bool:
        current = self._current.get()
        return current is not None and current.open and current.writable

    def _held(self) -> _Transaction | None:
        current = self._current.get()
        return current if current is not None and current.open else None

    def _for_writing(self) -> _Transaction:
        current = self._held()
        if current is None or not current.writable:
            raise RuntimeError("a write outside store.transaction(): open one around it")
        return current

    @abstractmethod
    async def _begin(self) -> _Transaction: ...

    @abstractmethod
    async def _commit(self, tx: _Transaction) -> None: ...

    @abstractmethod
    async def _rollback(self, tx: _Transaction) -> None: ...

    @abstractmethod
    async def _end(self, tx: _Transaction) -> None:
        """After the commit or rollback (PostgreSQL gives the connection back to the pool)."""

    @abstractmethod
    async def _begin_snapshot(self) -> _Transaction: ...

    @abstractmethod
    async def _end_snapshot(self, tx: _Transaction) -> None: ...

    # --- statements ---------------------------------------------------------------------------------------

    @abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return row[0] if row is not None else None

    async def select_in(self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()) -> list[Row]:
        """The rows of `sql` for every value, asked IN_CHUNK values at a time (SQLite caps bound parameters).
        `sql` writes `IN ({marks})` where the IN list goes; where it appears twice, each gets the chunk.
        `params` follow the IN lists."""
        rows: list[Row] = []
        uses = sql.count("{marks}")
        for start in range(0, len(values), IN_CHUNK):
            chunk = list(values[start : start + IN_CHUNK])
            rows.extend(
                await self.fetchall(sql.replace("{marks}", marks(len(chunk))), chunk * uses + [*params])
            )
        return rows

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write; returns the number of rows it changed."""

    @abstractmethod
    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one INSERT into a table keyed by `id`; returns the new row's id."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def execute_in(self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()) -> int:
        """`execute` for a statement with an IN list (`IN ({marks})`), IN_CHUNK values at a time; `params`
        first."""
        changed = 0
        for start in range(0, len(values), IN_CHUNK):
            chunk = list(values[start : start + IN_CHUNK])
            changed += await self.execute(sql.replace("{marks}", marks(len(chunk))), [*params, *chunk])
        return changed

    async def write_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """One statement that writes and returns rows (`… RETURNING`), committed on its own: atomic alone, it
        needs no transaction. PostgreSQL runs it on any pooled connection, so it does not wait for this
        process's transaction in progress (claims and the request limiter must not). Inside a transaction it
        joins it."""
        async with self.transaction():
            return await self.fetchall(sql, params)

    def session_lock(self, key: int) -> AbstractAsyncContextManager[bool]:
        """PostgreSQL's advisory lock `key` for a block, if no session holds it (yields whether it is held)."""
        raise NotImplementedError(f"{self.dialect} has no advisory locks: it serves one process")

    # --- for copy-db --------------------------------------------------------------------------------------

    @abstractmethod
    async def describe_tables(self) -> list[TableInfo]:
        """The bot's tables (not the migrations' record, not an engine's own search index tables)."""

    @abstractmethod
    async def after_copy(self, tables: list[TableInfo]) -> None:
        """After rows were written with their ids: what the engine needs to go on numbering after them."""


def marks(count: int) -> str:
    """`?,?,?` for an IN list of `count` values."""
    return ",".join("?" * count)


async def open_database(target: str | Path) -> Database:
    """The database at `target`: a postgresql:// URL, else a SQLite file; migrated to the newest schema."""
    if isinstance(target, str) and is_postgres_url(target):
        from bot.store.postgres import PostgresDatabase  # asyncpg only where PostgreSQL is used

        return await PostgresDatabase.open(target)
    return await SQLiteDatabase.open(target)


# --- SQLite ---------------------------------------------------------------------------------------------------


class SQLiteDatabase(Database):
    """SQLite serves one process: a single aiosqlite connection carries every write; readers use a second,
    read-only connection (WAL lets them read while a write is under way)."""

    dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: str) -> None:
        super().__init__(path)
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, path: str | Path) -> SQLiteDatabase:
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
            await _migrate_sqlite(writer)
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
        async with self._lock:
            return await _migrate_sqlite(self._writer)

    async def _begin(self) -> _Transaction:
        return _Transaction(self._writer)  # sqlite3 opens the transaction at the first write

    async def _commit(self, tx: _Transaction) -> None:
        await self._writer.commit()

    async def _rollback(self, tx: _Transaction) -> None:
        await self._writer.rollback()

    async def _end(self, tx: _Transaction) -> None:
        pass  # the write connection stays open for the next transaction

    async def _begin_snapshot(self) -> _Transaction:
        connection = self._writer if self.path == ":memory:" else await _open_reader(self.path)
        if connection is not self._writer:
            await connection.execute("BEGIN")
            await connection.execute("SELECT count(*) FROM schema_migrations")  # the snapshot starts here
        return _Transaction(connection, writable=False)

    async def _end_snapshot(self, tx: _Transaction) -> None:
        if tx.connection is not self._writer:
            await tx.connection.close()

    def _for_reading(self) -> aiosqlite.Connection:
        current = self._held()
        return current.connection if current is not None else self._reader

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._for_reading().execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._for_reading().execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._for_writing().connection.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._for_writing().connection.execute(sql, params)
        row_id = cursor.lastrowid
        await cursor.close()
        return int(row_id or 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._for_writing().connection.executemany(sql, rows)

    async def describe_tables(self) -> list[TableInfo]:
        masters = await self.fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        virtual = [name for name, sql in masters if (sql or "").upper().startswith("CREATE VIRTUAL TABLE")]
        tables: list[TableInfo] = []
        for name, _ in masters:
            # full-text tables are rebuilt by triggers as rows arrive: not copied
            if name.startswith("sqlite_") or name == "schema_migrations":
                continue
            if any(name == v or name.startswith(v + "_") for v in virtual):
                continue
            columns = await self.fetchall(f'PRAGMA table_info("{name}")')
            key = [c["name"] for c in sorted((c for c in columns if c["pk"]), key=lambda c: c["pk"])]
            parents = {row["table"] for row in await self.fetchall(f'PRAGMA foreign_key_list("{name}")')}
            tables.append(
                TableInfo(
                    name,
                    [c["name"] for c in columns],
                    key,
                    {c["name"]: _sqlite_kind(c["type"]) for c in columns},
                    parents - {name},
                )
            )
        return tables

    async def after_copy(self, tables: list[TableInfo]) -> None:
        pass  # a new rowid is always the highest plus one


def _sqlite_kind(declared: str) -> str:
    """SQLite's type affinity rules, reduced to what a copy converts to."""
    declared = declared.upper()
    if "INT" in declared:
        return "int"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "float"
    return "other"


async def _open_reader(path: str) -> aiosqlite.Connection:
    reader = await aiosqlite.connect(f"file:{quote(path)}?mode=ro", uri=True)  # quoted: ? and # in a path
    reader.row_factory = aiosqlite.Row
    await reader.execute("PRAGMA busy_timeout=5000")
    return reader


async def _migrate_sqlite(db: aiosqlite.Connection) -> list[int]:
    """Apply every packaged migration not yet recorded; returns the versions applied."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    async with db.execute("SELECT version FROM schema_migrations") as cursor:
        done = {row[0] for row in await cursor.fetchall()}
    applied: list[int] = []
    for migration in load_migrations("sqlite"):
        if migration.version in done:
            continue
        try:
            # executescript commits first; the whole migration and its record go in one transaction
            if migration.step is None:
                await db.executescript(
                    "BEGIN;\n"
                    + migration.sql
                    + f"\n;INSERT INTO schema_migrations VALUES ({migration.version}, '{migration.name}', "
                    f"'{to_iso(utcnow())}');\nCOMMIT;"
                )
            else:  # the script leaves its transaction open for the step; the record commits with both
                await db.executescript("BEGIN;\n" + migration.sql)
                await migration.step(_SQLiteStep(db))
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (migration.version, migration.name, to_iso(utcnow())),
                )
                await db.commit()
        except Exception as exc:
            await db.rollback()
            raise StoreError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from None
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied


class _SQLiteStep:
    """A migration step's statements, on the migrating connection (bot/store/migration_steps.py)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._db.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)


def _check_folder(path: str) -> None:
    """A missing folder is a configuration mistake: say so instead of sqlite's 'unable to open'."""
    if path == ":memory:":
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise StoreError(
            f"database {path}: folder {parent} does not exist; create it or fix storage.database"
        )
