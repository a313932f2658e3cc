"""Stories (each once, whatever number of feeds carry it), the feeds that carried them and their artists."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.models import ArtistRef, Story
from bot.store.database import IN_CHUNK, Database
from bot.store.rows import quotes_to_json, story_from_row
from bot.timeutil import to_iso, utcnow

# How the store names an artist id it has stored: the artist index's ref, or None for an id it does not know.
ArtistNamer = Callable[[str], ArtistRef | None]


@dataclass
class StoredStory:
    """What `StoryTable.add_many` did with one story."""

    id: int
    is_new: bool


class StoryTable:
    def __init__(self, db: Database, name_artist: Callable[[], ArtistNamer | None]) -> None:
        self._db = db
        self._name_artist = name_artist

    async def known_keys(self, keys: list[str], canonical_urls: list[str]) -> dict[str, int]:
        """Which of these keys or canonical links are stored already: {key or canonical url: story id}."""
        found: dict[str, int] = {}
        for column, values in (("story_key", keys), ("canonical_url", canonical_urls)):
            rows = await self._db.select_in(
                f"SELECT {column}, id FROM stories WHERE {column} IN ({{marks}})", values
            )
            found.update({value: story_id for value, story_id in rows})
        return found

    async def add_many(
        self, stories: list[Story], *, source_id: int | None, backfill: bool = False
    ) -> list[StoredStory]:
        """Store stories in one transaction; a story already stored (same key or canonical link) is kept as it
        is and only linked to this source. Returns, per story, its id and whether it was new.

        A handful of statements for the whole batch, not several per story: every statement is a round trip
        through aiosqlite's thread, and those, not SQLite, were most of the cost."""
        now = utcnow()
        results: list[StoredStory] = []
        async with self._db.transaction():
            existing = await self._find_ids(stories)
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
                await self._db.executemany(
                    "INSERT INTO stories(story_key, canonical_url, url, title, source_id, source_name,"
                    " published_at, first_seen_at, summary, image_url, quotes_json, categories_json,"
                    " content_html, backfill) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                by_key = await self._ids_by_key([story.key for _, story, _ in fresh])
                for position, story, _ in fresh:
                    ids[position] = by_key[story.key]
                    story.id = by_key[story.key]
                await self._write_artists({story.id: story.artists for _, story, _ in fresh if story.id})
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
                await self.link_to_source(source_id, [result.id for result in results], at=now)
        return results

    async def link_to_source(self, source_id: int, story_ids: list[int], *, at: datetime) -> None:
        """Record that this source's feed carries these stored stories (a link already there is kept)."""
        async with self._db.transaction():
            await self._db.executemany(
                "INSERT INTO source_stories(source_id, story_id, first_seen_at) VALUES (?,?,?)"
                " ON CONFLICT (source_id, story_id) DO NOTHING",
                [(source_id, story_id, to_iso(at)) for story_id in story_ids],
            )

    async def _find_ids(self, stories: list[Story]) -> list[int | None]:
        """The stored id of each story (same key or canonical link), or None; one statement per 300 stories."""
        found: list[int | None] = []
        for start in range(0, len(stories), 300):
            chunk = stories[start : start + 300]
            values = ",".join("(CAST(? AS INTEGER),?,?)" for _ in chunk)  # typed: PostgreSQL guesses text
            params: list[Any] = []
            for n, story in enumerate(chunk):
                params += (n, story.key, story.canonical_url or story.key)
            sql = (
                f"WITH wanted(n, story_key, canonical_url) AS (VALUES {values}) SELECT wanted.n, "
                "(SELECT id FROM stories WHERE story_key = wanted.story_key"
                " OR canonical_url = wanted.canonical_url LIMIT 1) FROM wanted ORDER BY wanted.n"
            )
            by_n = {n: story_id for n, story_id in await self._db.fetchall(sql, params)}
            found.extend(by_n.get(n) for n in range(len(chunk)))
        return found

    async def _ids_by_key(self, keys: list[str]) -> dict[str, int]:
        rows = await self._db.select_in(
            "SELECT story_key, id FROM stories WHERE story_key IN ({marks})", keys
        )
        return {key: story_id for key, story_id in rows}

    async def _write_artists(self, artists_by_story: dict[int, list[ArtistRef]]) -> None:
        """Replace the artists of these stories: one DELETE per IN_CHUNK stories and one INSERT for the lot."""
        story_ids = list(artists_by_story)
        for start in range(0, len(story_ids), IN_CHUNK):
            await self._db.execute_in(
                "DELETE FROM story_artists WHERE story_id IN ({marks})", story_ids[start : start + IN_CHUNK]
            )
        rows = [
            (story_id, artist.id, 1.0 / (i + 1), i)
            for story_id, artists in artists_by_story.items()
            for i, artist in enumerate(artists)
        ]
        if rows:
            await self._db.executemany(
                "INSERT INTO story_artists(story_id, artist_id, weight, position) VALUES (?,?,?,?)"
                " ON CONFLICT (story_id, artist_id) DO NOTHING",
                rows,
            )

    async def set_artists(self, artists_by_story: dict[int, list[ArtistRef]]) -> None:
        """Replace the artists of these stories (a retag), in one transaction."""
        async with self._db.transaction():
            await self._write_artists(artists_by_story)

    async def get(self, story_id: int) -> Story | None:
        stories = await self.get_many([story_id])
        return stories[0] if stories else None

    async def get_many(self, story_ids: list[int]) -> list[Story]:
        """Stories by id, in the order asked, with their artists."""
        rows = {
            row["id"]: row
            for row in await self._db.select_in("SELECT * FROM stories WHERE id IN ({marks})", story_ids)
        }
        artists = await self.artists_of(list(rows))
        return [story_from_row(rows[i], artists.get(i, [])) for i in story_ids if i in rows]

    async def artists_of(self, story_ids: list[int]) -> dict[int, list[ArtistRef]]:
        """Artist refs per story, most relevant first, named by the artist index the store was given; an id
        the index does not know (or no index: the bot runs without artist data) is named by its id."""
        name = self._name_artist()
        result: dict[int, list[ArtistRef]] = {}
        rows = await self._db.select_in(
            "SELECT story_id, artist_id FROM story_artists WHERE story_id IN ({marks}) ORDER BY story_id, position",
            story_ids,
        )
        for story_id, artist_id in rows:
            ref = name(artist_id) if name is not None else None
            result.setdefault(story_id, []).append(ref or ArtistRef(artist_id, artist_id, None))
        return result
