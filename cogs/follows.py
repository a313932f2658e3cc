"""/follow, /unfollow, /following: a member's own artists, whose new stories reach them by direct message
(bot/follows.py says what they get and when).

Anyone may use them, from any server the bot is in and from the bot's DMs (following from the DMs, where the
stories arrive, is natural; the follows are the member's, not a server's). Every reply is ephemeral and in the
member's locale, which is kept at /follow for the DMs' words. No test message is sent at /follow: the first
story finds out whether the member's DMs are open, and if they are closed the member is told once, after their
next command (any of the bot's), and /follow resumes them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import KpopNewsBot, UserFacingError
from bot.follows import (
    TooManyFollows,
    follow_artist,
    give_back_pause_notice,
    member_follows,
    take_pause_notice,
    unfollow_artist,
)
from bot.i18n import join_list, plural, text
from bot.subscriptions import ExpandArtist
from bot.text import escape_discord, truncate
from cogs.common import answer, artist_choices

if TYPE_CHECKING:
    from bot.artists import Artist, ArtistIndex

log = logging.getLogger(__name__)

SAYS_ITS_OWN_PAUSE = ("follow", "following")  # commands whose reply already tells a paused member


class Follows(commands.Cog):
    def __init__(self, bot: KpopNewsBot) -> None:
        self.bot = bot

    @property
    def index(self) -> ArtistIndex | None:
        return self.bot.artists

    # --- /follow ------------------------------------------------------------------------------------------

    @app_commands.command(
        name="follow", description="Get a direct message when a story about an artist is posted"
    )
    @app_commands.describe(artist="The artist or group to follow")
    async def follow(self, interaction: discord.Interaction, artist: app_commands.Range[str, 1, 100]) -> None:
        locale = interaction.locale
        who = self._resolve_artist(artist, locale)
        try:
            result = await follow_artist(self.bot.store, interaction.user.id, who.id, locale=locale.value)
        except TooManyFollows as exc:
            raise UserFacingError(text("follow.too_many", locale, max=exc.most)) from None
        reply = text("follow.done" if result.created else "follow.already", locale, artist=_label(who.label))
        if result.resumed:
            reply += "\n" + text("follow.resumed", locale)
        await answer(interaction, content=reply, ephemeral=True)

    # --- /unfollow ----------------------------------------------------------------------------------------

    @app_commands.command(name="unfollow", description="Stop the direct messages about an artist")
    @app_commands.describe(artist="The artist or group to stop following")
    async def unfollow(
        self, interaction: discord.Interaction, artist: app_commands.Range[str, 1, 100]
    ) -> None:
        locale = interaction.locale
        typed = artist.strip()
        follows = await self.bot.store.follows.of_user(interaction.user.id)
        followed = {f.artist_id for f in follows}
        if (
            typed in followed
        ):  # an autocomplete choice carries the id, also of an artist the data no longer has
            artist_id, label = typed, self._label_of(typed)
        else:
            who = self._resolve_artist(typed, locale)
            artist_id, label = who.id, who.label
        removed = await unfollow_artist(self.bot.store, interaction.user.id, artist_id, expand=self._expand())
        if not removed:
            raise UserFacingError(text("unfollow.not_following", locale, artist=_label(label)))
        await answer(interaction, content=text("unfollow.done", locale, artist=_label(label)), ephemeral=True)

    # --- /following ---------------------------------------------------------------------------------------

    @app_commands.command(name="following", description="The artists you follow")
    async def following(self, interaction: discord.Interaction) -> None:
        locale = interaction.locale
        follower, follows = await member_follows(self.bot.store, interaction.user.id)
        if not follows:
            lines = [text("following.none", locale)]
        else:
            lines = [f"**{text('following.title', locale)}**"]
            lines += [f"• {_label(self._label_of(f.artist_id))}" for f in follows]
            lines.append(plural("following.count", len(follows), locale))
        if follower is not None and follower.paused:
            await take_pause_notice(self.bot.store, interaction.user.id)  # told here: no second notice
            lines.append(text("following.paused", locale))
        await answer(interaction, content="\n".join(lines), ephemeral=True)

    # --- autocomplete -------------------------------------------------------------------------------------

    @follow.autocomplete("artist")
    async def _artist_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return artist_choices(self.index, current)

    @unfollow.autocomplete("artist")
    async def _followed_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The member's own follows whose name contains what they typed."""
        try:
            needle = current.strip().casefold()
            choices = []
            for follow in await self.bot.store.follows.of_user(interaction.user.id):
                label = self._label_of(follow.artist_id)
                if needle in label.casefold() or needle in follow.artist_id:
                    choices.append(
                        app_commands.Choice(name=truncate(label, 100), value=follow.artist_id[:100])
                    )
            return choices[:25]
        except Exception:
            log.exception("unfollow autocomplete failed for %r", current[:100])
            return []

    # --- the one-time notice of paused DMs, after any command -----------------------------------------------

    @commands.Cog.listener()
    async def on_app_command_completion(
        self, interaction: discord.Interaction, command: app_commands.Command | app_commands.ContextMenu
    ) -> None:
        if command.name in SAYS_ITS_OWN_PAUSE:
            return
        user_id = interaction.user.id
        try:
            if not await take_pause_notice(self.bot.store, user_id):
                return
        except Exception:
            log.exception("could not check whether member %d should hear that their DMs are paused", user_id)
            return
        try:
            await interaction.followup.send(
                text("follow.dm_closed", interaction.locale),
                ephemeral=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            log.info(
                "could not tell member %d that their DMs are paused (%s): at their next command", user_id, exc
            )
            await give_back_pause_notice(self.bot.store, user_id)

    # --- helpers ------------------------------------------------------------------------------------------

    def _expand(self) -> ExpandArtist | None:
        return self.index.expand if self.index is not None else None

    def _label_of(self, artist_id: str) -> str:
        artist = self.index.get(artist_id) if self.index is not None else None
        return artist.label if artist is not None else artist_id

    def _resolve_artist(self, typed: str, locale: discord.Locale) -> Artist:
        """The artist an option names: an autocomplete choice's id, or any of their names."""
        index = self.index
        if index is None:
            raise UserFacingError(text("common.artists_loading", locale))
        typed = typed.strip()
        artist = index.get(typed) or index.resolve(typed)
        if artist is None:
            reply = text("common.unknown_artist", locale, name=_label(truncate(typed, 80)))
            close = [f"**{_label(a.label)}**" for a in index.suggest(typed, limit=5)]
            if close:
                reply += " " + text("common.did_you_mean", locale, names=join_list(close, locale))
            raise UserFacingError(reply)
        return artist


def _label(name: str) -> str:
    return escape_discord(name)


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(Follows(bot))
