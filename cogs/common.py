"""What the cogs share: the one way to answer an interaction, artist autocomplete, and Previous/Next buttons
that survive restarts.

Cogs import from here, never from each other; the bot's command error handler answers through `answer_error`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot.i18n import text
from bot.text import truncate
from cogs.translator import command_name

if TYPE_CHECKING:
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord: choices in one autocomplete answer
DEFER_AFTER = 1.5  # seconds: slower than this and the answer is deferred, well inside Discord's 3 s

T = TypeVar("T")
CogT = TypeVar("CogT", bound=commands.Cog)


# --- answering ----------------------------------------------------------------------------------------------


async def answer(
    interaction: discord.Interaction, content: str | None = None, *, ephemeral: bool = False, **kwargs: Any
) -> None:
    """Answer `interaction` with `content` and `kwargs` (embeds, view…), mentioning no one: as its response, or
    as a followup once it was answered or deferred (after a defer Discord keeps the defer's visibility).
    Raises discord.HTTPException when Discord refuses the answer."""
    kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
    if content is not None:
        kwargs["content"] = content
    if kwargs.get("view") is None:
        kwargs.pop("view", None)  # discord.py takes a view or none at all, not None
    if interaction.response.is_done():
        await interaction.followup.send(ephemeral=ephemeral, **kwargs)
    else:
        await interaction.response.send_message(ephemeral=ephemeral, **kwargs)


async def answer_error(interaction: discord.Interaction, text: str) -> None:
    """Tell the user who asked what went wrong, ephemerally. When Discord cannot take that either (the
    interaction expired, Discord is down), the log has to do: an error path must not raise again."""
    try:
        await answer(interaction, text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning(
            "could not tell user %s %r: %s", interaction.user.id if interaction.user else None, text, exc
        )


# --- autocomplete -------------------------------------------------------------------------------------------


def artist_choices(index: ArtistIndex | None, current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete for an `artist` option: up to 25 "V (BTS)" choices, best first; the value is the id.
    Never raises: a failing autocomplete is logged and offers nothing."""
    if index is None:
        return []
    choices: list[app_commands.Choice[str]] = []
    seen: set[str] = set()
    try:
        for artist in index.suggest(current, limit=MAX_CHOICES):
            if artist.id not in seen:
                seen.add(artist.id)
                choices.append(app_commands.Choice(name=truncate(artist.label, 100), value=artist.id[:100]))
    except Exception:
        log.exception("artist autocomplete failed for %r", current[:100])
    return choices[:MAX_CHOICES]


# --- paging ------------------------------------------------------------------------------------------------

CUSTOM_ID_UNITS = 100  # Discord: a component's custom_id, at most 100 characters (here: UTF-16 units)
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class PageState(Protocol):
    """What a page button's custom id reads as: which way it turns, and whose pages they are."""

    @property
    def forward(self) -> bool: ...

    @property
    def owner_id(self) -> int: ...


class PageButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"(?!)"):
    """A Previous or Next button whose custom id holds everything its click needs (what the page shows and who
    may turn it), so the click works for as long as the message exists, whichever process of the bot gets it.

    A subclass (one per command) gives a `template` that matches every custom id its command ever made, old
    formats included, so that an unreadable one is answered too; `read` (the custom id decoded, None when it
    cannot be); and `turn`. Its cog registers it with `bot.add_dynamic_items`. This class itself is never
    registered: its template matches nothing."""

    command: ClassVar[str]  # the slash command, named in the answers

    def __init__(self, custom_id: str, *, disabled: bool = False, locale: object = None) -> None:
        """`locale`: the language of the label (the asker's, or the clicker's when a click rebuilds it)."""
        self.state = self.read(custom_id)  # None: the custom id could not be read
        forward = self.state.forward if self.state is not None else True
        super().__init__(
            discord.ui.Button(
                label=text("common.next" if forward else "common.previous", locale),
                style=discord.ButtonStyle.primary if forward else discord.ButtonStyle.secondary,
                custom_id=custom_id,
                disabled=disabled,
            )
        )

    @classmethod
    def read(cls, custom_id: str) -> PageState | None:
        raise NotImplementedError

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match.string, locale=interaction.locale)

    async def turn(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if self.state is None or interaction.user.id == self.state.owner_id:
            return True
        locale = interaction.locale  # the one who pressed, in their language
        await answer_error(
            interaction, text("common.not_your_buttons", locale, command=command_name(self.command, locale))
        )
        return False

    async def callback(self, interaction: discord.Interaction) -> None:
        # discord.py only logs what a dynamic item raises: the person clicking must hear of it here
        if self.state is None:
            log.info("/%s button with an unreadable custom id %r", self.command, self.custom_id)
            await answer_error(interaction, self.expired_text(interaction.locale))
            return
        try:
            await self.turn(interaction)
        except Exception:
            log.exception("/%s page button failed (custom id %r)", self.command, self.custom_id)
            locale = interaction.locale
            await answer_error(
                interaction, text("common.page_failed", locale, command=command_name(self.command, locale))
            )

    @classmethod
    def expired_text(cls, locale: object = None) -> str:
        return text("common.expired", locale, command=command_name(cls.command, locale))


def loaded_cog(interaction: discord.Interaction, cog_type: type[CogT]) -> CogT:
    """The bot's cog of this type, which a button's click goes to (raises when it is not loaded)."""
    bot = interaction.client
    cog = (
        bot.get_cog(cog_type.__cog_name__)
        if isinstance(bot, commands.Bot | commands.AutoShardedBot)
        else None
    )
    if not isinstance(cog, cog_type):
        raise RuntimeError(f"a button of the {cog_type.__cog_name__} cog was clicked while it is not loaded")
    return cog


def page_view(previous: PageButton, next_: PageButton) -> discord.ui.View:
    """The Previous/Next row. No timeout: the buttons keep working (their cog handles every click)."""
    view = discord.ui.View(timeout=None)
    view.add_item(previous)
    view.add_item(next_)
    return view


async def in_time(interaction: discord.Interaction, work: Awaitable[T]) -> T:
    """The result of `work`; when it takes longer than DEFER_AFTER, the interaction is deferred meanwhile (a
    command shows "thinking…", a button leaves its message as it is), so Discord's 3 s are never missed."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), DEFER_AFTER)
    except TimeoutError:
        await interaction.response.defer(
            thinking=interaction.type is discord.InteractionType.application_command
        )
        return await task


async def show_page(interaction: discord.Interaction, **message: Any) -> None:
    """Replace the message a Previous/Next button sits on (content, embeds, view), mentioning no one."""
    message.setdefault("allowed_mentions", discord.AllowedMentions.none())
    if interaction.response.is_done():  # deferred by `in_time`
        await interaction.edit_original_response(**message)
    else:
        await interaction.response.edit_message(**message)


def base36(number: int) -> str:
    """A whole number in few characters, for custom ids: 1234567890123456789 -> "9do1sj396nf9"."""
    digits = ""
    rest = abs(number)
    while True:
        rest, digit = divmod(rest, 36)
        digits = _BASE36[digit] + digits
        if not rest:
            return ("-" if number < 0 else "") + digits


def utf16_units(text: str) -> int:
    """The length Discord counts: a character outside the BMP (most emoji) is two."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def cut_to_units(text: str, units: int) -> str:
    """The longest start of `text` of at most `units` UTF-16 units; at a space when one is near the end, so
    that no word is cut in half."""
    used = 0
    for end, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > units:
            space = text.rfind(" ", 0, end + 1)
            return text[:space] if space > end // 2 else text[:end]
    return text
