"""/about: what the bot is, where its stories come from, how to get help."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord
from discord import app_commands
from discord.ext import commands

from bot import __version__
from bot.discord_bot import KpopNewsBot
from bot.i18n import text
from bot.models import Source
from bot.subscriptions import sources_for_guild
from bot.text import discord_len, escape_discord, truncate
from cogs.common import answer
from cogs.translator import command_name, declared_text

log = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/kpopnews/kpopnews"
HELP_URL = PROJECT_URL + "/issues"
ABOUT_COLOR = 0xE4007F
FIELD_LIMIT = 1024  # Discord: an embed field's value


def list_within(
    items: Sequence[str], limit: int = FIELD_LIMIT, *, separator: str = "\n", locale: object = None
) -> str:
    """`items` joined, as many as fit in `limit` characters, ending with "… and N more" when some do not."""
    shown: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i
        tail = separator + text("common.and_more", locale, count=rest - 1) if rest > 1 else ""
        candidate = separator.join([*shown, item])
        if discord_len(candidate) + discord_len(tail) > limit:
            more = text("common.and_more", locale, count=rest)
            return separator.join([*shown, more]) if shown else more
        shown.append(item)
    return separator.join(shown)


def about_embed(
    bot_name: str,
    sources: Sequence[Source],
    commands_: Sequence[tuple[str, str]],
    *,
    version: str = __version__,
    locale: object = None,
) -> discord.Embed:
    """The /about card: what the bot does, its sources (operator's first), its commands (name and description
    as given: already in `locale`), where to get help."""
    embed = discord.Embed(
        title=text("about.title", locale, name=truncate(bot_name, 200)),
        url=PROJECT_URL,
        color=ABOUT_COLOR,
        description=text("about.description", locale),
    )
    names = []
    for source in sorted(sources, key=lambda s: (s.owner_guild_id is not None, s.name.casefold())):
        name = f"**{escape_discord(truncate(source.name, 80))}**"
        names.append(text("about.added_here", locale, source=name) if source.owner_guild_id else name)
    embed.add_field(
        name=text("about.sources", locale),
        value=list_within(names, locale=locale) if names else text("about.no_sources", locale),
        inline=False,
    )
    lines = [f"`/{name}`: {truncate(description, 90)}" for name, description in commands_]
    if lines:
        embed.add_field(
            name=text("about.commands", locale), value=list_within(lines, locale=locale), inline=False
        )
    embed.add_field(
        name=text("about.help", locale), value=text("about.help_text", locale, url=HELP_URL), inline=False
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
        locale = interaction.locale  # the command list shows the names and descriptions the member sees
        sources = await sources_for_guild(self.bot.store, interaction.guild_id)
        listed = sorted(
            (
                command_name(c.name, locale),
                declared_text(f"cmd.{c.name}.description", c.description, locale),
            )
            for c in self.bot.tree.get_commands()
            if isinstance(c, app_commands.Command | app_commands.Group)
        )
        name = self.bot.user.name if self.bot.user else "kpopnews"
        await answer(interaction, embed=about_embed(name, sources, listed, locale=locale), ephemeral=True)


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(About(bot))
