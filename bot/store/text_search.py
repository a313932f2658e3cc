"""Full-text search over titles and summaries, per engine: SQLite's FTS5 table, PostgreSQL's tsvector column.

Both take the words a person typed (already picked: no operators, nothing to escape for them) and answer the same
question: the newest matching stories by id (with their time, for the caller's sort) and how many match."""

from __future__ import annotations

import re

from bot.store.database import Database

# what unicode61 keeps together: letters and numbers (Python's \w, less "_")
_FTS5_TOKEN = re.compile(r"[^\W_]+")


async def text_matches(
    db: Database, words: list[str], *, any_word: bool, window: int, cap: int
) -> tuple[list[tuple[int, str | None]], int]:
    """Stories matching all the words (or any, with `any_word`): (id, published else first seen) of the newest
    `window` by id, newest first, and the number of matches counted up to `cap` + 1."""
    if not words:
        return [], 0
    if db.dialect == "postgresql":
        # one evaluation of the query (the GIN index's posting lists intersected once, not once to count and
        # once for the window): the newest matches by id, as many as counted and at least the window
        rows = await db.fetchall(
            "SELECT id, COALESCE(published_at, first_seen_at) FROM stories"
            f" WHERE {postgresql_match()} ORDER BY id DESC LIMIT ?",
            (postgresql_query(words, any_word=any_word), max(window, cap + 1)),
        )
        return [(row[0], row[1]) for row in rows[:window]], min(len(rows), cap + 1)
    query = fts5_match(words, any_word=any_word)
    count_sql = "SELECT count(*) FROM (SELECT rowid FROM stories_fts WHERE stories_fts MATCH ? LIMIT ?)"
    # FTS5 walks its doclists in rowid order: the newest ids first
    newest_sql = (
        "SELECT s.id, COALESCE(s.published_at, s.first_seen_at) FROM stories s WHERE s.id IN"
        " (SELECT rowid FROM stories_fts WHERE stories_fts MATCH ? ORDER BY rowid DESC LIMIT ?) ORDER BY s.id DESC"
    )
    total = int(await db.fetchval(count_sql, (query, cap + 1)))
    if not total:
        return [], 0
    rows = await db.fetchall(newest_sql, (query, window))
    return [(row[0], row[1]) for row in rows], total


def postgresql_query(words: list[str], *, any_word: bool) -> str:
    """Words as a tsquery: every word a quoted lexeme, so whatever it holds is searched for, never obeyed."""
    quoted = ["'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words]
    return (" | " if any_word else " & ").join(quoted)


def postgresql_match() -> str:
    """The WHERE term that matches `postgresql_query`'s text (one parameter)."""
    return "search_vector @@ to_tsquery('simple', kpopnews_search_text(?))"


def fts5_match(words: list[str], *, any_word: bool) -> str:
    """Words as an FTS5 query: each a quoted string, so that no word is ever an operator or a column filter.

    The index keeps no word positions (migration 1000: detail=column), so a quoted string must be one token: a
    word the tokenizer splits ("jung_kook": unicode61 separates at "_") becomes its tokens, all required."""
    terms = []
    for word in words:
        tokens = _FTS5_TOKEN.findall(word) or [word]
        quoted = ['"' + t.replace('"', '""') + '"' for t in tokens]
        terms.append(quoted[0] if len(quoted) == 1 else "(" + " AND ".join(quoted) + ")")
    return (" OR " if any_word else " AND ").join(terms)
