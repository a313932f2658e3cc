"""Stories (each once, whatever number of feeds carry it), the feeds that carried them and their artists."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.models import ArtistRef, Story
from bot.store.database import IN_CHUNK, Database, marks
from bot.store.rows import pack_text, quotes_to_json, story_from_row, unpack_text
from bot.store.text_search import fts5_match, postgresql_match, postgresql_query, text_matches
from bot.timeutil import to_iso, utcnow

# How the store names an artist id it has stored: the artist index's ref, or None for an id it does not know.
ArtistNamer = Callable[[str], ArtistRef | None]

ARTISTS_PER_STATEMENT = 200  # artist search: SQLite caps a compound SELECT at 500 terms
TEXT_WINDOW = 200  # text search's first page: the newest matches by id, then sorted by time
# text search past the first page, for words in more than `count_up_to` stories: the time index is walked in
# batches of at least WALK_FIRST_BATCH rows, doubling up to WALK_MAX_BATCH, at most WALK_BUDGET rows in all
WALK_FIRST_BATCH, WALK_MAX_BATCH, WALK_BUDGET = 256, 16_384, 65_536
MAX_ID_RANGES = 64  # id ranges of a batch, checked in one statement (past that, the last one widens)
SORT_TIME = "COALESCE(published_at, first_seen_at)"  # a story's time, as the stories_sort_time index has it

# A story's place in "newest first", the cursor of keyset paging: its time as stored (published, else first
# seen: ISO 8601 UTC, whose text order is time order) and its id, which breaks ties.
StoryKey = tuple[str, int]


@dataclass
class StoryText:
    """What tagging reads of a stored story (`kpopnews retag`)."""

    id: int
    title: str
    summary: str
    text: str  # the article's clean text; "" once `[storage] keep_text_days` dropped it (or it had none)
    categories: list[str]


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

    async def recent_keys_of_source(self, source_id: int, limit: int) -> set[str]:
        """The keys and canonical links of the `limit` stories this source's feed carried last: what its next
        poll can skip without asking further."""
        rows = await self._db.fetchall(
            "SELECT s.story_key, s.canonical_url FROM source_stories ss JOIN stories s ON s.id = ss.story_id"
            " WHERE ss.source_id = ? ORDER BY ss.story_id DESC LIMIT ?",
            (source_id, limit),
        )
        return {value for row in rows for value in row if value}

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
                            1 if backfill else 0,
                        )
                    )
                await self._db.executemany(
                    "INSERT INTO stories(story_key, canonical_url, url, title, source_id, source_name,"
                    " published_at, first_seen_at, summary, image_url, quotes_json, categories_json,"
                    " backfill) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                by_key = await self._ids_by_key([story.key for _, story, _ in fresh])
                texts = []
                for position, story, _ in fresh:
                    ids[position] = by_key[story.key]
                    story.id = by_key[story.key]
                    packed = pack_text(story.text)
                    if packed is not None:
                        texts.append((story.id, int((story.first_seen or now).timestamp()), packed))
                if texts:
                    await self._db.executemany(
                        "INSERT INTO story_texts(story_id, seen_at, text_zlib) VALUES (?,?,?)", texts
                    )
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

    # --- article pages fetched later ---------------------------------------------------------------------

    async def await_pages(self, until_by_id: dict[int, datetime]) -> None:
        """These stories were stored from their feed alone: their article page is still worth fetching until
        the given time (when they become too old to post). Inside the caller's transaction, if any."""
        if not until_by_id:
            return
        async with self._db.transaction():
            await self._db.executemany(
                "UPDATE stories SET page_wanted_until = ? WHERE id = ?",
                [(to_iso(until), story_id) for story_id, until in until_by_id.items()],
            )

    async def awaiting_pages(self, source_id: int, *, now: datetime, limit: int) -> list[Story]:
        """The stories of this source still awaiting their article page while they are young, newest first, at
        most `limit`; the marks of those too old by now are cleared on the way (the index stays small)."""
        too_old = "source_id = ? AND page_wanted_until IS NOT NULL AND page_wanted_until <= ?"
        params = (source_id, to_iso(now))
        if await self._db.fetchone(f"SELECT 1 FROM stories WHERE {too_old} LIMIT 1", params):
            async with self._db.transaction():  # a write only when there is something to clear
                await self._db.execute(f"UPDATE stories SET page_wanted_until = NULL WHERE {too_old}", params)
        rows = await self._db.fetchall(
            "SELECT id FROM stories WHERE source_id = ? AND page_wanted_until > ?"
            " ORDER BY page_wanted_until DESC, id DESC LIMIT ?",
            (source_id, to_iso(now), max(0, limit)),
        )
        return await self.get_many([row[0] for row in rows])

    async def complete_pages(self, completed: list[Story], given_up: list[int]) -> None:
        """Stories enriched again with their article page: summary, image, quotes, kept text and artists
        replaced (title, time and identity stay); they, and the `given_up` ones (a page of no use), await no
        page any more. One transaction."""
        async with self._db.transaction():
            await self._db.executemany(
                "UPDATE stories SET summary = ?, image_url = ?, quotes_json = ?, page_wanted_until = NULL"
                " WHERE id = ?",
                [(s.summary, s.image, quotes_to_json(s.quotes), s.id) for s in completed if s.id is not None],
            )
            now = utcnow()
            texts = [
                (s.id, int((s.first_seen or now).timestamp()), packed)
                for s in completed
                if s.id is not None and (packed := pack_text(s.text)) is not None
            ]
            if (
                texts
            ):  # the page's article text replaces the feed's excerpt (kept since the story was first seen)
                await self._db.executemany(
                    "INSERT INTO story_texts(story_id, seen_at, text_zlib) VALUES (?,?,?)"
                    " ON CONFLICT (story_id) DO UPDATE SET text_zlib = excluded.text_zlib",
                    texts,
                )
            await self._write_artists({s.id: s.artists for s in completed if s.id is not None})
            await self._db.execute_in(
                "UPDATE stories SET page_wanted_until = NULL WHERE id IN ({marks})", given_up
            )

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

    # --- reads for search and retagging ------------------------------------------------------------------

    async def ids_by_artists(
        self,
        artist_ids: list[str],
        *,
        limit: int,
        before: StoryKey | None = None,
        after: StoryKey | None = None,
        count_up_to: int,
    ) -> tuple[list[StoryKey], int]:
        """The stories tagged with any of these artists, as keys (time, id), newest first: the `limit` newest,
        or the `limit` just older than `before`, or the `limit` just newer than `after`; and how many stories
        are tagged, counted up to `count_up_to` + 1.

        Each artist's stories come in order from the (artist_id, sort_at, story_id) index, starting at the
        cursor, so a page costs `limit` rows per artist however deep it is, and a story stored meanwhile never
        shifts it."""
        if not artist_ids:
            return [], 0
        newer, where, cursor = _keyset("sort_at", "story_id", before, after)
        order = "ASC" if newer else "DESC"
        # one round trip: each artist's `limit` rows next to the cursor, glued with UNION ALL
        branch = (
            "SELECT * FROM (SELECT COALESCE(sort_at, '') AS t, story_id FROM story_artists"
            f" WHERE artist_id = ?{where} ORDER BY sort_at {order}, story_id {order} LIMIT ?) AS page"
        )
        rows: list[Any] = []
        for start in range(0, len(artist_ids), ARTISTS_PER_STATEMENT):
            chunk = artist_ids[start : start + ARTISTS_PER_STATEMENT]
            params: list[Any] = []
            for artist_id in chunk:
                params += [artist_id, *cursor, limit]  # the overall page is within each artist's own page
            rows.extend(await self._db.fetchall(" UNION ALL ".join([branch] * len(chunk)), params))
        keys = sorted({(t, story_id) for t, story_id in rows}, reverse=not newer)[:limit]
        total = await self._db.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT story_id FROM story_artists"
            f" WHERE artist_id IN ({marks(len(artist_ids))}) LIMIT ?) AS tagged",
            [*artist_ids, count_up_to + 1],
        )
        return keys[::-1] if newer else keys, int(total)

    async def search_text(
        self,
        words: list[str],
        *,
        any_word: bool,
        limit: int,
        before: StoryKey | None = None,
        after: StoryKey | None = None,
        count_up_to: int,
    ) -> tuple[list[StoryKey], int]:
        """The stories whose title or summary has all of these words (or, `any_word`, any of them), as keys
        (time, id), newest first: the first page, or the `limit` just older than `before` or just newer than
        `after`; and how many match, counted up to `count_up_to` + 1.

        SQLite's FTS5 (table stories_fts): the one statement of the store written for one engine; another
        engine brings its own full-text search in its place. The first page is taken from the TEXT_WINDOW
        newest matches by id (FTS5 walks its doclists in id order; ids follow arrival, so in practice these
        are the newest by time too), sorted by time: cheap however common the words. A page after a cursor is
        exact: up to `count_up_to` matches, every match is looked up and sorted; past that, the time index
        (stories_sort_time) is walked from the cursor and its stories checked against the full-text index by
        id ranges (`_walk_text_matches`), so that a common word costs no more than a rare one."""
        if not words:
            return [], 0
        if self._db.dialect == "postgresql":
            return await self._search_text_postgresql(
                words, any_word=any_word, limit=limit, before=before, after=after, count_up_to=count_up_to
            )
        match = fts5_match(words, any_word=any_word)
        newest_sql = "SELECT rowid FROM stories_fts WHERE stories_fts MATCH ? ORDER BY rowid DESC LIMIT ?"
        if before is None and after is None:
            # the newest matches by id (one more than counted, and at least the window): how many there are
            # and the first page's window, from one pass over the full-text index
            newest = [
                row[0]
                for row in await self._db.fetchall(
                    newest_sql, (match, max(count_up_to + 1, TEXT_WINDOW, limit))
                )
            ]
            if not newest:
                return [], 0
            rows = await self._db.select_in(
                f"SELECT id, {SORT_TIME} AS t FROM stories WHERE id IN ({{marks}})",
                newest[: max(TEXT_WINDOW, limit)],
            )
            keys = sorted(((t or "", story_id) for story_id, t in rows), reverse=True)
            return keys[:limit], min(len(newest), count_up_to + 1)
        # how many match, and over which ids the first of them spread: how dense the matches are (FTS5 walks
        # its doclists forwards a quarter faster than backwards)
        counted = await self._db.fetchone(
            "SELECT count(*), max(rowid), min(rowid)"
            " FROM (SELECT rowid FROM stories_fts WHERE stories_fts MATCH ? LIMIT ?)",
            (match, count_up_to + 1),
        )
        total, last_id, first_id = counted if counted is not None else (0, 0, 0)
        if not total:
            return [], 0
        newer = after is not None
        start = after if after is not None else before
        assert start is not None
        if total > count_up_to:  # many matches: walk the time index from the cursor
            share = total / (last_id - first_id + 1)  # of the stories among these matches' ids
            keys = await self._walk_text_matches(match, newer=newer, start=start, limit=limit, share=share)
        else:  # few: look each match up by id and sort them
            keys = await self._sorted_text_matches(match, newer=newer, start=start, limit=limit)
        return keys[::-1] if newer else keys, total

    async def _sorted_text_matches(
        self, match: str, *, newer: bool, start: StoryKey, limit: int
    ) -> list[StoryKey]:
        """The `limit` matches next to `start` (newer or older), found by looking up every match by id: the
        cost of a page grows with the number of matches."""
        _, where, cursor = _keyset(SORT_TIME, "id", None if newer else start, start if newer else None)
        order = "ASC" if newer else "DESC"
        rows = await self._db.fetchall(
            f"SELECT id, {SORT_TIME} AS t FROM stories NOT INDEXED"
            f" WHERE id IN (SELECT rowid FROM stories_fts WHERE stories_fts MATCH ?){where}"
            f" ORDER BY {SORT_TIME} {order}, id {order} LIMIT ?",
            (match, *cursor, limit),
        )
        return [(t or "", story_id) for story_id, t in rows]

    async def _walk_text_matches(
        self, match: str, *, newer: bool, start: StoryKey, limit: int, share: float
    ) -> list[StoryKey]:
        """The `limit` matches next to `start` (newer or older), for words in many stories: the time index is
        walked from the cursor in growing batches, and each batch's ids are checked against the full-text
        index in one statement, as a few ranges of ids (FTS5 seeks to a rowid range in its doclists; ids
        follow arrival, so a batch's ids are a few close ranges). A page costs about `limit` / (the share of
        stories that match) rows of the index, not a look-up of every match (at 1,000,000 stories a word in
        35 % of them: 0.3 ms, against 40 ms for the set of its matches). The first batch is sized by `share`
        (the share of stories matching, estimated) to hold the page. Past WALK_BUDGET rows (the words'
        stories end long before the index does), the rest is found as for few matches."""
        order = "ASC" if newer else "DESC"
        found: list[StoryKey] = []
        batch = min(WALK_MAX_BATCH, max(WALK_FIRST_BATCH, int(3 * (limit + 1) / max(share, 1e-9))))
        key, walked = start, 0
        while len(found) < limit:
            if walked >= WALK_BUDGET:
                return found + await self._sorted_text_matches(
                    match, newer=newer, start=key, limit=limit - len(found)
                )
            _, where, cursor = _keyset(
                SORT_TIME, "id", None if newer else key, key if newer else None, range_start=True
            )
            # ids only: reading each story's time as well costs twice as much; it is read for the few found
            ids = [
                row[0]
                for row in await self._db.fetchall(
                    f"SELECT id FROM stories INDEXED BY stories_sort_time WHERE 1 = 1{where}"
                    f" ORDER BY {SORT_TIME} {order}, id {order} LIMIT ?",
                    (*cursor, batch),
                )
            ]
            if not ids:
                break
            ranges = _id_ranges(sorted(ids), width=4 * batch)
            branch = "SELECT rowid FROM stories_fts WHERE stories_fts MATCH ? AND rowid BETWEEN ? AND ?"
            params = [value for low, high in ranges for value in (match, low, high)]
            hits = {
                row[0] for row in await self._db.fetchall(" UNION ALL ".join([branch] * len(ranges)), params)
            }
            wanted = [story_id for story_id in ids if story_id in hits]
            times = dict(
                await self._db.select_in(
                    f"SELECT id, {SORT_TIME} FROM stories WHERE id IN ({{marks}})", [*wanted, ids[-1]]
                )
            )
            # in the walk's order; a story deleted since the walk is left out
            found.extend((times[story_id] or "", story_id) for story_id in wanted if story_id in times)
            walked += len(ids)
            if len(ids) < batch or ids[-1] not in times:  # the end of the index (or its last story deleted)
                break
            key = (times[ids[-1]] or "", ids[-1])
            batch = min(batch * 2, WALK_MAX_BATCH)
        return found[:limit]

    async def _search_text_postgresql(
        self,
        words: list[str],
        *,
        any_word: bool,
        limit: int,
        before: StoryKey | None,
        after: StoryKey | None,
        count_up_to: int,
    ) -> tuple[list[StoryKey], int]:
        """`search_text` on PostgreSQL: the tsvector column and its GIN index (bot/store/text_search.py), the same
        first-page window and the same exact pages after a cursor."""
        found, total = await text_matches(
            self._db, words, any_word=any_word, window=max(TEXT_WINDOW, limit), cap=count_up_to
        )
        if not total:
            return [], 0
        if before is None and after is None:
            keys = sorted(((t or "", story_id) for story_id, t in found), reverse=True)
            return keys[:limit], total
        newer, where, cursor = _keyset(SORT_TIME, "id", before, after)
        order = "ASC" if newer else "DESC"
        rows = await self._db.fetchall(
            f"SELECT id, {SORT_TIME} AS t FROM stories WHERE {postgresql_match()}{where}"
            f" ORDER BY {SORT_TIME} {order}, id {order} LIMIT ?",
            (postgresql_query(words, any_word=any_word), *cursor, limit),
        )
        keys = [(t or "", story_id) for story_id, t in rows]
        return keys[::-1] if newer else keys, total

    async def texts_after(self, after_id: int, limit: int) -> list[StoryText]:
        """The next `limit` stories by id after `after_id`, with the text tagging reads."""
        rows = await self._db.fetchall(
            "SELECT s.id, s.title, s.summary, t.text_zlib, s.categories_json FROM stories s"
            " LEFT JOIN story_texts t ON t.story_id = s.id WHERE s.id > ? ORDER BY s.id LIMIT ?",
            (after_id, limit),
        )
        return [
            StoryText(row[0], row[1] or "", row[2] or "", unpack_text(row[3]), _categories(row[4]))
            for row in rows
        ]

    async def drop_texts_seen_before(self, before: datetime) -> int:
        """Drop the kept text of the stories first seen before `before`; their title, summary, link, artists and
        quotes stay. Returns how many texts went: a range of the story_texts_seen index, so a run costs the
        texts it drops, not the stories stored."""
        async with self._db.transaction():
            return await self._db.execute(
                "DELETE FROM story_texts WHERE seen_at < ?", (int(before.timestamp()),)
            )


