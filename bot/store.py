"""The SQLite store: one file, WAL, versioned migrations; sources and stories (each story once)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.config import SourceConfig
from bot.models import ArtistRef, Quote, Source, Story
from bot.timeutil import from_iso, to_iso, utcnow

log = logging.getLogger(__name__)

IN_CHUNK = 500  # values in one IN (...) list: well under SQLite's cap on bound parameters
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


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
    for entry in resources.files("bot.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a version number: {versions}")
    return found


@dataclass
class StoredStory:
    """What `Store.add_story` did with one story."""

    id: int
    is_new: bool


class Store:
    """The database. `db` is the one aiosqlite connection; stage modules may run their own SQL on it."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self.db = db
        self.path = path
        # One connection is one transaction at a time: every writer holds this lock from its first write to its
        # commit, or one task's commit (or rollback) would take another task's half-done writes with it.
        self.write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        path = str(path)
        _check_folder(path)
        try:
            db = await aiosqlite.connect(path)
        except Exception as exc:  # sqlite3.OperationalError and friends: report, never a traceback
            raise StoreError(f"database {path} cannot be opened: {exc}") from None
        db.row_factory = aiosqlite.Row
        store = cls(db, path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(
                "PRAGMA synchronous=NORMAL"
            )  # WAL + NORMAL: durable at checkpoints, no fsync per commit
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await store.migrate()
        except StoreError:
            await db.close()
            raise
        except Exception as exc:
            await db.close()
            raise StoreError(f"database {path} cannot be used: {exc}") from None
        return store

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> list[int]:
        """Apply every packaged migration not yet recorded; returns the versions applied."""
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with self.db.execute("SELECT version FROM schema_migrations") as cursor:
            done = {row[0] for row in await cursor.fetchall()}
        applied: list[int] = []
        for migration in load_migrations():
            if migration.version in done:
                continue
            try:
                # executescript commits first; the whole migration and its record go in one transaction
                await self.db.executescript(
                    "BEGIN;\n"
                    + migration.sql
                    + f"\n;INSERT INTO schema_migrations VALUES ({migration.version}, '{migration.name}', "
                    f"'{to_iso(utcnow())}');\nCOMMIT;"
                )
            except Exception as exc:
                await self.db.rollback()
                raise StoreError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from None
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied.append(migration.version)
        return applied

    async def select_in(self, sql: str, values: Sequence[Any]) -> list[Any]:
        """The rows of `sql` for every value, asked IN_CHUNK values at a time (SQLite caps bound parameters).
        `sql` writes `{marks}` where the IN list goes; where it appears twice, each gets the chunk."""
        rows: list[Any] = []
        uses = sql.count("{marks}")
        for start in range(0, len(values), IN_CHUNK):
            chunk = list(values[start : start + IN_CHUNK])
            query = sql.replace("{marks}", ",".join("?" * len(chunk)))
            async with self.db.execute(query, chunk * uses) as cursor:
                rows.extend(await cursor.fetchall())
        return rows

    # --- meta -------------------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        await self.db.commit()

    # --- sources ----------------------------------------------------------------------------------------

    async def sync_config_sources(
        self, configured: tuple[SourceConfig, ...] | list[SourceConfig]
    ) -> list[Source]:
        """Make the operator's sources match the configuration: add new, rename, re-enable, retire removed."""
        now = to_iso(utcnow())
        urls = [s.url for s in configured]
        for source in configured:
            await self.db.execute(
                "INSERT INTO sources(url, name, color, owner_guild_id, created_at) VALUES (?, ?, ?, NULL, ?)"
                " ON CONFLICT(url) DO UPDATE SET name = excluded.name, color = excluded.color,"
                " owner_guild_id = NULL,"
                " disabled_reason = CASE WHEN sources.disabled_reason = 'removed from the configuration'"
                " THEN NULL ELSE sources.disabled_reason END",
                (source.url, source.name, source.color, now),
            )
        placeholders = ",".join("?" * len(urls)) or "''"
        await self.db.execute(
            "UPDATE sources SET disabled_reason = 'removed from the configuration'"
            f" WHERE owner_guild_id IS NULL AND disabled_reason IS NULL AND url NOT IN ({placeholders})",
            urls,
        )
        await self.db.commit()
        return [s for s in await self.list_sources() if s.url in set(urls)]

    async def add_source(self, url: str, name: str, *, owner_guild_id: int | None) -> Source:
        """Add a feed (or return the one already known by that URL)."""
        await self.db.execute(
            "INSERT INTO sources(url, name, owner_guild_id, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(url) DO NOTHING",
            (url, name, owner_guild_id, to_iso(utcnow())),
        )
        await self.db.commit()
        source = await self.get_source_by_url(url)
        assert source is not None
        return source

    async def list_sources(self, *, enabled_only: bool = False) -> list[Source]:
        sql = "SELECT * FROM sources"
        if enabled_only:
            sql += " WHERE disabled_reason IS NULL"
        async with self.db.execute(sql + " ORDER BY id") as cursor:
            return [source_from_row(row) for row in await cursor.fetchall()]

    async def get_source(self, source_id: int) -> Source | None:
        async with self.db.execute("SELECT * FROM sources WHERE id = ?", (source_id,)) as cursor:
            row = await cursor.fetchone()
        return source_from_row(row) if row else None

    async def get_source_by_url(self, url: str) -> Source | None:
        async with self.db.execute("SELECT * FROM sources WHERE url = ?", (url,)) as cursor:
            row = await cursor.fetchone()
        return source_from_row(row) if row else None

    async def save_source_state(self, source: Source) -> None:
        """Persist a source's fetch state and health after a poll."""
        await self.db.execute(
            "UPDATE sources SET etag = ?, last_modified = ?, body_hash = ?, last_status = ?, last_error = ?,"
            " last_fetched_at = ?, last_success_at = ?, consecutive_failures = ?, next_poll_at = ?,"
            " disabled_reason = ? WHERE id = ?",
            (
                source.etag,
                source.last_modified,
                source.body_hash,
                source.last_status,
                source.last_error,
                to_iso(source.last_fetched_at),
                to_iso(source.last_success_at),
                source.consecutive_failures,
                to_iso(source.next_poll_at),
                source.disabled_reason,
                source.id,
            ),
        )
        await self.db.commit()

    # --- stories ----------------------------------------------------------------------------------------

    async def known_story_keys(self, keys: list[str], canonical_urls: list[str]) -> dict[str, int]:
        """Which of these keys or canonical links are stored already: {key or canonical url: story id}."""
        found: dict[str, int] = {}
        for column, values in (("story_key", keys), ("canonical_url", canonical_urls)):
            rows = await self.select_in(
                f"SELECT {column}, id FROM stories WHERE {column} IN ({{marks}})", values
            )
            found.update({value: story_id for value, story_id in rows})
        return found

    async def add_stories(
        self, stories: list[Story], *, source_id: int | None, backfill: bool = False
    ) -> list[StoredStory]:
        """Store stories in one transaction; a story already stored (same key or canonical link) is kept as it
        is and only linked to this source. Returns, per story, its id and whether it was new.

        A handful of statements for the whole batch, not several per story: every statement is a round trip
        through aiosqlite's thread, and those, not SQLite, were most of the cost."""
        now = utcnow()
        results: list[StoredStory] = []
        try:
            existing = await self._find_story_ids(stories)
            # a story may also repeat one stored earlier in this batch (same key or canonical link)
            batch_keys: dict[str, int] = {}
            batch_canonicals: dict[str, int] = {}
            fresh: list[tuple[int, Story, str]] = []  # (position, story, stored canonical_url)
            plan: list[tuple[str, Any]] = []  # per story: ("old", id) or ("batch", position of the first)
            for position, (story, found) in enumerate(zip(stories, existing, strict=True)):
                if found is not None:
                    plan.append(("old", found))
                    continue
                lookup = story.canonical_url or story.key
                first = batch_keys.get(story.key)
                if first is None:
                    first = batch_canonicals.get(lookup)
                if first is not None:
                    plan.append(("batch", first))
                    continue
                stored_canonical = story.canonical_url or story.url
                batch_keys[story.key] = position
                batch_canonicals.setdefault(stored_canonical, position)
                fresh.append((position, story, stored_canonical))
                plan.append(("new", position))
            ids: dict[int, int] = {}
            if fresh:
                rows = []
                for _, story, stored_canonical in fresh:
                    story.first_seen = story.first_seen or now
                    story.source_id = source_id
                    rows.append(
                        (
                            story.key,
                            stored_canonical,
                            story.url,
                            story.title,
                            source_id,
                            story.source,
                            to_iso(story.published),
                            to_iso(story.first_seen),
                            story.summary,
                            story.image,
                            quotes_to_json(story.quotes),
                            json.dumps(story.categories, ensure_ascii=False),
                            story.content_html,
                            1 if backfill else 0,
                        )
                    )
                await self.db.executemany(
                    "INSERT INTO stories(story_key, canonical_url, url, title, source_id, source_name,"
                    " published_at, first_seen_at, summary, image_url, quotes_json, categories_json,"
                    " content_html, backfill) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                by_key = await self._story_ids_by_key([story.key for _, story, _ in fresh])
                for position, story, _ in fresh:
                    ids[position] = by_key[story.key]
                    story.id = by_key[story.key]
                await self._write_artists({story.id: story.artists for _, story, _ in fresh})
            for story, (what, value) in zip(stories, plan, strict=True):
                if what == "old":
                    story.id = value
                    results.append(StoredStory(value, False))
                elif what == "batch":
                    story.id = ids[value]
                    results.append(StoredStory(ids[value], False))
                else:
                    results.append(StoredStory(ids[value], True))
            if source_id is not None and results:
                linked = to_iso(now)
                await self.db.executemany(
                    "INSERT OR IGNORE INTO source_stories(source_id, story_id, first_seen_at) VALUES (?,?,?)",
                    [(source_id, result.id, linked) for result in results],
                )
            await self.db.commit()
        except BaseException:
            await self.db.rollback()
            raise
        return results

    async def _find_story_ids(self, stories: list[Story]) -> list[int | None]:
        """The stored id of each story (same key or canonical link), or None; one statement per 300 stories."""
        found: list[int | None] = []
        for start in range(0, len(stories), 300):
            chunk = stories[start : start + 300]
            values = ",".join("(?,?,?)" for _ in chunk)
            params: list[Any] = []
            for n, story in enumerate(chunk):
                params += (n, story.key, story.canonical_url or story.key)
            sql = (
                f"WITH wanted(n, story_key, canonical_url) AS (VALUES {values}) SELECT wanted.n, "
                "(SELECT id FROM stories WHERE story_key = wanted.story_key"
                " OR canonical_url = wanted.canonical_url LIMIT 1) FROM wanted ORDER BY wanted.n"
            )
            async with self.db.execute(sql, params) as cursor:
                by_n = {n: story_id for n, story_id in await cursor.fetchall()}
            found.extend(by_n.get(n) for n in range(len(chunk)))
        return found

    async def _story_ids_by_key(self, keys: list[str]) -> dict[str, int]:
        rows = await self.select_in("SELECT story_key, id FROM stories WHERE story_key IN ({marks})", keys)
        return {key: story_id for key, story_id in rows}

    async def _write_artists(self, artists_by_story: dict[int, list[ArtistRef]]) -> None:
        """Replace the artists of these stories: one DELETE per IN_CHUNK stories and one INSERT for the lot."""
        story_ids = list(artists_by_story)
        for start in range(0, len(story_ids), IN_CHUNK):
            chunk = story_ids[start : start + IN_CHUNK]
            await self.db.execute(
                f"DELETE FROM story_artists WHERE story_id IN ({','.join('?' * len(chunk))})", chunk
            )
        rows = [
            (story_id, artist.id, 1.0 / (i + 1), i)
            for story_id, artists in artists_by_story.items()
            for i, artist in enumerate(artists)
        ]
        if rows:
            await self.db.executemany(
                "INSERT OR IGNORE INTO story_artists(story_id, artist_id, weight, position) VALUES (?,?,?,?)",
                rows,
            )

    async def set_story_artists(
        self, story_id: int, artists: list[ArtistRef], *, commit: bool = True
    ) -> None:
        await self._write_artists({story_id: artists})
        if commit:
            await self.db.commit()

    async def get_story(self, story_id: int) -> Story | None:
        stories = await self.get_stories([story_id])
        return stories[0] if stories else None

    async def get_stories(self, story_ids: list[int]) -> list[Story]:
        """Stories by id, in the order asked, with their artists."""
        rows = {
            row["id"]: row
            for row in await self.select_in("SELECT * FROM stories WHERE id IN ({marks})", story_ids)
        }
        artists = await self.artists_of(list(rows))
        return [story_from_row(rows[i], artists.get(i, [])) for i in story_ids if i in rows]

    async def artists_of(self, story_ids: list[int]) -> dict[int, list[ArtistRef]]:
        """Artist refs per story, most relevant first. Names come from the artist index when it is loaded."""
        from bot.artists import (
            ArtistIndex,  # the index is data, loaded once; imported late to keep start-up lean
        )

        index = ArtistIndex.load()
        result: dict[int, list[ArtistRef]] = {}
        rows = await self.select_in(
            "SELECT story_id, artist_id FROM story_artists WHERE story_id IN ({marks}) ORDER BY story_id, position",
            story_ids,
        )
        for story_id, artist_id in rows:
            artist = index.get(artist_id)
            ref = artist.ref() if artist else ArtistRef(artist_id, artist_id, None)
            result.setdefault(story_id, []).append(ref)
        return result


def _check_folder(path: str) -> None:
    """A missing folder is a configuration mistake: say so instead of sqlite's 'unable to open'."""
    if path == ":memory:":
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise StoreError(
            f"database {path}: folder {parent} does not exist; create it or fix storage.database"
        )


def quotes_to_json(quotes: list[Quote]) -> str:
    return json.dumps([q.to_json() | {"score": q.score} for q in quotes], ensure_ascii=False)


def story_from_row(row: Any, artists: list[ArtistRef] | None = None) -> Story:
    return Story(
        key=row["story_key"],
        title=row["title"],
        url=row["url"],
        source=row["source_name"],
        published=from_iso(row["published_at"]),
        summary=row["summary"],
        image=row["image_url"],
        quotes=[Quote.from_json(q) for q in json.loads(row["quotes_json"] or "[]")],
        artists=list(artists or []),
        categories=json.loads(row["categories_json"] or "[]"),
        content_html=row["content_html"],
        canonical_url=row["canonical_url"],
        id=row["id"],
        source_id=row["source_id"],
        first_seen=from_iso(row["first_seen_at"]),
        cluster_id=row["cluster_id"],
    )


def source_from_row(row: Any) -> Source:
    return Source(
        id=row["id"],
        url=row["url"],
        name=row["name"],
        owner_guild_id=row["owner_guild_id"],
        color=row["color"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        body_hash=row["body_hash"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        last_fetched_at=from_iso(row["last_fetched_at"]),
        last_success_at=from_iso(row["last_success_at"]),
        consecutive_failures=row["consecutive_failures"],
        next_poll_at=from_iso(row["next_poll_at"]),
        disabled_reason=row["disabled_reason"],
    )
