"""/subscribe, /unsubscribe, /subscriptions: which channels get new stories, for server managers only."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import KpopNewsBot, UserFacingError
from bot.models import STATUS_OK, STATUS_PAUSED, Source, Subscription
from bot.subscriptions import (
    SubscriptionError,
    add_subscription,
    find_guild_source,
    looks_like_url,
    remove_subscriptions,
    sources_for_guild,
    suggest_sources,
)
from bot.text import escape_discord, truncate
from cogs.common import answer, artist_choices

if TYPE_CHECKING:
    from bot.artists import Artist, ArtistIndex

log = logging.getLogger(__name__)

# What the bot needs in a channel to post a story there.
NEEDED = (
    ("view_channel", "View Channel"),
    ("send_messages", "Send Messages"),
    ("embed_links", "Embed Links"),
)
LIST_EMBED_BUDGET = 5500  # /subscriptions: characters in the list embeds (Discord allows 6,000 in all)


def missing_permissions(permissions: discord.Permissions) -> list[str]:
    return [label for attr, label in NEEDED if not getattr(permissions, attr)]


class Subscriptions(commands.Cog):
    def __init__(self, bot: KpopNewsBot) -> None:
        self.bot: KpopNewsBot = bot

    @property
    def index(self) -> ArtistIndex | None:
        return self.bot.artists  # None when the artist data could not be loaded

    # --- /subscribe ---------------------------------------------------------------------------------------

    @app_commands.command(name="subscribe", description="Post new K-pop stories to a channel")
    @app_commands.describe(
        channel="The channel to post stories in",
        artist="Only stories about this artist or group (default: every story)",
        source="Only stories from this source: a known one, or a feed URL (default: every source)",
        only_trending="Only stories that are trending (default: every new story)",
    )
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    # checked at run time too: a server's Integrations settings can hand the command to anyone
    @app_commands.checks.has_permissions(manage_guild=True)
    async def subscribe(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        artist: app_commands.Range[str, 1, 100] | None = None,
        source: app_commands.Range[str, 1, 2000] | None = None,
        only_trending: bool = False,
    ) -> None:
        assert interaction.guild_id is not None
        missing = self._bot_missing_in(interaction, channel)
        if missing:
            raise UserFacingError(
                f"I cannot post in {channel.mention}: I am missing {', '.join(f'**{m}**' for m in missing)} there."
                " Give me those permissions in the channel's settings, then run `/subscribe` again."
            )
        who = self._resolve_artist(artist) if artist else None
        feed = await self._resolve_source(interaction, source, adding=True) if source else None
        try:
            result = await add_subscription(
                self.bot.store,
                guild_id=interaction.guild_id,
                channel_id=channel.id,
                artist_id=who.id if who else None,
                source_id=feed.id if feed else None,
                only_trending=only_trending,
                created_by=interaction.user.id,
            )
        except SubscriptionError as exc:
            raise UserFacingError(
                f"I cannot subscribe {channel.mention}: {escape_discord(str(exc))}."
            ) from None
        what = _describe_filter(who.label if who else None, feed.name if feed else None, only_trending)
        if result.created:
            text = (
                f"Done: {channel.mention} gets {what}. Stories already out are not posted;"
                " new ones arrive as they are published."
            )
        elif result.changed:
            text = f"Updated: {channel.mention} gets {what}, and posting is back on."
            self.bot.delivery.wake()  # stories held back by a refusal may go now
        else:
            text = f"{channel.mention} already gets {what}."
        await answer(interaction, text, ephemeral=True)

    # --- /unsubscribe -------------------------------------------------------------------------------------

    @app_commands.command(name="unsubscribe", description="Stop posting stories to a channel")
    @app_commands.describe(
        channel="The channel to stop posting in",
        artist="Only stop this artist's subscription (default: all of the channel's)",
        source="Only stop this source's subscription (default: all of the channel's)",
    )
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    # checked at run time too: a server's Integrations settings can hand the command to anyone
    @app_commands.checks.has_permissions(manage_guild=True)
    async def unsubscribe(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        artist: app_commands.Range[str, 1, 100] | None = None,
        source: app_commands.Range[str, 1, 2000] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        who = self._resolve_artist(artist) if artist else None
        feed = await self._resolve_source(interaction, source, adding=False) if source else None
        removed = await remove_subscriptions(
            self.bot.store,
            guild_id=interaction.guild_id,
            channel_id=channel.id,
            artist_id=who.id if who else None,
            source_id=feed.id if feed else None,
            expand=self.index.expand if self.index is not None else None,
        )
        if not removed:
            what = _describe_filter(who.label if who else None, feed.name if feed else None, False)
            raise UserFacingError(
                f"{channel.mention} has no subscription to {what}. `/subscriptions` lists what this server has."
            )
        lines = [f"Stopped for {channel.mention}:"]
        lines += [f"• {self._subscription_text(s)}" for s in removed]
        remaining = await self.bot.store.subscriptions.list(
            guild_id=interaction.guild_id, channel_id=channel.id
        )
        if remaining:
            lines.append(f"Still on there: {len(remaining)} subscription(s) (see `/subscriptions`).")
        await answer(interaction, "\n".join(lines), ephemeral=True)

    # --- /subscriptions -----------------------------------------------------------------------------------

    @app_commands.command(name="subscriptions", description="This server's subscriptions and their health")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    # checked at run time too: a server's Integrations settings can hand the command to anyone
    @app_commands.checks.has_permissions(manage_guild=True)
    async def subscriptions(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        found = await self.bot.store.subscriptions.list(guild_id=interaction.guild_id)
        if not found:
            await answer(
                interaction,
                "This server has no subscriptions yet. `/subscribe` posts new stories to a channel.",
                ephemeral=True,
            )
            return
        blocks = [self._health_block(s) for s in found]
        embeds: list[discord.Embed] = []
        current: list[str] = []
        used = 0
        shown = 0
        for block in blocks:
            if used + len(block) > LIST_EMBED_BUDGET:
                break
            if current and sum(len(b) + 2 for b in current) + len(block) > 4000:
                embeds.append(self._list_embed(current))
                current = []
            current.append(block)
            used += len(block) + 2
            shown += 1
        if current:
            embeds.append(self._list_embed(current))
        server = interaction.guild.name if interaction.guild else "this server"
        embeds[0].title = f"Subscriptions in {truncate(server, 200)}"
        content = None
        if shown < len(blocks):
            content = f"Showing {shown} of {len(blocks)} subscriptions (the first ones by channel)."
        await answer(interaction, content, embeds=embeds[:10], ephemeral=True)

    # --- autocomplete -------------------------------------------------------------------------------------

    @subscribe.autocomplete("artist")
    @unsubscribe.autocomplete("artist")
    async def _artist_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return artist_choices(self.index, current)

    @subscribe.autocomplete("source")
    @unsubscribe.autocomplete("source")
    async def _source_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        try:
            if interaction.guild_id is None:
                return []
            text = current.strip()
            choices: list[app_commands.Choice[str]] = []
            if looks_like_url(text):  # a feed URL being typed: offer it as it is
                choices.append(app_commands.Choice(name=truncate(f"Add feed: {text}", 100), value=text[:100]))
            for source in await suggest_sources(self.bot.store, interaction.guild_id, text):
                choices.append(app_commands.Choice(name=truncate(source.name, 100), value=str(source.id)))
            return choices[:25]
        except Exception:
            log.exception("source autocomplete failed for %r", current)
            return []

    # --- helpers ------------------------------------------------------------------------------------------

    def _bot_missing_in(
        self, interaction: discord.Interaction, channel: discord.abc.GuildChannel
    ) -> list[str]:
        guild = interaction.guild
        me = guild.me if guild is not None else None
        if me is not None:
            return missing_permissions(channel.permissions_for(me))
        if interaction.channel_id == channel.id:
            # no cache: Discord tells the bot's rights in the channel the command was run in
            return missing_permissions(interaction.app_permissions)
        return []  # cannot tell; a refused post will show in /subscriptions

    def _resolve_artist(self, text: str) -> Artist:
        index = self.index
        if index is None:
            raise UserFacingError("The artist list is not loaded yet; try again in a minute.")
        text = text.strip()
        artist = index.get(text) or index.resolve(text)  # an autocomplete choice carries the id
        if artist is None:
            close = [a.label for a in index.suggest(text, limit=5)]
            hint = f" Did you mean {', '.join(f'**{escape_discord(c)}**' for c in close)}?" if close else ""
            raise UserFacingError(
                f"I don't know an artist called **{escape_discord(truncate(text, 80))}**.{hint}"
            )
        return artist

    async def _resolve_source(self, interaction: discord.Interaction, text: str, *, adding: bool) -> Source:
        assert interaction.guild_id is not None
        text = text.strip()
        source = await find_guild_source(self.bot.store, interaction.guild_id, text)
        if source is not None:
            return source  # one switched off is refused by add_subscription
        if not looks_like_url(text):
            known = await sources_for_guild(self.bot.store, interaction.guild_id)
            names = ", ".join(f"**{escape_discord(s.name)}**" for s in known)
            raise UserFacingError(
                f"I don't know a source called **{escape_discord(truncate(text, 80))}**. Pick one of {names},"
                " or give a feed URL (https://…)."
            )
        if not adding:
            raise UserFacingError("This server has no subscription with that feed URL.")
        # fetching and checking a feed can take seconds: tell Discord we are on it
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            return await self.bot.onboarding.add_feed_source(text, guild_id=interaction.guild_id)
        except SubscriptionError as exc:
            raise UserFacingError(str(exc)) from None

    def _subscription_text(self, sub: Subscription) -> str:
        artist = None
        if sub.artist_id:
            found = self.index.get(sub.artist_id) if self.index is not None else None
            artist = found.label if found is not None else sub.artist_id
        return _describe_filter(artist, sub.source_name, sub.only_trending)

    def _health_block(self, sub: Subscription) -> str:
        lines = [f"<#{sub.channel_id}>: {self._subscription_text(sub)}"]
        icon = {STATUS_OK: "🟢", STATUS_PAUSED: "⏸️"}.get(sub.status, "🟠")
        last = f"last post <t:{int(sub.last_post_at.timestamp())}:R>" if sub.last_post_at else "no post yet"
        if sub.status != STATUS_OK and sub.retry_at:
            last += f" · next try <t:{int(sub.retry_at.timestamp())}:R>"
        lines.append(f"{icon} {sub.status} · {last}")
        if sub.last_error and (sub.status != STATUS_OK or not sub.last_post_at or _error_is_recent(sub)):
            when = f" (<t:{int(sub.last_error_at.timestamp())}:R>)" if sub.last_error_at else ""
            lines.append(f"Last error{when}: {escape_discord(truncate(sub.last_error, 600))}")
        return "\n".join(lines)

    @staticmethod
    def _list_embed(blocks: list[str]) -> discord.Embed:
        return discord.Embed(description="\n\n".join(blocks), color=0x5865F2)


def _error_is_recent(sub: Subscription) -> bool:
    return bool(sub.last_error_at and sub.last_post_at and sub.last_error_at >= sub.last_post_at)


def _describe_filter(artist: str | None, source: str | None, only_trending: bool) -> str:
    what = "trending stories" if only_trending else "new stories"
    if artist:
        what += f" about **{escape_discord(artist)}**"
    if source:
        what += f" from **{escape_discord(source)}**"
    if not artist and not source:
        what = ("every trending story" if only_trending else "every new story") + " from every source"
    return what


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(Subscriptions(bot))
