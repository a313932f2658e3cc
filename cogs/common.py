"""What the cogs share: the one way to answer an interaction, artist autocomplete, and Previous/Next buttons.

Cogs import from here, never from each other; the bot's command error handler answers through `answer_error`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.i18n import text
from bot.text import truncate
from cogs.translator import command_name

if TYPE_CHECKING:
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

PAGE_TIMEOUT = 600.0  # buttons live 10 minutes (an interaction token lives 15)
MAX_CHOICES = 25  # Discord: choices in one autocomplete answer


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


# --- paging -------------------------------------------------------------------------------------------------


class OwnedPager(discord.ui.View):
    """Previous/Next that only the person who asked may press; disabled when they time out.
    Subclasses implement `turn`; the buttons' custom ids are `<command>:previous` and `<command>:next`; their
    labels are in the asker's `locale`."""

    def __init__(
        self, *, command: str, owner_id: int, locale: object = None, timeout: float = PAGE_TIMEOUT
    ) -> None:
        super().__init__(timeout=timeout)
        self.command = command
        self.owner_id = owner_id
        self.message_interaction: discord.Interaction | None = None  # the answer these buttons sit on
        self.previous.custom_id = f"{command}:previous"
        self.next.custom_id = f"{command}:next"
        self.previous.label = text("common.previous", locale)
        self.next.label = text("common.next", locale)

    async def turn(self, interaction: discord.Interaction, *, forward: bool) -> None:
        raise NotImplementedError

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        locale = interaction.locale  # the one who pressed, in their language
        await answer(
            interaction,
            text("common.not_your_buttons", locale, command=command_name(self.command, locale)),
            ephemeral=True,
        )
        return False

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self.turn(interaction, forward=False)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.primary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self.turn(interaction, forward=True)

    async def on_timeout(self) -> None:
        if self.message_interaction is None:
            return
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        try:
            await self.message_interaction.edit_original_response(view=self)
        except discord.HTTPException:
            pass  # the message was deleted or the token ran out: nothing to tidy
