"""Search the stored stories: by artist (any of its names; a group includes its members), else full text
(the store's full-text search of titles and summaries), else friendly suggestions. Shared by `/news` and `kpopnews search`;
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
from bot.models import ArtistRef, Story
from bot.store import Store, StoryText
from bot.store.stories import StoryKey

log = logging.getLogger(__name__)

MAX_LIMIT = 50  # one page never holds more (Discord shows 10 embeds per message anyway)
MAX_QUERY_CHARS = 200
TOTAL_CAP = 1000  # counting further costs a sort of every match; "1000+" is as useful to a person
_WORD = re.compile(r"\w+", re.UNICODE)
_QUERY_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})  # full-text query syntax, typed as words

Mode = Literal["artist", "text", "none"]


@dataclass
class SearchResult:
    """One page of a search: the artist it resolved to (if any), the stories, and what else was meant.

    Pages are keyset pages: `keys[i]` is the place of `stories[i]` in the list (its time and id), and the next
    page is asked with `before=` the last key, the previous one with `after=` the first, so a story stored
    between two pages never shifts them."""

    query: str
    artist: Artist | None
    stories: list[Story]
    total: int
    suggestions: list[Artist] = field(default_factory=list)
    mode: Mode = "none"
    limit: int = 5
    total_capped: bool = False  # True: there are at least `total` (= TOTAL_CAP) stories, shown as "1000+"
    keys: list[StoryKey] = field(default_factory=list)
    has_more: bool = False  # more stories past this page: older ones, or newer ones for a page asked after=

    @property
    def total_label(self) -> str:
        return f"{self.total}+" if self.total_capped else str(self.total)


async def search_stories(
    store: Store,
    index: ArtistIndex,
    query: str,
    *,
    limit: int = 5,
    before: StoryKey | None = None,
    after: StoryKey | None = None,
) -> SearchResult:
    """A page of the stories for a query, newest first (published, else first seen): the newest, or those
    just older than `before`, or just newer than `after`.

    Order of trust: an exact name of an artist; else full-text matches of the words; else an artist whose
    name is close to the query (a typo); else nothing, with suggestions of close names."""
    query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
    limit = max(1, min(int(limit), MAX_LIMIT))
    empty = SearchResult(query, None, [], 0, [], "none", limit)
    if not query:
        return empty

    exact = index.resolve_exact(query)
    if exact:
        return await artist_stories(
            store, index, exact[0], query=query, others=exact[1:], limit=limit, before=before, after=after
        )

    # one story more than the page shows: whether there are more
    keys, total = await _text_keys(store, query, limit=limit + 1, before=before, after=after)
    if total:
        result = SearchResult(query, None, [], min(total, TOTAL_CAP), [], "text", limit, total > TOTAL_CAP)
        return await _with_stories(store, result, keys, newer=after is not None)

    close = index.resolve(query)  # a typo of a name: "Taehyng"
    if close is not None:
        return await artist_stories(store, index, close, query=query, limit=limit, before=before, after=after)

    empty.suggestions = index.suggest(query, 5)
    return empty


async def artist_stories(
    store: Store,
    index: ArtistIndex,
    artist: Artist,
    *,
    query: str | None = None,
    others: list[Artist] | None = None,
    limit: int = 5,
    before: StoryKey | None = None,
    after: StoryKey | None = None,
) -> SearchResult:
    """A page of the stories about an artist (a group includes its members), paged as by `search_stories`.
    `query` is what the person typed (default: the artist's id), `others` the other artists it names."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    keys, total = await store.stories.ids_by_artists(
        index.expand(artist.id), limit=limit + 1, before=before, after=after, count_up_to=TOTAL_CAP
    )
    result = SearchResult(
        query or artist.id,
        artist,
        [],
        min(total, TOTAL_CAP),
        list((others or [])[:5]),
        "artist",
        limit,
        total > TOTAL_CAP,
    )
    return await _with_stories(store, result, keys, newer=after is not None)


