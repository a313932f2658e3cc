"""Search the stored stories: by artist (any of its names; a group includes its members), else full text
(FTS5 over titles and summaries), else friendly suggestions. Shared by `/news` and `kpopnews search`;
`retag_all` re-tags every stored story when the artist data changes (`kpopnews retag`)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from bot.artists import Artist, ArtistIndex
from bot.models import Story
from bot.store import Store

log = logging.getLogger(__name__)

MAX_LIMIT = 50  # one page never holds more (Discord shows 10 embeds per message anyway)
MAX_OFFSET = 10_000  # deeper paging is no search any more: refuse quietly rather than scan the table
MAX_QUERY_CHARS = 200
TEXT_WINDOW = 200  # text search: the newest matches by id, then sorted by time
TOTAL_CAP = 1000  # counting further costs a sort of every match; "1000+" is as useful to a person
_WORD = re.compile(r"\w+", re.UNICODE)
_FTS_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})

Mode = Literal["artist", "text", "none"]


@dataclass
class SearchResult:
    """One page of a search: the artist it resolved to (if any), the stories, and what else was meant."""

    query: str
    artist: Artist | None
    stories: list[Story]
    total: int
    suggestions: list[Artist] = field(default_factory=list)
    mode: Mode = "none"
    offset: int = 0
    limit: int = 5
    total_capped: bool = False  # True: there are at least `total` (= TOTAL_CAP) stories, shown as "1000+"

    @property
    def total_label(self) -> str:
        return f"{self.total}+" if self.total_capped else str(self.total)

    @property
    def has_more(self) -> bool:
        if not self.stories:
            return False
        return self.total_capped or self.offset + len(self.stories) < self.total


async def search_stories(
    store: Store, index: ArtistIndex, query: str, *, limit: int = 5, offset: int = 0
) -> SearchResult:
    """The latest stories for a query, newest first (published, else first seen).

    Order of trust: an exact name of an artist; else full-text matches of the words; else an artist whose
    name is close to the query (a typo); else nothing, with suggestions of close names."""
    query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
    limit = max(1, min(int(limit), MAX_LIMIT))
    offset = max(0, min(int(offset), MAX_OFFSET))
    empty = SearchResult(query, None, [], 0, [], "none", offset, limit)
    if not query:
        return empty

    exact = index.resolve_exact(query)
    if exact:
        return await _artist_page(store, index, query, exact[0], exact[1:], limit, offset)

    ids, total = await _text_ids(store, query, limit, offset)
    if total:
        stories = await store.stories.get_many(ids)
        return SearchResult(
            query, None, stories, min(total, TOTAL_CAP), [], "text", offset, limit, total > TOTAL_CAP
        )

    close = index.resolve(query)  # a typo of a name: "Taehyng"
    if close is not None:
        return await _artist_page(store, index, query, close, [], limit, offset)

    empty.suggestions = index.suggest(query, 5)
    return empty


async def _artist_page(
    store: Store,
    index: ArtistIndex,
    query: str,
    artist: Artist,
    others: list[Artist],
    limit: int,
    offset: int,
) -> SearchResult:
    ids = index.expand(artist.id)
    story_ids, total = await artist_story_ids(store, ids, limit=limit, offset=offset)
    stories = await store.stories.get_many(story_ids)
    return SearchResult(
        query,
        artist,
        stories,
        min(total, TOTAL_CAP),
        list(others[:5]),
        "artist",
        offset,
        limit,
        total > TOTAL_CAP,
    )


async def artist_story_ids(
    store: Store, artist_ids: list[str], *, limit: int, offset: int = 0
) -> tuple[list[int], int]:
    """Story ids tagged with any of the artists, newest first, and how many there are (counted up to
    TOTAL_CAP + 1).

    Each artist's stories come newest first from the (artist_id, sort_at) index, so a big group costs
    (offset + limit) rows per artist instead of a sort of all its stories."""
    if not artist_ids:
        return [], 0
    want = offset + limit
    # one round trip: each artist's newest `want` rows from the index, glued with UNION ALL
    branch = (
        "SELECT * FROM (SELECT COALESCE(sort_at, '') AS t, story_id FROM story_artists WHERE artist_id = ?"
        " ORDER BY sort_at DESC, story_id DESC LIMIT ?)"
    )
    rows: list[Any] = []
    for start in range(0, len(artist_ids), 200):  # SQLite caps compound SELECTs at 500 terms
        chunk = artist_ids[start : start + 200]
        params: list[Any] = []
        for artist_id in chunk:
            params += [artist_id, want]  # a story in the overall top `want` is in its artist's top `want`
        async with store.db.execute(" UNION ALL ".join([branch] * len(chunk)), params) as cursor:
            rows.extend(await cursor.fetchall())
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    seen: set[int] = set()
    page: list[int] = []
    for _, story_id in rows:
        if story_id in seen:
            continue
        seen.add(story_id)
        page.append(story_id)
        if len(page) >= want:
            break
    placeholders = ",".join("?" * len(artist_ids))
    sql = (
        f"SELECT count(*) FROM (SELECT DISTINCT story_id FROM story_artists WHERE artist_id IN ({placeholders})"
        f" LIMIT {TOTAL_CAP + 1})"
    )
    async with store.db.execute(sql, artist_ids) as cursor:
        total = (await cursor.fetchone())[0]
    return page[offset:want], total


def fts_query(text: str, *, any_word: bool = False) -> str | None:
    """User text as a safe FTS5 query: each word a quoted string, so quotes, stars, parentheses, AND/OR/NOT/
    NEAR and column filters are only ever words. None when the text has no word to search for."""
    words = _WORD.findall(text or "")[:12]
    # the operators a person typed are dropped, never obeyed: "Billboard AND again" searches two words
    words = [w for w in words if w.strip("_") and w not in _FTS_OPERATORS]
    if any_word:
        # alone, a word of one or two letters says nothing ("V LIVE" must not find every story about V)
        words = [w for w in words if len(w) >= 3]
    if not words:
        return None
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    return (" OR " if any_word else " ").join(quoted)


async def _text_ids(store: Store, text: str, limit: int, offset: int) -> tuple[list[int], int]:
    """Full-text matches, newest first. All words must match; failing that, any word may."""
    for any_word in (False, True):
        match = fts_query(text, any_word=any_word)
        if match is None:
            return [], 0
        async with store.db.execute(
            f"SELECT count(*) FROM (SELECT rowid FROM stories_fts WHERE stories_fts MATCH ? LIMIT {TOTAL_CAP + 1})",
            (match,),
        ) as cursor:
            total = (await cursor.fetchone())[0]
        if not total:
            continue
        window = max(TEXT_WINDOW, offset + limit)
        # FTS5 walks its doclists in rowid order: the newest ids first, then sorted by the story's time
        async with store.db.execute(
            "SELECT s.id, COALESCE(s.published_at, s.first_seen_at) AS t FROM stories s"
            " WHERE s.id IN (SELECT rowid FROM stories_fts WHERE stories_fts MATCH ? ORDER BY rowid DESC LIMIT ?)",
            (match, window),
        ) as cursor:
            rows = await cursor.fetchall()
        rows.sort(key=lambda r: (r[1] or "", r[0]), reverse=True)
        return [r[0] for r in rows[offset : offset + limit]], total
    return [], 0


# --- `kpopnews search` ------------------------------------------------------------------------------------


async def run_search(config: Any, query: str, *, as_json: bool, limit: int, out: TextIO) -> int:
    """The CLI: the same search as /news, printed for people or as one JSON object per story."""
    index = await asyncio.to_thread(ArtistIndex.load)
    store = await Store.open_configured(config.storage, artists=index)
    try:
        result = await search_stories(store, index, query, limit=limit)
    finally:
        await store.close()
    if as_json:
        build = _embed_builder()
        for story in result.stories:
            embed = build(story) if build else None
            out.write(json.dumps(story.to_json(embed), ensure_ascii=False) + "\n")
        return 0
    out.write(render_text(result) + "\n")
    return 0


def _embed_builder():  # type: ignore[no-untyped-def]
    try:
        from bot.embed import build_story_embed
    except ImportError:  # the embed module is optional for the shell output
        return None
    return build_story_embed


def render_text(result: SearchResult) -> str:
    """Readable shell output: what was searched, then one block per story."""
    if result.mode == "none":
        if not result.query:
            return "Nothing to search for: give an artist's name or some words."
        line = f"No stories match {result.query!r}."
        if result.suggestions:
            line += " Did you mean: " + ", ".join(a.label for a in result.suggestions) + "?"
        return line
    if result.mode == "artist" and result.artist is not None:
        head = f"Stories about {result.artist.label}"
    else:
        head = f"Stories matching {result.query!r}"
    if not result.stories:
        lines = [f"{head}: none stored yet."]
    else:
        first = result.offset + 1
        last = result.offset + len(result.stories)
        lines = [f"{head}: {first}-{last} of {result.total_label}, newest first"]
    for n, story in enumerate(result.stories, result.offset + 1):
        when = _when(story.published or story.first_seen)
        artists = ", ".join(a.name if not a.group else f"{a.name} ({a.group})" for a in story.artists)
        lines.append("")
        lines.append(f"{n}. {story.title}")
        lines.append(f"   {story.source} · {when}" + (f" · {artists}" if artists else ""))
        lines.append(f"   {story.url}")
    if result.suggestions:
        lines.append("")
        lines.append("Also named so: " + ", ".join(a.label for a in result.suggestions))
    return "\n".join(lines)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "time unknown"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- `kpopnews retag` -------------------------------------------------------------------------------------


async def retag_all(store: Store, index: ArtistIndex, *, batch: int = 500) -> int:
    """Tag every stored story again with the current artist data, in batches (one transaction each).
    Returns the number of stories whose artists changed."""
    from bot.text import html_to_text  # the same HTML-to-text as enrichment

    changed = 0
    last_id = 0
    while True:
        async with store.db.execute(
            "SELECT id, title, summary, content_html, categories_json FROM stories WHERE id > ?"
            " ORDER BY id LIMIT ?",
            (last_id, batch),
        ) as cursor:
            rows = await cursor.fetchall()
        if not rows:
            break
        last_id = rows[-1][0]
        ids = [row[0] for row in rows]
        before = await _current_tags(store, ids)

        def tag_batch(rows: list[Any] = rows) -> list[tuple[int, list[Any]]]:
            tagged = []
            for story_id, title, summary, content_html, categories_json in rows:
                text = html_to_text(content_html) if content_html else ""
                try:
                    categories = json.loads(categories_json or "[]")
                except ValueError:
                    categories = []
                tagged.append((story_id, index.tag(title or "", text or summary or "", categories)))
            return tagged

        results = await asyncio.to_thread(tag_batch)
        changes = {
            story_id: refs for story_id, refs in results if [r.id for r in refs] != before.get(story_id, [])
        }
        await store.stories.set_artists(changes)  # one transaction per batch
        changed += len(changes)
    return changed


async def _current_tags(store: Store, ids: list[int]) -> dict[int, list[str]]:
    placeholders = ",".join("?" * len(ids))
    found: dict[int, list[str]] = {}
    async with store.db.execute(
        f"SELECT story_id, artist_id FROM story_artists WHERE story_id IN ({placeholders})"
        " ORDER BY story_id, position",
        ids,
    ) as cursor:
        for story_id, artist_id in await cursor.fetchall():
            found.setdefault(story_id, []).append(artist_id)
    return found
