"""The world the end-to-end tests run in: FakeDiscord, the real bot (discord.py over loopback sockets), a loopback
feed server carrying Koreaboo's feed, a real SQLite file; and the V and IU story those tests publish."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.config import DeliveryConfig, PollingConfig, SourceConfig
from tests.support.bot_harness import BotHarness, bot_config, fake_discord_with_bot
from tests.support.discord_server import FakeChannel, FakeDiscord
from tests.support.feed_server import FeedServer, rss, wordpress_feed

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "feeds" / "koreaboo-style-v-iu.xml"
FIXTURE_DATE = "Tue, 30 Jan 2024 02:58:11 +0000"
V_IU_TITLE = "BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU"
V_IU_LINK = "https://www.koreaboo.com/news/bts-v-viral-behind-scenes-iu-love-wins-all-romantic/"
FEED = "koreaboo"


def rfc822(moment: datetime) -> str:
    return email.utils.format_datetime(moment)


def v_iu_feed(*, published: datetime, extra_items: list[dict[str, str]] = ()) -> bytes:
    """Koreaboo's feed carrying the V and IU story (with its embedded fan posts), published at `published`,
    plus `extra_items` (rss() item dicts)."""
    xml = FIXTURE.read_text(encoding="utf-8").replace(FIXTURE_DATE, rfc822(published))
    if extra_items:
        extra = rss(list(extra_items)).decode()
        items = extra[extra.index("<item>") : extra.rindex("</item>") + len("</item>")]
        xml = xml.replace("</channel>", items + "</channel>")
    return xml.encode("utf-8")


def news_item(n: int, *, published: datetime, title: str | None = None) -> dict[str, str]:
    return {
        "title": title or f"SEVENTEEN announce world tour stop number {n}",
        "link": f"https://www.koreaboo.com/news/seventeen-tour-{n}/",
        "guid": f"https://www.koreaboo.com/?p=9{n:05d}",
        "pubDate": rfc822(published),
        "description": f"SEVENTEEN add stop {n} to their tour, and fans are already planning.",
        "categories": "News,SEVENTEEN",
    }


@dataclass
class World:
    """FakeDiscord + the bot + a feed server; `koreaboo` is the operator's source the bot polls every second."""

    h: BotHarness
    feeds: FeedServer

    @property
    def server(self) -> FakeDiscord:
        return self.h.server

    @property
    def bot(self) -> Any:
        return self.h.bot

    @property
    def store(self) -> Any:
        return self.h.bot.store

    def channel(self, name: str) -> FakeChannel:
        return self.h.channel(name)

    def add_channel(self, name: str, **kw: Any) -> FakeChannel:
        return self.server.add_channel(self.h.guild.id, name, **kw)

    async def command(self, name: str, options: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Run a slash command (as the server owner unless user_id=...) and return the reply the user sees."""
        kw.setdefault("channel_id", self.channel("general").id)
        interaction = await self.server.invoke(name, options or {}, **kw)
        reply = await interaction.reply(timeout=10)
        reply["_ephemeral"] = interaction.ephemeral
        return reply

    async def subscribe(self, channel: FakeChannel, *, user_id: int | None = None, **options: Any) -> str:
        reply = await self.command("subscribe", {"channel": channel.id, **options}, user_id=user_id)
        return reply.get("content") or ""

    def publish(self, body: bytes) -> None:
        self.feeds.set_feed(FEED, body)

    async def polled(self, times: int = 1) -> None:
        """Wait until the feed was fetched `times` more times and what that brought was handled."""
        target = self.feeds.hits[f"/dyn/{FEED}"] + times
        await self.server.wait_for(lambda: self.feeds.hits[f"/dyn/{FEED}"] >= target, 30, what="a poll")
        await self.settle()

    async def settle(self) -> None:
        """Let the poll that was just answered be stored and queued, and the worker send what is due."""
        await asyncio.sleep(0.3)
        await self.bot.delivery.drain(within=30)


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    *,
    channels=("general", "news", "fans"),
    delivery: DeliveryConfig | None = None,
    **server_options: Any,
) -> AsyncIterator[World]:
    async with FeedServer() as feeds, FakeDiscord(**server_options) as server:
        feeds.set_feed(FEED, wordpress_feed(3, prefix="old", site="https://www.koreaboo.com"))
        config = bot_config(
            server,
            tmp_path / "kpopnews.db",
            sources=[SourceConfig("Koreaboo", feeds.url(f"/dyn/{FEED}"))],
            polling=PollingConfig(interval_seconds=1.0, fetch_article_pages=False),
            delivery=delivery,
        )
        async with fake_discord_with_bot(tmp_path, server=server, config=config, channels=channels) as h:
            w = World(h, feeds)
            # the first poll: what the feed carries at start-up is backfill, never posted
            await server.wait_for(lambda: feeds.hits[f"/dyn/{FEED}"] >= 1, 15, what="the first poll")
            await w.settle()
            yield w


async def eventually(check: Any, within: float = 5.0) -> None:
    """Poll an async check until it holds (the database has no change events to wait on)."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


def embed_of(message: dict[str, Any]) -> dict[str, Any]:
    [embed] = message["embeds"]
    return embed
