"""/about: what the bot is, where its stories come from, how to get help."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from discord import app_commands
from discord.ext import commands

from bot import __version__
from bot.discord_bot import KpopNewsBot
from bot.models import Source
from bot.subscriptions import sources_for_guild
from bot.text import discord_len, escape_discord, truncate
from cogs.common import answer

log = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/kpopnews/kpopnews"
HELP_URL = PROJECT_URL + "/issues"
ABOUT_COLOR = 0xE4007F
FIELD_LIMIT = 1024  # Discord: an embed field's value


def list_within(items: Sequence[str], limit: int = FIELD_LIMIT, *, separator: str = "\n") -> str:
    """`items` joined, as many as fit in `limit` characters, ending with "… and N more" when some do not."""
    shown: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i
        tail = f"{separator}… and {rest - 1} more" if rest > 1 else ""
        candidate = separator.join([*shown, item])
        if discord_len(candidate) + discord_len(tail) > limit:
            more = f"… and {rest} more"
            return separator.join([*shown, more]) if shown else more
        shown.append(item)
    return separator.join(shown)


def about_embed(
    bot_name: str,
    sources: Sequence[Source],
    commands_: Sequence[tuple[str, str]],
    *,
    version: str = __version__,
) -> discord.Embed:
    """The /about card: what the bot does, its sources (operator's first), its commands, where to get help."""
    embed = discord.Embed(
        title=f"About {truncate(bot_name, 200)}",
        url=PROJECT_URL,
        color=ABOUT_COLOR,
        description=(
            "I bring new K-pop stories from trusted outlets to the channels you choose: each story once, "
            "as one card with its headline, link, lead image, a short summary and what fans are saying about it. "
            "Ask me for the latest on any idol or group, or for what is trending now."
        ),
    )
    names = [
        f"**{escape_discord(truncate(s.name, 80))}**"
        + (" (added by this server)" if s.owner_guild_id else "")
        for s in sorted(sources, key=lambda s: (s.owner_guild_id is not None, s.name.casefold()))
    ]
    embed.add_field(name="Sources", value=list_within(names) if names else "No sources yet.", inline=False)
    lines = [f"`/{name}`: {truncate(description, 90)}" for name, description in commands_]
    if lines:
        embed.add_field(name="Commands", value=list_within(lines), inline=False)
    embed.add_field(
        name="Help",
        value=(
            "Server admins: `/subscribe` a channel to start, and `/subscriptions` shows each channel's health "
            "and what to do when posting fails. Anyone: `/follow` an artist to get their news by direct message. "
            f"Questions and problems: {HELP_URL}"
        ),
        inline=False,
    )
    embed.set_footer(text=f"kpopnews {version}")
    return embed


class About(commands.Cog):
    def __init__(self, bot: KpopNewsBot) -> None:
        self.bot: KpopNewsBot = bot

    @app_commands.command(
        name="about", description="What this bot is, where its news comes from, how to get help"
    )
    async def about(self, interaction: discord.Interaction) -> None:
        sources = await sources_for_guild(self.bot.store, interaction.guild_id)
        listed = sorted(
            (c.name, c.description)
            for c in self.bot.tree.get_commands()
            if isinstance(c, app_commands.Command | app_commands.Group)
        )
        name = self.bot.user.name if self.bot.user else "kpopnews"
        await answer(interaction, embed=about_embed(name, sources, listed), ephemeral=True)


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(About(bot))
