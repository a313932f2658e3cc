"""/trending [hours]: the story clusters spreading now (bot/trending.py's score), ten at most, with Previous/Next
buttons that keep working after a restart (their state is in their custom ids)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
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
from cogs.common import PageButton, answer, answer_error, base36, in_time, loaded_cog, page_view, show_page
from cogs.translator import catalog_str

log = logging.getLogger(__name__)

PAGE_SIZE = 5  # clusters per page: two pages hold the top ten
MAX_HOURS = 168  # a week; trending is about now
DEFAULT_HOURS = 24
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


# --- the buttons' custom ids --------------------------------------------------------------------------------

_TRENDING_ID = re.compile(
    r"trending:(?P<way>[np]):(?P<owner>[0-9a-z]{1,13}):(?P<hours>[0-9a-z]{1,2}):(?P<page>[0-9a-z]{1,2})"
)


@dataclass(frozen=True)
class TrendingButton:
    """What a /trending Previous or Next button carries in its custom id:

        trending:<n|p>:<owner>:<hours>:<page>

    `n` (Next) or `p` (Previous); who ran the command (only they turn the pages); the window in hours; the page
    shown (0: ranks 1–5). Numbers in base 36. The ranking is taken again at each click, as /trending is about
    now: ranks 6–10 are those of the moment, and a story that climbed meanwhile is seen at its new rank (the
    ranks are numbered). A custom id that does not read so (hand-made, or from an older version) is answered
    "expired"."""

    forward: bool
    owner_id: int
    hours: int
    page: int

    def custom_id(self) -> str:
        way = "n" if self.forward else "p"
        return f"trending:{way}:{base36(self.owner_id)}:{base36(self.hours)}:{base36(self.page)}"

    @classmethod
    def read(cls, custom_id: str) -> TrendingButton | None:
        """The button a custom id describes; None when it does not read as one."""
        found = _TRENDING_ID.fullmatch(custom_id)
        if found is None:
            return None
        owner_id, hours = int(found["owner"], 36), int(found["hours"], 36)
        if not (0 < owner_id < 2**64 and 1 <= hours <= MAX_HOURS):
            return None
        return cls(found["way"] == "n", owner_id, hours, int(found["page"], 36))


class TrendingPageButton(PageButton, template=re.compile(r"trending:.*", re.DOTALL)):
    """A /trending Previous or Next button; its template takes every /trending custom id (old formats too)."""

    command = "trending"

    @classmethod
    def read(cls, custom_id: str) -> TrendingButton | None:
        return TrendingButton.read(custom_id)

    async def turn(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.state, TrendingButton)  # PageButton.callback answers an unreadable one
        await loaded_cog(interaction, Trending).turn(interaction, self.state)


def trending_message(
    clusters: list[TrendingCluster], *, hours: int, page: int, owner_id: int, locale: object = None
) -> dict[str, Any]:
    """The message for a page of the ranking: header, embeds, and Previous/Next when it has more than a page;
    its words in `locale` (the member's)."""
    last_page = (len(clusters) - 1) // PAGE_SIZE
    page = min(max(page, 0), last_page)
    offset = page * PAGE_SIZE
    embeds = page_embeds(clusters, offset, utcnow(), locale)
    message: dict[str, Any] = {
        "content": header_text(hours, offset, len(embeds), len(clusters), locale),
        "embeds": embeds,
        "view": None,
    }
    if last_page > 0:
        previous = TrendingButton(False, owner_id, hours, page)
        next_ = TrendingButton(True, owner_id, hours, page)
        message["view"] = page_view(
            TrendingPageButton(previous.custom_id(), disabled=page == 0, locale=locale),
            TrendingPageButton(next_.custom_id(), disabled=page == last_page, locale=locale),
        )
    return message


class Trending(commands.Cog):
    def __init__(self, bot: KpopNewsBot) -> None:
        self.bot: KpopNewsBot = bot

    async def ranking(self, hours: int) -> list[TrendingCluster]:
        return await trending_clusters(self.bot.store, hours=hours, limit=DEFAULT_LIMIT)

    async def turn(self, interaction: discord.Interaction, button: TrendingButton) -> None:
        """A Previous or Next click: the next page of the ranking as it is now, in place of the message's."""
        locale = interaction.locale  # the one who clicked, in their language
        clusters = await in_time(interaction, self.ranking(button.hours))
        if not clusters:
            await answer_error(interaction, empty_text(button.hours, locale))
            return
        page = button.page + 1 if button.forward else button.page - 1
        message = trending_message(
            clusters, hours=button.hours, page=page, owner_id=button.owner_id, locale=locale
        )
        await show_page(interaction, **message)

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
        clusters = await in_time(interaction, self.ranking(hours))
        if not clusters:
            await answer(interaction, content=empty_text(hours, locale), ephemeral=True)
            return
        message = trending_message(clusters, hours=hours, page=0, owner_id=interaction.user.id, locale=locale)
        await answer(interaction, **message)


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(Trending(bot))
    bot.add_dynamic_items(TrendingPageButton)  # clicks on any /trending message ever sent, across restarts


async def teardown(bot: KpopNewsBot) -> None:
    bot.remove_dynamic_items(TrendingPageButton)
