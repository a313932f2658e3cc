"""/trending [hours]: the story clusters spreading now (bot/trending.py's score), ten at most, with paging."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import KpopNewsBot
from bot.embed import safe_url, source_color
from bot.i18n import text
from bot.text import escape_discord, one_line, truncate
from bot.timeutil import to_iso, utcnow
from bot.trending import (
    DEFAULT_LIMIT,
    TrendingCluster,
    ago,
    artist_label,
    outlets_label,
    trending_clusters,
)
from cogs.common import OwnedPager, answer, answer_error
from cogs.translator import catalog_str, command_name

log = logging.getLogger(__name__)

PAGE_SIZE = 5  # clusters per page: two pages hold the top ten
MAX_HOURS = 168  # a week; trending is about now
DEFAULT_HOURS = 24
DEFER_AFTER = 1.5  # seconds: slower than this and the answer is deferred, well inside Discord's 3 s
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 600  # a list entry stays short: ten of them must fit 6,000 characters with room to spare
MAX_ARTISTS = 6
MAX_OUTLETS = 8


def cluster_embed(cluster: TrendingCluster, now: datetime, locale: object = None) -> dict[str, Any]:
    """One trending cluster: rank and headline (linked), its artists, "3 outlets · 2 h ago", the outlets."""
    headline = escape_discord(one_line(cluster.title)) or text("embed.untitled", locale)
    embed: dict[str, Any] = {
        "type": "rich",
        "title": truncate(f"{cluster.rank}. {headline}", TITLE_LIMIT),
        "color": source_color(cluster.stories[0].source) if cluster.stories else 0,
        "timestamp": to_iso(cluster.first_seen),
    }
    url = safe_url(cluster.url)
    if url:
        embed["url"] = url
    lines: list[str] = []
    artists = [escape_discord(one_line(artist_label(a))) for a in cluster.artists[:MAX_ARTISTS]]
    if len(cluster.artists) > MAX_ARTISTS:
        artists.append(text("common.plus_more", locale, count=len(cluster.artists) - MAX_ARTISTS))
    separator = text("list.separator", locale)
    if artists:
        lines.append("**" + separator.join(artists) + "**")
    lines.append(f"{outlets_label(len(cluster.outlets), locale)} · {ago(cluster.first_seen, now, locale)}")
    outlets = [escape_discord(one_line(o)) for o in cluster.outlets[:MAX_OUTLETS]]
    if len(cluster.outlets) > MAX_OUTLETS:
        outlets.append(text("common.plus_more", locale, count=len(cluster.outlets) - MAX_OUTLETS))
    lines.append(text("trending.on_outlets", locale, outlets=separator.join(outlets)))
    embed["description"] = truncate("\n".join(lines), DESCRIPTION_LIMIT)
    image = safe_url(cluster.image)
    if image:
        embed["thumbnail"] = {"url": image}
    return embed


def header_text(hours: int, offset: int, shown: int, total: int, locale: object = None) -> str:
    if total <= PAGE_SIZE:
        return text("trending.header", locale, hours=hours)
    shown_range = text("common.range", locale, first=offset + 1, last=offset + shown, total=total)
    return text("trending.header_page", locale, hours=hours, range=shown_range)


def empty_text(hours: int, locale: object = None) -> str:
    return text("trending.empty", locale, hours=hours)


def page_embeds(
    clusters: list[TrendingCluster], offset: int, now: datetime, locale: object = None
) -> list[discord.Embed]:
    return [
        discord.Embed.from_dict(cluster_embed(c, now, locale)) for c in clusters[offset : offset + PAGE_SIZE]
    ]


class TrendingPager(OwnedPager):
    """Previous/Next over one ranking (taken when the command ran, so pages do not shift under the reader);
    only the person who asked turns the pages."""

    def __init__(self, clusters: list[TrendingCluster], *, hours: int, owner_id: int, locale: object) -> None:
        super().__init__(command="trending", owner_id=owner_id, locale=locale)
        self.clusters = clusters
        self.hours = hours
        self.offset = 0
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        self.previous.disabled = self.offset <= 0
        self.next.disabled = self.offset + PAGE_SIZE >= len(self.clusters)

    async def turn(self, interaction: discord.Interaction, *, forward: bool) -> None:
        offset = self.offset + PAGE_SIZE if forward else max(0, self.offset - PAGE_SIZE)
        self.offset = min(offset, max(0, len(self.clusters) - 1))
        self._sync_buttons()
        locale = interaction.locale
        embeds = page_embeds(self.clusters, self.offset, utcnow(), locale)
        await interaction.response.edit_message(
            content=header_text(self.hours, self.offset, len(embeds), len(self.clusters), locale),
            embeds=embeds,
            view=self,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item
    ) -> None:
        log.exception("/trending page button failed (offset %d)", self.offset, exc_info=error)
        locale = interaction.locale
        await answer_error(
            interaction, text("common.page_failed", locale, command=command_name("trending", locale))
        )


class Trending(commands.Cog):
    def __init__(self, bot: KpopNewsBot) -> None:
        self.bot: KpopNewsBot = bot

    async def ranking(self, hours: int) -> list[TrendingCluster]:
        return await trending_clusters(self.bot.store, hours=hours, limit=DEFAULT_LIMIT)

    @app_commands.command(name="trending", description="The K-pop stories spreading across outlets right now")
    @app_commands.describe(
        hours=catalog_str("cmd.trending.hours.description", max=MAX_HOURS, default=DEFAULT_HOURS)
    )
    async def trending(
        self,
        interaction: discord.Interaction,
        hours: app_commands.Range[int, 1, MAX_HOURS] = DEFAULT_HOURS,
    ) -> None:
        locale = interaction.locale  # replies follow the member's language
        work = asyncio.ensure_future(self.ranking(hours))
        try:
            # usually milliseconds; if the store is busy, defer rather than miss Discord's 3 s
            clusters = await asyncio.wait_for(asyncio.shield(work), DEFER_AFTER)
        except TimeoutError:
            await interaction.response.defer(thinking=True)
            clusters = await work
        if not clusters:
            await answer(interaction, content=empty_text(hours, locale), ephemeral=True)
            return
        view: TrendingPager | None = None
        if len(clusters) > PAGE_SIZE:
            view = TrendingPager(clusters, hours=hours, owner_id=interaction.user.id, locale=locale)
            view.message_interaction = interaction
        embeds = page_embeds(clusters, 0, utcnow(), locale)
        await answer(
            interaction,
            content=header_text(hours, 0, len(embeds), len(clusters), locale),
            embeds=embeds,
            view=view,
        )


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(Trending(bot))