def _keyset(
    time: str, story_id: str, before: StoryKey | None, after: StoryKey | None, *, range_start: bool = False
) -> tuple[bool, str, tuple[Any, ...]]:
    """Whether a page goes towards newer stories, its WHERE terms (to append) and their parameters: a row-value
    comparison, plain SQL in SQLite >= 3.15 and PostgreSQL. `range_start` adds `time <= ?` (or `>=`) in
    front, which SQLite needs to start a walk of an index on an expression at the cursor."""
    if before is not None and after is not None:
        raise ValueError("a page is either before or after a story, not both")
    if after is not None:
        newer, key, sign = True, after, ">"
    elif before is not None:
        newer, key, sign = False, before, "<"
    else:
        return False, "", ()
    where = f" AND ({time}, {story_id}) {sign} (?, ?)"
    if range_start:
        return newer, f" AND {time} {sign}= ?" + where, (key[0], *key)
    return newer, where, key


def _id_ranges(ids: list[int], *, width: int) -> list[tuple[int, int]]:
    """Sorted ids as (low, high) ranges, each at most `width` wide, at most MAX_ID_RANGES of them: a story that
    arrived long before or after its neighbours in time is a small range of its own."""
    ranges: list[tuple[int, int]] = []
    low = high = ids[0]
    for story_id in ids[1:]:
        if story_id - low > width and len(ranges) < MAX_ID_RANGES - 1:
            ranges.append((low, high))
            low = story_id
        high = story_id
    ranges.append((low, high))
    return ranges


def _categories(text: str | None) -> list[str]:
    try:
        found = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(c) for c in found] if isinstance(found, list) else []
