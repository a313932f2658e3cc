"""The running bot drops old stories' text by itself (`[storage] keep_text_days`), as `poll --once` does: the real
bot against FakeDiscord, on a real SQLite file."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bot.models import Story
from bot.store import Store
from bot.timeutil import utcnow
from tests.support import sql
from tests.support.bot_harness import bot_config, running_bot
from tests.support.discord_server import FakeDiscord


def story(n: int, *, days_ago: float) -> Story:
    url = f"https://www.koreaboo.com/news/{n}/"
    return Story(
        key=f"guid-{n}",
        title=f"Story {n}",
        url=url,
        canonical_url=url,
        source="Koreaboo",
        summary=f"Summary {n}.",
        text=f"The article of story {n}.",
        first_seen=utcnow() - timedelta(days=days_ago),
    )


async def test_the_bot_drops_texts_older_than_keep_text_days(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    store = await Store.open(database)
    await store.stories.add_many([story(1, days_ago=8), story(2, days_ago=1)], source_id=None)
    await store.close()
    async with FakeDiscord() as server:
        server.add_guild()
        config = bot_config(server, database)
        config = replace(config, storage=replace(config.storage, keep_text_days=7))
        async with running_bot(server, config) as bot:
            assert "text-retention" in bot.service_names()
            for _ in range(200):  # the service's first run comes as the bot starts
                if await sql.rows(bot.store, "SELECT count(*) FROM story_texts") == [(1,)]:
                    break
                await asyncio.sleep(0.05)
            kept = await bot.store.stories.texts_after(0, 10)
            assert [(t.title, t.text) for t in kept] == [
                ("Story 1", ""),
                ("Story 2", "The article of story 2."),
            ]