async def _with_stories(
    store: Store, result: SearchResult, keys: list[StoryKey], *, newer: bool
) -> SearchResult:
    """`result` with its page: of `keys` (newest first; one more than the page when there are more), the
    `result.limit` next to the cursor, and their stories."""
    result.has_more = len(keys) > result.limit
    keys = keys[-result.limit :] if newer else keys[: result.limit]
    stories = {s.id: s for s in await store.stories.get_many([story_id for _, story_id in keys])}
    result.keys = [key for key in keys if key[1] in stories]  # a story deleted meanwhile is left out
    result.stories = [stories[story_id] for _, story_id in result.keys]
    return result


def query_words(text: str, *, any_word: bool = False) -> list[str]:
    """The words of user text to search for. Operators a person typed (AND, OR, NOT, NEAR) are dropped, never
    obeyed, and punctuation is no word, so quotes, stars, parentheses and column filters mean nothing."""
    words = _WORD.findall(text or "")[:12]
    words = [w for w in words if w.strip("_") and w not in _QUERY_OPERATORS]
    if any_word:
        # alone, a word of one or two letters says nothing ("V LIVE" must not find every story about V)
        words = [w for w in words if len(w) >= 3]
    return words


async def _text_keys(
    store: Store, text: str, *, limit: int, before: StoryKey | None, after: StoryKey | None
) -> tuple[list[StoryKey], int]:
    """Full-text matches, newest first. All words must match; failing that, any word may."""
    for any_word in (False, True):
        words = query_words(text, any_word=any_word)
        if not words:
            return [], 0
        keys, total = await store.stories.search_text(
            words, any_word=any_word, limit=limit, before=before, after=after, count_up_to=TOTAL_CAP
        )
        if total:
            return keys, total
    return [], 0


# --- `kpopnews search` ------------------------------------------------------------------------------------


async def run_search(config: Any, query: str, *, as_json: bool, limit: int, out: TextIO) -> int:
    """The CLI: the same search as /news, printed for people or as one JSON object per story."""
    # names only: a search never tags, so the tagger is not built (bot/artists/index.py)
    index = await asyncio.to_thread(ArtistIndex.load, tagging=False)
    store = await Store.open_configured(config.storage, artists=index)
    try:
        result = await search_stories(store, index, query, limit=limit)
    finally:
        await store.close()
    if as_json:
        from bot.embed import build_story_embed  # the embed (and what draws it) only for --json

        for story in result.stories:
            out.write(json.dumps(story.to_json(build_story_embed(story)), ensure_ascii=False) + "\n")
        return 0
    out.write(render_text(result) + "\n")
    return 0


def render_text(result: SearchResult) -> str:
    """Readable shell output of a first page: what was searched, then one block per story."""
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
        lines = [f"{head}: 1-{len(result.stories)} of {result.total_label}, newest first"]
    for n, story in enumerate(result.stories, 1):
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
    """Tag every stored story again with the current artist data, in batches (one transaction each): its
    title, kept text (else its summary, once `[storage] keep_text_days` dropped the text) and categories, as
    enrichment tagged it. Returns the number of stories whose artists changed."""
    changed = 0
    last_id = 0
    while True:
        stories = await store.stories.texts_after(last_id, batch)
        if not stories:
            break
        last_id = stories[-1].id
        before = await store.stories.artists_of([s.id for s in stories])

        def tag_batch(stories: list[StoryText] = stories) -> list[tuple[int, list[ArtistRef]]]:
            tagged = []
            for story in stories:
                tagged.append(
                    (story.id, index.tag(story.title, story.text or story.summary, story.categories))
                )
            return tagged

        results = await asyncio.to_thread(tag_batch)
        changes = {
            story_id: refs
            for story_id, refs in results
            if [r.id for r in refs] != [r.id for r in before.get(story_id, [])]
        }
        await store.stories.set_artists(changes)  # one transaction per batch
        changed += len(changes)
    return changed
