"""Slash command names, descriptions and options in the member's language: discord.py's Translator over the
catalogs of bot/i18n.py (bot/locales/<locale>.toml, keys under `cmd.`).

Wiring, once, in `setup_hook` before the commands are synced (it loads and checks every locale file):

    await self.tree.set_translator(CatalogTranslator())

From then on every command and option is localized by its key, found from where the text sits:
`cmd.<command>.name`, `cmd.<command>.description`, `cmd.<command>.<option>.name`, `….description`.
Nothing in a cog has to change, with one exception: a description built with values (a range, a default)
names its key and values with `catalog_str`, so that the translations get the same values.

    from cogs.translator import catalog_str
    from bot.i18n import text

    @app_commands.command(name="news", description="The latest K-pop stories about an artist or group")
    @app_commands.describe(
        artist="Stage name, real name, Hangul name or group, e.g. V, Taehyung, 뷔, BTS",
        count=catalog_str("cmd.news.count.description", max=MAX_COUNT, default=DEFAULT_COUNT),
    )
    async def news(self, interaction: discord.Interaction, artist: str, count: int = DEFAULT_COUNT) -> None:
        # replies follow the member's locale; posts to a channel follow guild.preferred_locale
        await answer(interaction, content=text("news.nothing_found", interaction.locale, query=query))

Command and option names are localized too, deliberately: Discord shows a member their own locale's name in
the command list, so a Korean member finds `/뉴스` by typing Hangul, a Japanese one `/ニュース`. Each name is the
word that language's fans would type (Indonesian keeps `trending`, as Indonesian fans say it). The price is that
members of different languages call a command differently, so a reply names a command in the reader's locale
(`/구독`, checked by tests/test_i18n.py; `command_name("subscribe", locale)` for a name the code fills in); the
interaction always arrives under the English name, so dispatch is unchanged.

A text is localized only when the catalog's English for its key is exactly the English the command
declares: an edited English description is never shown beside a translation of the old one; it stays
English everywhere until en.toml and the translations follow (tests/test_i18n.py lists such drift).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Location

from bot.i18n import CATALOGS, DEFAULT_LOCALE, Catalogs, I18nError

KEY = "key"  # the locale_str extra naming a catalog key; every other extra is a value for its placeholders


def catalog_str(key: str, /, **values: object) -> app_commands.locale_str:
    """A command text declared by its catalog key: the English from en.toml (Discord's default), the key and
    the values as extras for the translator."""
    return app_commands.locale_str(CATALOGS.text(key, "en", **values), **{KEY: key}, **values)


def catalog_says(key: str, english: str, catalogs: Catalogs = CATALOGS, /, **values: object) -> bool:
    """Whether the catalog's English for `key` is exactly `english` (what the command declares): only then
    are its translations of this text."""
    try:
        return catalogs.text(key, DEFAULT_LOCALE, **values) == english
    except I18nError:  # no such key, or it needs values this text was declared without
        return False


def declared_text(key: str, english: str, locale: object, /, **values: object) -> str:
    """A command text in `locale` where the catalog says it (catalog_says), else `english` as declared."""
    return CATALOGS.text(key, locale, **values) if catalog_says(key, english, **values) else english


def command_name(name: str, locale: object) -> str:
    """A command as `locale`'s command list shows it (`news` -> `뉴스`), for replies that name one."""
    return declared_text(f"cmd.{name.replace(' ', '.')}.name", name, locale)


def context_key(context: app_commands.TranslationContextTypes) -> str | None:
    """The catalog key of a command text from where it sits, or None where there is no convention (choices,
    context menus)."""
    location, data = context.location, context.data
    if location in (Location.command_name, Location.command_description) and isinstance(
        data, app_commands.Command
    ):
        leaf = "name" if location is Location.command_name else "description"
        return f"cmd.{data.qualified_name.replace(' ', '.')}.{leaf}"
    if location in (Location.group_name, Location.group_description) and isinstance(data, app_commands.Group):
        leaf = "name" if location is Location.group_name else "description"
        return f"cmd.{data.qualified_name.replace(' ', '.')}.{leaf}"
    if location in (Location.parameter_name, Location.parameter_description) and isinstance(
        data, app_commands.Parameter
    ):
        leaf = "name" if location is Location.parameter_name else "description"
        return f"cmd.{data.command.qualified_name.replace(' ', '.')}.{data.display_name}.{leaf}"
    return None


class CatalogTranslator(app_commands.Translator):
    """Answers discord.py's translation requests from the catalogs; None (left to Discord's English) for
    English locales, locales without a file, and texts the catalog does not have or says otherwise."""

    def __init__(self, catalogs: Catalogs = CATALOGS) -> None:
        self.catalogs = catalogs

    async def load(self) -> None:
        self.catalogs.load_all()  # a malformed locale file stops the start here, with its name and key

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        extras = dict(string.extras)
        key = extras.pop(KEY, None)
        if not isinstance(key, str):
            key = context_key(context)
            if key is None:
                return None
        if not catalog_says(key, string.message, self.catalogs, **extras):
            return None  # the command says something else than the catalog: never a stale translation
        return self.catalogs.localized(key, locale.value, **extras)
