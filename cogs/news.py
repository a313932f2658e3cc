"""/news artist:<text> [count]: the latest stories about an artist, by any of their names, with paging."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import KpopNewsBot, UserFacingError
from bot.embed import build_story_embed, embed_length
from bot.i18n import text
from bot.search import SearchResult, search_stories
from bot.text import escape_discord, truncate
from cogs.common import OwnedPager, answer, answer_error, artist_choices
from cogs.translator import catalog_str, command_name

if TYPE_CHECKING:
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

MAX_COUNT = 10  # a message holds 10 embeds
DEFAULT_COUNT = 5
MESSAGE_EMBED_BUDGET = 6000  # Discord: all embeds of one message together
LIST_DESCRIPTION = 300  # a story in a list shows a short summary, so that several fit the budget
DEFER_AFTER = 1.5  # seconds: slower than this and the answer is deferred, well inside Discord's 3 s


def list_embed(story: Any, locale: object = None) -> dict[str, Any]:
    """A story as one of several in a message: headline, link, image, source and time, a short summary."""
    embed = build_story_embed(story, locale=locale)
    embed.pop("fields", None)  # fan quotes are for the channel post; a list keeps to the essentials
    if embed.get("description"):
        embed["description"] = truncate(embed["description"], LIST_DESCRIPTION)
    return embed


def fit_embeds(embeds: list[dict[str, Any]], budget: int = MESSAGE_EMBED_BUDGET) -> list[dict[str, Any]]:
    """As many embeds, in order, as one message holds (10, and 6,000 characters together)."""
    kept: list[dict[str, Any]] = []
    used = 0
    for embed in embeds[:MAX_COUNT]:
        size = embed_length(embed)
        if kept and used + size > budget:
            break
        if size > budget:  # a single embed over the budget: its description goes first
            embed = dict(embed, description=truncate(embed.get("description") or "", 100))
            size = embed_length(embed)
        kept.append(embed)
        used += size
    return kept


def no_result_text(result: SearchResult, locale: object = None) -> str:
    query = escape_discord(truncate(result.query, 80))
    if result.artist is not None:
        reply = text("news.no_stories", locale, artist=escape_discord(result.artist.label))
    else:
        reply = text("news.nothing_found", locale, query=query)
    suggestions = [f"**{escape_discord(a.label)}**" for a in (result.suggestions or [])[:5]]
    if suggestions:
        names = text("list.separator", locale).join(suggestions)
        reply += " " + text("news.did_you_mean", locale, names=names)
    elif result.artist is None:
        reply += " " + text("news.try_names", locale)
    return reply


def header_text(result: SearchResult, offset: int, shown: int, locale: object = None) -> str:
    who = (
        escape_discord(result.artist.label)
        if result.artist
        else text("common.quoted", locale, text=escape_discord(truncate(result.query, 80)))
    )
    if result.total <= shown and offset == 0 and not result.total_capped:
        return text("news.header", locale, who=who)
    shown_range = text(
        "common.range", locale, first=offset + 1, last=offset + shown, total=result.total_label
    )
    return text("news.header_page", locale, who=who, range=shown_range)


class NewsPager(OwnedPager):
    """Previous/Next over a search's results; only the person who asked turns the pages."""

    def __init__(
        self, cog: News, *, query: str, count: int, shown: int, more: bool, owner_id: int, locale: object
    ) -> None:
        super().__init__(command="news", owner_id=owner_id, locale=locale)
        self.cog = cog
        self.query = query
        self.count = count  # stories asked per page
        self.offset = 0
        self.shown = shown  # stories on this page (fewer than count when the 6,000 budget is reached)
        self.more = more  # stories after this page
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        self.previous.disabled = self.offset <= 0
        self.next.disabled = not self.more

    async def turn(self, interaction: discord.Interaction, *, forward: bool) -> None:
        offset = self.offset + self.shown if forward else max(0, self.offset - self.count)
        result = await self.cog.search(self.query, limit=self.count, offset=offset)
        if not result.stories:  # the store changed under us; show the first page again
            offset = 0
            result = await self.cog.search(self.query, limit=self.count, offset=0)
        embeds = fit_embeds([list_embed(s, interaction.locale) for s in result.stories])
        self.offset, self.shown = offset, len(embeds)
        self.more = result.total_capped or offset + self.shown < result.total
        self._sync_buttons()
        await interaction.response.edit_message(
            content=header_text(result, offset, len(embeds), interaction.locale),
            embeds=[discord.Embed.from_dict(e) for e in embeds],
            view=self,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item
    ) -> None:
        log.exception(
            "/news page button failed (query %r, offset %d)", self.query, self.offset, exc_info=error
        )
        locale = interaction.locale
        await answer_error(
            interaction, text("common.page_failed", locale, command=command_name("news", locale))
        )


class News(commands.Cog):
    def __init__(self, bot: KpopNewsBot) -> None:
        self.bot: KpopNewsBot = bot

    @property
    def index(self) -> ArtistIndex | None:
        return self.bot.artists  # None when the artist data could not be loaded

    async def search(self, query: str, *, limit: int, offset: int) -> SearchResult:
        index = self.index
        assert index is not None  # /news refuses before searching when there is no artist list
        return await search_stories(self.bot.store, index, query, limit=limit, offset=offset)

    @app_commands.command(name="news", description="The latest K-pop stories about an artist or group")
    @app_commands.describe(
        artist="Stage name, real name, Hangul name or group, e.g. V, Taehyung, 뷔, BTS",
        count=catalog_str("cmd.news.count.description", max=MAX_COUNT, default=DEFAULT_COUNT),
    )
    async def news(
        self,
        interaction: discord.Interaction,
        artist: app_commands.Range[str, 1, 100],
        count: app_commands.Range[int, 1, MAX_COUNT] = DEFAULT_COUNT,
    ) -> None:
        locale = interaction.locale  # replies follow the member's language
        if self.index is None:
            raise UserFacingError(text("common.artists_loading", locale))
        query = artist.strip()  # a name as typed, or an artist id when picked from the autocomplete list
        search = asyncio.ensure_future(self.search(query, limit=count, offset=0))
        try:
            # usually milliseconds; if the store is busy, defer rather than miss Discord's 3 s
            result = await asyncio.wait_for(asyncio.shield(search), DEFER_AFTER)
        except TimeoutError:
            await interaction.response.defer(thinking=True)
            result = await search
        if not result.stories:
            await answer(interaction, content=no_result_text(result, locale), ephemeral=True)
            return
        embeds = fit_embeds([list_embed(s, locale) for s in result.stories])
        shown = len(embeds)
        view: NewsPager | None = None
        more = result.total_capped or shown < result.total  # shown may be under count: the 6,000 budget
        if more:
            view = NewsPager(
                self,
                query=query,
                count=count,
                shown=shown,
                more=more,
                owner_id=interaction.user.id,
                locale=locale,
            )
            view.message_interaction = interaction
        await answer(
            interaction,
            content=header_text(result, 0, shown, locale),
            embeds=[discord.Embed.from_dict(e) for e in embeds],
            view=view,
        )

    @news.autocomplete("artist")
    async def _artist_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return artist_choices(self.index, current)


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(News(bot))
