"""The PostgreSQL engine: the `Database` API over an asyncpg pool, for several processes on one database.

Tables write `?` placeholders; each statement text is translated to `$1, $2, …` once and cached. A transaction
holds one pooled connection from its start to its commit; reads outside a transaction borrow any pooled
connection, so they never wait for a write. Migrations run under an advisory lock, so processes started together
apply each one once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bot.config import mask_url
from bot.store.database import Database, Row, StoreError, TableInfo, _Transaction, load_migrations
from bot.timeutil import to_iso, utcnow

log = logging.getLogger(__name__)

POOL_MIN, POOL_MAX = 2, 10  # one connection for the transaction, the rest for readers
CONNECT_TIMEOUT = 10.0  # seconds: a database that does not answer is a configuration error, not a hang
CLOSE_TIMEOUT = 10.0
MIGRATION_LOCK = 0x6B706F706E657773  # "kpopnews": the advisory lock processes migrate under

# `?` outside string literals, quoted names and comments; the others are matched only to be skipped
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?", re.S)
_IN_MARKS = re.compile(r"\b(NOT\s+)?IN\s*\(\s*\{marks\}\s*\)", re.I)
_COUNT_IN_STATUS = re.compile(r"(\d+)$")


@lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, …` (cached: the tables run the same texts again and again)."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


@lru_cache(maxsize=1024)
def _as_any(sql: str) -> str | None:
    """`x IN ({marks})` as `x = ANY(?)` (one array parameter, one statement text whatever the count), or None
    when `{marks}` is used otherwise."""
    rewritten = _IN_MARKS.sub(lambda m: "<> ALL(?)" if m.group(1) else "= ANY(?)", sql)
    return None if "{marks}" in rewritten else rewritten


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        super().__init__(mask_url(url))
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:
        shown = mask_url(url)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT,
                # planned for each call's values: a plan cached while a table was small (a new database filling
                # up) would scan it in full long after it has grown; these statements plan in a fraction of a ms
                server_settings={
                    # which process a connection is (pg_stat_activity), e.g. who holds a lock: "kpopnews 4242"
                    "application_name": f"kpopnews {os.getpid()}",
                    "plan_cache_mode": "force_custom_plan",
                },
                reset=_keep_session,
            )
        except asyncpg.InvalidCatalogNameError:
            raise StoreError(
                f"database {shown} does not exist: create it (createdb) or fix storage.url"
            ) from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StoreError(f"database {shown} cannot be opened: {_scrub(exc, url)}") from None
        db = cls(pool, url)
        try:
            await db.migrate()
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:  # a connection still borrowed: do not hang the shutdown on it
            self._pool.terminate()

    async def migrate(self) -> list[int]:
        async with self._lock, self._pool.acquire() as connection:
            try:
                await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
                try:
                    return await _migrate(connection)
                finally:
                    await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
            except StoreError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreError(f"database {self.path} cannot be migrated: {exc}") from None

    # --- transactions -------------------------------------------------------------------------------------

    async def _begin(self) -> _Transaction:
        connection = await self._pool.acquire()
        try:
            await connection.execute("BEGIN")
        except BaseException:
            await self._pool.release(connection)
            raise
        return _Transaction(connection)

    async def _commit(self, tx: _Transaction) -> None:
        await tx.connection.execute("COMMIT")

    async def _rollback(self, tx: _Transaction) -> None:
        try:
            await tx.connection.execute("ROLLBACK")
        except Exception:  # e.g. cancelled mid-statement: the connection's state is unknown, drop it
            log.warning("rollback failed; closing the connection", exc_info=True)
            tx.connection.terminate()

    async def _end(self, tx: _Transaction) -> None:
        await self._pool.release(tx.connection)

    async def _begin_snapshot(self) -> _Transaction:
        connection = await self._pool.acquire()
        try:
            await connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        except BaseException:
            await self._pool.release(connection)
            raise
        return _Transaction(connection, writable=False)

    async def _end_snapshot(self, tx: _Transaction) -> None:
        try:
            await tx.connection.execute("COMMIT")
        finally:
            await self._pool.release(tx.connection)

    # --- statements ---------------------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        current = self._held()
        if current is None:
            return await self._pool.fetch(numbered(sql), *params)
        async with current.busy:
            return await current.connection.fetch(numbered(sql), *params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        current = self._held()
        if current is None:
            return await self._pool.fetchrow(numbered(sql), *params)
        async with current.busy:
            return await current.connection.fetchrow(numbered(sql), *params)

    async def select_in(self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()) -> list[Row]:
        as_any = _as_any(sql)
        if as_any is None:
            return await super().select_in(sql, values, params)
        if not values:
            return []
        return await self.fetchall(as_any, [list(values)] * sql.count("{marks}") + [*params])

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        tx = self._for_writing()
        async with tx.busy:
            status = await tx.connection.execute(numbered(sql), *params)
        found = _COUNT_IN_STATUS.search(status or "")  # "UPDATE 3", "INSERT 0 1", "DELETE 0"
        return int(found.group(1)) if found else 0

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        tx = self._for_writing()
        if " RETURNING " not in sql.upper():
            sql += " RETURNING id"
        async with tx.busy:
            row_id = await tx.connection.fetchval(numbered(sql), *params)
        return int(row_id or 0)  # 0: nothing inserted (ON CONFLICT DO NOTHING)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        tx = self._for_writing()
        rows = list(rows)
        if not rows:
            return
        async with tx.busy:
            await tx.connection.executemany(numbered(sql), rows)

    async def execute_in(self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()) -> int:
        as_any = _as_any(sql)
        if as_any is None:
            return await super().execute_in(sql, values, params)
        if not values:
            return 0
        return await self.execute(as_any, [*params, list(values)])

    async def write_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self._held() is not None:
            return await super().write_returning(sql, params)
        return await self._pool.fetch(numbered(sql), *params)  # autocommit: one statement, one transaction

    @asynccontextmanager
    async def session_lock(self, key: int) -> AsyncIterator[bool]:
        # on a connection of its own: the lock is the session's, and it ends with the session if the process dies
        async with self._pool.acquire() as connection:
            held = bool(await connection.fetchval("SELECT pg_try_advisory_lock($1)", key))
            try:
                yield held
            finally:
                if held:
                    await connection.execute("SELECT pg_advisory_unlock($1)", key)

    # --- for copy-db --------------------------------------------------------------------------------------

    async def describe_tables(self) -> list[TableInfo]:
        tables: dict[str, TableInfo] = {}
        for name, column, data_type, generated in await self.fetchall(
            "SELECT c.table_name, c.column_name, c.data_type, c.is_generated FROM information_schema.columns c"
            " JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
            " AND c.table_name <> 'schema_migrations' ORDER BY c.table_name, c.ordinal_position"
        ):
            table = tables.setdefault(name, TableInfo(name, [], []))
            if generated == "NEVER":  # a generated column (the search vector) is computed, never written
                table.columns.append(column)
                table.kinds[column] = _pg_kind(data_type)
        for name, kind, columns, parent in await self.fetchall(
            "SELECT c.conrelid::regclass::text, c.contype::text,"
            " ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)"
            "       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n),"
            " c.confrelid::regclass::text"
            " FROM pg_constraint c WHERE c.connamespace = current_schema()::regnamespace AND c.contype IN ('p', 'f')"
        ):
            if name not in tables:
                continue
            if kind == "p":
                tables[name].key = list(columns)
            elif parent != name:
                tables[name].parents.add(parent)
        return list(tables.values())

    async def after_copy(self, tables: list[TableInfo]) -> None:
        """Identity columns go on numbering after the highest id copied; the planner learns the new sizes."""
        for table in tables:
            for column in table.columns:
                sequence = await self.fetchval("SELECT pg_get_serial_sequence(?, ?)", (table.name, column))
                if sequence:
                    await self.fetchval(
                        f'SELECT setval(?::regclass, COALESCE(MAX("{column}"), 1), MAX("{column}") IS NOT NULL)'
                        f' FROM "{table.name}"',
                        (sequence,),
                    )
            await self.execute(f'ANALYZE "{table.name}"')


async def _keep_session(connection: asyncpg.Connection) -> None:
    """A connection going back to the pool: asyncpg has already rolled back any open transaction; skip its
    session reset query (RESET ALL, UNLISTEN *, advisory unlocks), a round trip on every read, since the store
    leaves no session state behind (the migration lock is released where it is taken)."""


def _pg_kind(data_type: str) -> str:
    if data_type in ("bigint", "integer", "smallint"):
        return "int"
    if data_type in ("double precision", "real", "numeric"):
        return "float"
    if data_type in ("text", "character varying", "character"):
        return "text"
    return "other"


def _scrub(exc: BaseException, url: str) -> str:
    """An error's text without the URL's password, whatever the driver put in it."""
    text = str(exc) or type(exc).__name__
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


class _PostgresStep:
    """A migration step's statements, on the migrating connection (bot/store/migration_steps.py)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self._connection.fetch(numbered(sql), *params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._connection.execute(numbered(sql), *params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._connection.executemany(numbered(sql), rows)


async def _migrate(connection: asyncpg.Connection) -> list[int]:
    """Apply every packaged migration not yet recorded, each with its record in one transaction."""
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in await connection.fetch("SELECT version FROM schema_migrations")}
    applied: list[int] = []
    for migration in load_migrations("postgresql"):
        if migration.version in done:
            continue
        try:
            async with connection.transaction():
                await connection.execute(migration.sql)  # no parameters: several statements in one go
                if migration.step is not None:
                    await migration.step(_PostgresStep(connection))
                await connection.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    to_iso(utcnow()),
                )
        except Exception as exc:  # SQL, or a Python step's error: rolled back either way
            raise StoreError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from None
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied
