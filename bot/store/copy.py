"""`kpopnews copy-db URL`: everything stored, from the configured database into another one (SQLite to
PostgreSQL, the way operators move; PostgreSQL to SQLite works too), ids kept.

What makes it safe to re-run, and why nothing is posted again after a move:
- Both databases are migrated when opened; then their recorded migrations must be the same, or it stops.
- The source is read from one snapshot (a consistent state even while a bot writes to it); the target is written
  in one transaction: after an error it is as it was.
- Every table is copied (discovered, not listed here), parents before children, in batches, with its ids.
  Rows are upserted on the primary key: ON CONFLICT DO UPDATE of every other column, so polling state, delivery
  status, subscription health and clusters follow the source on a second run (DO NOTHING where the key is the
  whole row). Rows the target has and the source has not (an unsubscribe between two runs) are deleted first,
  children before parents. The target ends as a copy of the source: delivered stories stay delivered, each
  subscription keeps its starting point, each feed its ETag and last hash.
- On PostgreSQL, identity sequences then go on after the highest id copied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.config import Config, ConfigError, check_database_url, is_postgres_url, mask_url
from bot.store.database import Database, Row, StoreError, TableInfo, open_database

BATCH = 1000  # rows per statement batch: a round trip carries many rows, memory stays small
KEYS_PER_LOOKUP = 100  # composite keys asked at once (an OR of equalities)


class CopyError(StoreError):
    """A row could not be written into the target (exit status 1: the target is unchanged)."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    copied: int  # rows written (new or updated)
    removed: int  # target rows the source does not have


async def copy_database(
    source: Database,
    target: Database,
    *,
    batch: int = BATCH,
    on_table: Callable[[TableCopy], None] | None = None,
) -> list[TableCopy]:
    """Make `target` hold what `source` holds; returns what was done per table, parents first."""
    source_versions, target_versions = await source.applied_migrations(), await target.applied_migrations()
    if source_versions != target_versions:
        raise StoreError(
            f"the schemas differ (source migrations up to {_last(source_versions)}, target up to"
            f" {_last(target_versions)}): run the same kpopnews version on both, so both are migrated alike"
        )
    async with source.snapshot():
        tables = _plan(await source.describe_tables(), await target.describe_tables())
        async with target.transaction():
            removed = {table.name: await _remove_missing(source, target, table) for table in reversed(tables)}
            done: list[TableCopy] = []
            for table in tables:
                result = TableCopy(
                    table.name, await _copy_rows(source, target, table, batch), removed[table.name]
                )
                done.append(result)
                if on_table is not None:
                    on_table(result)
            await target.after_copy(tables)
    return done


def _last(versions: list[int]) -> str:
    return f"{versions[-1]:04d}" if versions else "none"


def _plan(source_tables: list[TableInfo], target_tables: list[TableInfo]) -> list[TableInfo]:
    """The tables to copy as the target knows them (its column kinds), parents before children."""
    by_name = {t.name: t for t in target_tables}
    names = {t.name for t in source_tables}
    if names != set(by_name):
        only = sorted(names ^ set(by_name))
        raise StoreError(f"the two databases do not have the same tables ({', '.join(only)}): cannot copy")
    for table in source_tables:
        other = by_name[table.name]
        if set(table.columns) != set(other.columns) or table.key != other.key:
            raise StoreError(f"table {table.name} differs between the two databases: cannot copy")
        if not table.key:
            raise StoreError(f"table {table.name} has no primary key: it cannot be copied safely")
        other.columns = table.columns  # the source's order: rows are read and written in it
    ordered: list[TableInfo] = []
    placed: set[str] = set()
    waiting = sorted(by_name.values(), key=lambda t: t.name)
    while waiting:
        ready = [t for t in waiting if all(p in placed or p not in names for p in t.parents)]
        if not ready:
            raise StoreError(f"foreign keys form a cycle among {', '.join(t.name for t in waiting)}")
        ordered += ready
        placed |= {t.name for t in ready}
        waiting = [t for t in waiting if t.name not in placed]
    return ordered


