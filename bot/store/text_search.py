"""Full-text search over titles and summaries, per engine: SQLite's FTS5 table, PostgreSQL's tsvector column.

Both take the words a person typed (already picked: no operators, nothing to escape for them) and answer the same
question: the newest matching stories by id (with their time, for the caller's sort) and how many match."""

from __future__ import annotations

from bot.store.database import Database


async def text_matches(
    db: Database, words: list[str], *, any_word: bool, window: int, cap: int
) -> tuple[list[tuple[int, str | None]], int]:
    """Stories matching all the words (or any, with `any_word`): (id, published else first seen) of the newest
    `window` by id, newest first, and the number of matches counted up to `cap` + 1."""
    if not words:
        return [], 0
    if db.dialect == "postgresql":
        # every word a quoted lexeme: whatever it holds, it is searched for, never obeyed
        quoted = ["'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words]
        query = (" | " if any_word else " & ").join(quoted)
        match = "search_vector @@ to_tsquery('simple', kpopnews_search_text(?))"
        count_sql = f"SELECT count(*) FROM (SELECT 1 FROM stories WHERE {match} LIMIT ?) AS matches"
        newest_sql = f"SELECT id, COALESCE(published_at, first_seen_at) FROM stories WHERE {match} ORDER BY id DESC LIMIT ?"
    else:
        # each word an FTS5 string: quotes, stars, AND/OR/NOT/NEAR and column filters are only ever words
        quoted = ['"' + w.replace('"', '""') + '"' for w in words]
        query = (" OR " if any_word else " ").join(quoted)
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
