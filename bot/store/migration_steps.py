"""Migrations that need Python as well as SQL: a step that runs after the migration's SQL file, inside the same
transaction, so the migration and its data conversion commit together or not at all (an interrupted upgrade is
rolled back and runs again whole at the next start: nothing is converted twice or half).

A step talks to the connection the migration runs on through `StepConnection` (`?` placeholders on both
engines), in batches, so a large database is converted in bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from bot.store.rows import pack_text
from bot.timeutil import from_iso

log = logging.getLogger(__name__)

STEP_BATCH = 500  # stories read, converted and written at a time


class StepConnection(Protocol):
    """The migration's connection, inside its transaction (SQLite or PostgreSQL; `?` placeholders)."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


Step = Callable[[StepConnection], Awaitable[None]]


async def story_text_from_html(db: StepConnection) -> None:
    """1000_story_text: each story's stored content_html becomes its clean text (the same html_to_text that
    enrichment and `retag` use), compressed into story_texts; content_html is then emptied."""
    from bot.text import html_to_text  # the HTML parser only for a database that still holds HTML

    def convert(rows: list[Any]) -> list[tuple[int, int, bytes]]:
        packed: list[tuple[int, int, bytes]] = []
        for story_id, first_seen, html in rows:
            try:
                text = html_to_text(html)
            except Exception:  # one story's odd HTML must not stop the upgrade: it keeps its summary
                log.exception("story %d: its HTML could not be read as text; kept without text", story_id)
                continue
            blob = pack_text(text)
            seen = from_iso(first_seen)
            if blob is not None and seen is not None:
                packed.append((story_id, int(seen.timestamp()), blob))
        return packed

    last_id, converted = 0, 0
    while True:
        rows = await db.fetchall(
            "SELECT id, first_seen_at, content_html FROM stories WHERE id > ? AND content_html <> ''"
            " ORDER BY id LIMIT ?",
            (last_id, STEP_BATCH),
        )
        if not rows:
            break
        last_id = rows[-1][0]
        packed = await asyncio.to_thread(convert, [(row[0], row[1], row[2]) for row in rows])
        if packed:
            await db.executemany(
                "INSERT INTO story_texts(story_id, seen_at, text_zlib) VALUES (?, ?, ?)", packed
            )
        converted += len(rows)
        if converted % (STEP_BATCH * 20) == 0:
            log.info("migration 1000_story_text: %d stories' HTML turned into text so far", converted)
    if converted:
        await db.execute("UPDATE stories SET content_html = '' WHERE content_html <> ''")
        log.info("migration 1000_story_text: %d stories' HTML turned into text", converted)


STEPS: dict[int, Step] = {1000: story_text_from_html}