def _name(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _after(key: list[str]) -> str:
    """WHERE clause of the next page in key order: a row value comparison."""
    if len(key) == 1:
        return f"{_name(key[0])} > ?"
    return f"({', '.join(map(_name, key))}) > ({', '.join('?' * len(key))})"


async def _pages(db: Database, table: TableInfo, columns: list[str], batch: int) -> AsyncIterator[list[Row]]:
    """The rows of `columns`, in key order, `batch` at a time (keyset paging: no OFFSET scans)."""
    select = f"SELECT {', '.join(map(_name, columns))} FROM {_name(table.name)}"
    order = f" ORDER BY {', '.join(map(_name, table.key))} LIMIT ?"
    key_at = [columns.index(k) for k in table.key]
    last: list[Any] | None = None
    while True:
        if last is None:
            rows = await db.fetchall(select + order, (batch,))
        else:
            rows = await db.fetchall(select + f" WHERE {_after(table.key)}" + order, (*last, batch))
        if not rows:
            return
        yield rows
        last = [rows[-1][i] for i in key_at]


def _converters(table: TableInfo, target: Database) -> list[Callable[[Any], Any]] | None:
    """Per column, what turns a source value into one the target takes: asyncpg wants exact types, where
    SQLite would store a number in a TEXT column; None when the target takes values as they are."""
    if target.dialect == "sqlite":
        return None
    return [_as(table.kinds.get(column, "other")) for column in table.columns]


def _as(kind: str) -> Callable[[Any], Any]:
    want: type | None = {"int": int, "float": float, "text": str}.get(kind)

    def convert(value: Any) -> Any:
        if want is None or value is None or type(value) is want:
            return value
        return want(value)

    return convert


async def _copy_rows(source: Database, target: Database, table: TableInfo, batch: int) -> int:
    columns = table.columns
    values = ", ".join("?" * len(columns))
    others = [c for c in columns if c not in table.key]
    if others:
        differs = " IS DISTINCT FROM " if target.dialect == "postgresql" else " IS NOT "
        # an unchanged row is left alone: no new row version, no search index work
        action = (
            "DO UPDATE SET "
            + ", ".join(f"{_name(c)} = excluded.{_name(c)}" for c in others)
            + " WHERE "
            + " OR ".join(f"{_name(table.name)}.{_name(c)}{differs}excluded.{_name(c)}" for c in others)
        )
    else:
        action = "DO NOTHING"
    sql = (
        f"INSERT INTO {_name(table.name)} ({', '.join(map(_name, columns))}) VALUES ({values})"
        f" ON CONFLICT ({', '.join(map(_name, table.key))}) {action}"
    )
    convert = _converters(table, target)
    copied = 0
    async for rows in _pages(source, table, columns, batch):
        try:
            if convert is None:
                prepared: Sequence[Sequence[Any]] = [tuple(row) for row in rows]
            else:
                prepared = [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in rows]
            await target.executemany(sql, prepared)
        except (
            Exception
        ) as exc:  # a constraint or a value the target refuses: name the table, keep the target
            raise CopyError(
                f"table {table.name}: a row could not be copied: {type(exc).__name__}: {exc}"
            ) from None
        copied += len(rows)
    return copied


async def _remove_missing(source: Database, target: Database, table: TableInfo) -> int:
    """Delete the target's rows whose key the source does not have; returns how many."""
    removed = 0
    async for rows in _pages(target, table, table.key, BATCH):
        keys = [tuple(row) for row in rows]
        present = await _present(source, table, keys)
        gone = [k for k in keys if k not in present]
        if not gone:
            continue
        if len(table.key) == 1:
            removed += await target.execute_in(
                f"DELETE FROM {_name(table.name)} WHERE {_name(table.key[0])} IN ({{marks}})",
                [k[0] for k in gone],
            )
        else:
            for start in range(0, len(gone), KEYS_PER_LOOKUP):
                chunk = gone[start : start + KEYS_PER_LOOKUP]
                where, params = _any_key(table.key, chunk)
                removed += await target.execute(f"DELETE FROM {_name(table.name)} WHERE {where}", params)
    return removed


async def _present(db: Database, table: TableInfo, keys: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """Which of these keys `db` has."""
    columns = ", ".join(map(_name, table.key))
    if len(table.key) == 1:
        rows = await db.select_in(
            f"SELECT {columns} FROM {_name(table.name)} WHERE {columns} IN ({{marks}})", [k[0] for k in keys]
        )
        return {tuple(row) for row in rows}
    found: set[tuple[Any, ...]] = set()
    for start in range(0, len(keys), KEYS_PER_LOOKUP):
        where, params = _any_key(table.key, keys[start : start + KEYS_PER_LOOKUP])
        found |= {
            tuple(row)
            for row in await db.fetchall(f"SELECT {columns} FROM {_name(table.name)} WHERE {where}", params)
        }
    return found


def _any_key(key: list[str], keys: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """`(a = ? AND b = ?) OR …` for composite keys: understood alike by both engines, typed by the columns."""
    one = "(" + " AND ".join(f"{_name(c)} = ?" for c in key) + ")"
    return " OR ".join([one] * len(keys)), [v for k in keys for v in k]


def _same_file(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


# --- the command ------------------------------------------------------------------------------------------


async def run_copy_db(config: Config, url: str, *, out: TextIO, err: TextIO) -> int:
    """`kpopnews copy-db URL`: 0 copied; 1 a row could not be written (target unchanged); a bad URL, an
    unreachable database or differing schemas raise ConfigError/StoreError (exit 2)."""
    url = url.strip()
    if is_postgres_url(url):
        check_database_url(url, "copy-db URL")
        itself = url == config.storage.url
    elif "://" in url or not url:
        raise ConfigError(
            f"copy-db URL must be postgresql://user@host:5432/db or a SQLite file path, got {mask_url(url)!r}"
        )
    else:
        itself = not config.storage.url and _same_file(url, config.storage.database)
    if itself:
        raise ConfigError(f"copy-db: {mask_url(url)} is the configured database itself")
    source = await open_database(config.storage.target)
    try:
        target = await open_database(url)
        try:
            results = await copy_database(
                source,
                target,
                on_table=lambda r: print(f"{r.table}: {r.copied} rows copied, {r.removed} removed", file=out),
            )
        finally:
            await target.close()
    except CopyError as exc:
        print(f"kpopnews: copy-db: {exc} (nothing was changed in {mask_url(url)})", file=err)
        return 1
    finally:
        await source.close()
    total = sum(r.copied for r in results)
    print(f"copied {total} rows in {len(results)} tables from {source.path} into {target.path}", file=out)
    return 0
