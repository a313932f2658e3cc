"""/subscribe, /unsubscribe, /subscriptions: which channels get new stories, for server managers only.

Every reply is in the member's locale. What the modules below write in English (a SubscriptionError or
KeywordError they raise, the health sentences the delivery code stores) is read back into its catalog key by
`in_locale` and shown in the member's locale; a text the catalog does not know is shown as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.channel_posts import needed_permissions
from bot.discord_bot import KpopNewsBot, UserFacingError
from bot.i18n import CATALOGS, join_list, plural, reread, text
from bot.keywords import MAX_OPTION_LENGTH, KeywordError, parse_keywords
from bot.models import (
    CHANNEL_ANNOUNCEMENT,
    CHANNEL_FORUM,
    CHANNEL_TEXT,
    STATUS_OK,
    STATUS_PAUSED,
    STATUS_UNHEALTHY,
    PostOptions,
    Source,
    Subscription,
)
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
from bot.timeutil import utcnow
from cogs.common import answer, artist_choices
from cogs.translator import declared_text

if TYPE_CHECKING:
    from bot.artists import Artist, ArtistIndex

log = logging.getLogger(__name__)

LIST_EMBED_BUDGET = 5500  # /subscriptions: characters in the list embeds (Discord allows 6,000 in all)
PUBLISH_LIMIT_SHOWN = timedelta(days=1)  # /subscriptions tells of a publish limit reached this recently
KIND_KEYS = {
    CHANNEL_TEXT: "health.kind_text",
    CHANNEL_ANNOUNCEMENT: "health.kind_announcement",
    CHANNEL_FORUM: "health.kind_forum",
}
STATUS_KEYS = {STATUS_OK: "health.ok", STATUS_UNHEALTHY: "health.unhealthy", STATUS_PAUSED: "health.paused"}


def missing_permissions(
    permissions: discord.Permissions, kind: str = CHANNEL_TEXT, *, threads: bool = False
) -> list[str]:
    """What the bot lacks to post in a channel of this kind (bot.channel_posts.needed_permissions)."""
    return [
        label for attr, label in needed_permissions(kind, threads=threads) if not getattr(permissions, attr)
    ]


def channel_kind(channel: discord.abc.GuildChannel) -> str:
    """Where posts land: a forum, an announcement channel (posts published) or a text channel."""
    if isinstance(channel, discord.ForumChannel):
        return CHANNEL_FORUM
    if isinstance(channel, discord.TextChannel) and channel.is_news():
        return CHANNEL_ANNOUNCEMENT
    return CHANNEL_TEXT


# The channels /subscribe posts in: text and announcement (TextChannel) and forum (ForumChannel; Discord's
# media channels come with it and are refused by the command).
PostChannel = discord.TextChannel | discord.ForumChannel


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
        ping="A role to mention with each post (default: no one)",
        keywords="Only stories with one of these words or phrases, separated by commas",
        exclude="Skip stories with any of these words or phrases, separated by commas",
        threads="Open a discussion thread on each post (text channels only)",
    )
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    # checked at run time too: a server's Integrations settings can hand the command to anyone
    @app_commands.checks.has_permissions(manage_guild=True)
    async def subscribe(
        self,
        interaction: discord.Interaction,
        channel: PostChannel,
        artist: app_commands.Range[str, 1, 100] | None = None,
        source: app_commands.Range[str, 1, 2000] | None = None,
        only_trending: bool = False,
        ping: discord.Role | None = None,
        keywords: app_commands.Range[str, 1, MAX_OPTION_LENGTH] | None = None,
        exclude: app_commands.Range[str, 1, MAX_OPTION_LENGTH] | None = None,
        threads: bool = False,
    ) -> None:
        assert interaction.guild_id is not None
        locale = interaction.locale  # replies follow the member's language
        options = self._post_options(interaction, channel, ping, keywords, exclude, threads)
        missing = self._bot_missing_in(interaction, channel, options)
        if missing:
            names = text("list.separator", locale).join(f"**{permission_text(m, locale)}**" for m in missing)
            raise UserFacingError(
                text("subscribe.bot_missing", locale, channel=channel.mention, permissions=names)
            )
        who = self._resolve_artist(artist, locale) if artist else None
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
                options=options,
            )
        except SubscriptionError as exc:
            error = escape_discord(in_locale(str(exc), locale))
            raise UserFacingError(
                text("subscribe.cannot_subscribe", locale, channel=channel.mention, error=error)
            ) from None
        what = _describe_filter(
            locale,
            who.label if who else None,
            feed.name if feed else None,
            only_trending,
            options.keywords,
            options.exclude,
        )
        how = _describe_posting(options, locale)
        if result.created:
            key = "subscribe.created"
        elif result.changed:
            key = "subscribe.updated"
            self.bot.delivery.wake()  # stories held back by a refusal may go now
        else:
            key = "subscribe.unchanged"
        reply = text(key, locale, channel=channel.mention, what=what, how=how)
        await answer(interaction, reply, ephemeral=True)

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
        channel: PostChannel,
        artist: app_commands.Range[str, 1, 100] | None = None,
        source: app_commands.Range[str, 1, 2000] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        locale = interaction.locale
        who = self._resolve_artist(artist, locale) if artist else None
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
            what = _describe_filter(locale, who.label if who else None, feed.name if feed else None, False)
            raise UserFacingError(text("unsubscribe.nothing", locale, channel=channel.mention, what=what))
        lines = [text("unsubscribe.stopped", locale, channel=channel.mention)]
        lines += [f"• {self._subscription_text(s, locale)}" for s in removed]
        remaining = await self.bot.store.subscriptions.list(
            guild_id=interaction.guild_id, channel_id=channel.id
        )
        if remaining:
            lines.append(plural("unsubscribe.remaining", len(remaining), locale))
        await answer(interaction, "\n".join(lines), ephemeral=True)

    # --- /subscriptions -----------------------------------------------------------------------------------

    @app_commands.command(name="subscriptions", description="This server's subscriptions and their health")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    # checked at run time too: a server's Integrations settings can hand the command to anyone
    @app_commands.checks.has_permissions(manage_guild=True)
    async def subscriptions(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        locale = interaction.locale
        found = await self.bot.store.subscriptions.list(guild_id=interaction.guild_id)
        if not found:
            await answer(interaction, text("subscriptions.none", locale), ephemeral=True)
            return
        blocks = [await self._health_block(s, locale) for s in found]
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
        server = interaction.guild.name if interaction.guild else text("subscriptions.this_server", locale)
        embeds[0].title = text("subscriptions.title", locale, server=truncate(server, 200))
        content = None
        if shown < len(blocks):
            content = text("subscriptions.showing", locale, shown=shown, total=len(blocks))
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
            typed = current.strip()
            choices: list[app_commands.Choice[str]] = []
            if looks_like_url(typed):  # a feed URL being typed: offer it as it is
                name = truncate(text("subscribe.add_feed", interaction.locale, url=typed), 100)
                choices.append(app_commands.Choice(name=name, value=typed[:100]))
            for source in await suggest_sources(self.bot.store, interaction.guild_id, typed):
                choices.append(app_commands.Choice(name=truncate(source.name, 100), value=str(source.id)))
            return choices[:25]
        except Exception:
            log.exception("source autocomplete failed for %r", current)
            return []

    # --- helpers ------------------------------------------------------------------------------------------

    def _post_options(
        self,
        interaction: discord.Interaction,
        channel: PostChannel,
        ping: discord.Role | None,
        keywords: str | None,
        exclude: str | None,
        threads: bool,
    ) -> PostOptions:
        """The options of /subscribe, checked: refused with the reason an admin can act on."""
        locale = interaction.locale
        if isinstance(channel, discord.ForumChannel) and channel.is_media():
            raise UserFacingError(text("subscribe.media_channel", locale, channel=channel.mention))
        kind = channel_kind(channel)
        if threads and kind == CHANNEL_FORUM:
            raise UserFacingError(text("subscribe.threads_forum", locale, channel=channel.mention))
        if threads and kind != CHANNEL_TEXT:
            raise UserFacingError(text("subscribe.threads_text_only", locale, channel=channel.mention))
        if ping is not None:
            self._check_ping(interaction, channel, ping)
        try:
            required = parse_keywords(keywords, option="keywords")
            excluded = parse_keywords(exclude, option="exclude")
        except KeywordError as exc:
            raise UserFacingError(text("common.sentence", locale, text=in_locale(str(exc), locale))) from None
        return PostOptions(
            kind=kind,
            ping_role_id=ping.id if ping is not None else None,
            keywords=tuple(required),
            exclude=tuple(excluded),
            threads=threads,
        )

    def _check_ping(self, interaction: discord.Interaction, channel: PostChannel, role: discord.Role) -> None:
        """A role the bot may mention there: mentionable, or the bot may Mention @everyone in the channel."""
        locale = interaction.locale
        if role.is_default():
            raise UserFacingError(text("subscribe.ping_everyone", locale))
        if role.mentionable:
            return
        permissions = self._bot_permissions_in(interaction, channel)
        if permissions is not None and permissions.mention_everyone:
            return
        raise UserFacingError(
            text(
                "subscribe.ping_unmentionable",
                locale,
                role=role.mention,
                channel=channel.mention,
                permission=text("permission.mention_everyone", locale),
            )
        )

    def _bot_permissions_in(
        self, interaction: discord.Interaction, channel: discord.abc.GuildChannel
    ) -> discord.Permissions | None:
        guild = interaction.guild
        me = guild.me if guild is not None else None
        if me is not None:
            return channel.permissions_for(me)
        if interaction.channel_id == channel.id:
            # no cache: Discord tells the bot's rights in the channel the command was run in
            return interaction.app_permissions
        return None  # cannot tell; a refused post will show in /subscriptions

    def _bot_missing_in(
        self, interaction: discord.Interaction, channel: discord.abc.GuildChannel, options: PostOptions
    ) -> list[str]:
        permissions = self._bot_permissions_in(interaction, channel)
        if permissions is None:
            return []
        return missing_permissions(permissions, options.kind, threads=options.threads)

    def _resolve_artist(self, typed: str, locale: object) -> Artist:
        index = self.index
        if index is None:
            raise UserFacingError(text("common.artists_not_loaded", locale))
        typed = typed.strip()
        artist = index.get(typed) or index.resolve(typed)  # an autocomplete choice carries the id
        if artist is None:
            reply = text("common.unknown_artist", locale, name=escape_discord(truncate(typed, 80)))
            close = [f"**{escape_discord(a.label)}**" for a in index.suggest(typed, limit=5)]
            if close:
                names = text("list.separator", locale).join(close)
                reply += " " + text("common.did_you_mean", locale, names=names)
            raise UserFacingError(reply)
        return artist

    async def _resolve_source(self, interaction: discord.Interaction, typed: str, *, adding: bool) -> Source:
        assert interaction.guild_id is not None
        locale = interaction.locale
        typed = typed.strip()
        source = await find_guild_source(self.bot.store, interaction.guild_id, typed)
        if source is not None:
            return source  # one switched off is refused by add_subscription
        if not looks_like_url(typed):
            known = await sources_for_guild(self.bot.store, interaction.guild_id)
            names = text("list.separator", locale).join(f"**{escape_discord(s.name)}**" for s in known)
            name = escape_discord(truncate(typed, 80))
            raise UserFacingError(text("subscribe.unknown_source", locale, name=name, names=names))
        if not adding:
            raise UserFacingError(text("unsubscribe.no_feed_url", locale))
        # fetching and checking a feed can take seconds: tell Discord we are on it
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            return await self.bot.onboarding.add_feed_source(typed, guild_id=interaction.guild_id)
        except SubscriptionError as exc:
            raise UserFacingError(in_locale(str(exc), locale)) from None

    def _subscription_text(self, sub: Subscription, locale: object) -> str:
        artist = None
        if sub.artist_id:
            found = self.index.get(sub.artist_id) if self.index is not None else None
            artist = found.label if found is not None else sub.artist_id
        return _describe_filter(locale, artist, sub.source_name, sub.only_trending, sub.keywords, sub.exclude)

    async def _health_block(self, sub: Subscription, locale: object) -> str:
        kind = text(KIND_KEYS[sub.kind], locale) if sub.kind in KIND_KEYS else sub.kind
        what = self._subscription_text(sub, locale)
        lines = [text("health.heading", locale, channel=f"<#{sub.channel_id}>", kind=kind, what=what)]
        extras = []
        if sub.ping_role_id is not None:
            extras.append(text("health.pings", locale, role=f"<@&{sub.ping_role_id}>"))
        if sub.threads:
            extras.append(text("health.threads", locale))
        if extras:
            line = " · ".join(extras)
            lines.append(line[0].upper() + line[1:])
        icon = {STATUS_OK: "🟢", STATUS_PAUSED: "⏸️"}.get(sub.status, "🟠")
        status = text(STATUS_KEYS[sub.status], locale) if sub.status in STATUS_KEYS else sub.status
        if sub.last_post_at:
            last = text("health.last_post", locale, when=f"<t:{int(sub.last_post_at.timestamp())}:R>")
        else:
            last = text("health.no_post", locale)
        if sub.status != STATUS_OK and sub.retry_at:
            last += " · " + text("health.next_try", locale, when=f"<t:{int(sub.retry_at.timestamp())}:R>")
        lines.append(f"{icon} {status} · {last}")
        if sub.kind == CHANNEL_ANNOUNCEMENT and sub.publish_limited_at is not None:
            lines += await self._publish_limit_lines(sub, locale)
        if sub.last_error and (sub.status != STATUS_OK or not sub.last_post_at or _error_is_recent(sub)):
            error = escape_discord(truncate(in_locale(sub.last_error, locale), 600))
            if sub.last_error_at:
                when = f"<t:{int(sub.last_error_at.timestamp())}:R>"
                lines.append(text("health.last_error_when", locale, when=when, error=error))
            else:
                lines.append(text("health.last_error", locale, error=error))
        return "\n".join(lines)

    async def _publish_limit_lines(self, sub: Subscription, locale: object) -> list[str]:
        """The publish limit reached within the last day: when, and how many posts it left unpublished."""
        limited = sub.publish_limited_at
        if limited is None or utcnow() - limited > PUBLISH_LIMIT_SHOWN:
            return []
        left = await self.bot.store.deliveries.unpublished_since(sub.channel_id, limited)
        when = f"<t:{int(limited.timestamp())}:t>"
        if sub.publish_resumes_at is not None and sub.publish_resumes_at > utcnow():
            resumes = f"<t:{int(sub.publish_resumes_at.timestamp())}:R>"
            line = plural("health.publish_limited_resumes", left, locale, when=when, resumes=resumes)
        else:
            line = plural("health.publish_limited", left, locale, when=when)
        return ["📣 " + line]

    @staticmethod
    def _list_embed(blocks: list[str]) -> discord.Embed:
        return discord.Embed(description="\n\n".join(blocks), color=0x5865F2)


def _error_is_recent(sub: Subscription) -> bool:
    return bool(sub.last_error_at and sub.last_post_at and sub.last_error_at >= sub.last_post_at)


def _describe_filter(
    locale: object,
    artist: str | None,
    source: str | None,
    only_trending: bool,
    keywords: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> str:
    """What a subscription sends, as one phrase of the catalog's [filter] table."""
    which = "trending" if only_trending else "new"
    about = "_artist" if artist else ""
    origin = "_source" if source else ""
    what = text(
        f"filter.{which}{about}{origin}" if artist or source else f"filter.{which}_all",
        locale,
        artist=escape_discord(artist or ""),
        source=escape_discord(source or ""),
    )
    if keywords and exclude:
        words, excluded = _alternatives(keywords, locale), _alternatives(exclude, locale)
        return text("filter.keywords_exclude", locale, what=what, words=words, excluded=excluded)
    if keywords:
        return text("filter.keywords", locale, what=what, words=_alternatives(keywords, locale))
    if exclude:
        return text("filter.exclude", locale, what=what, words=_alternatives(exclude, locale))
    return what


def _alternatives(phrases: Sequence[str], locale: object) -> str:
    """“live” or “duet”: the phrases quoted, any of which will do."""
    quoted = [text("common.quoted", locale, text=escape_discord(phrase)) for phrase in phrases]
    return text("list.or_separator", locale).join(quoted)


def _describe_posting(options: PostOptions, locale: object) -> str:
    """How the posts land, in sentences after the subscription's description (empty for a plain channel)."""
    parts: list[str] = []
    if options.kind == CHANNEL_FORUM:
        parts.append(text("subscribe.how_forum", locale))
    elif options.kind == CHANNEL_ANNOUNCEMENT:
        parts.append(text("subscribe.how_announcement", locale))
    if options.ping_role_id is not None:
        parts.append(text("subscribe.how_ping", locale, role=f"<@&{options.ping_role_id}>"))
    if options.threads:
        parts.append(text("subscribe.how_thread", locale))
    return "".join(parts)


# --- what the modules below write in English, in the member's locale ------------------------------------------

# the catalog keys of the sentences bot/onboarding.py, bot/subscriptions.py and bot/keywords.py raise, and the
# delivery code stores on a subscription (bot/locales/en.toml says exactly what each writes)
WRITTEN_IN_ENGLISH = (*CATALOGS.keys("feed."), *CATALOGS.keys("keywords."), *CATALOGS.keys("delivery_error."))
NESTED = frozenset({"error", "todo"})  # values that are such sentences themselves
PERMISSION_KEYS = CATALOGS.keys("permission.")
# Discord's English permission names, longest first (one may hold another and a list's ", ")
PERMISSION_LABELS = sorted((text(key) for key in PERMISSION_KEYS), key=len, reverse=True)


def in_locale(english: str, locale: object) -> str:
    """A sentence a module wrote in English, in `locale` when the catalog knows it (its values too: a nested
    sentence, permission names, an option's name); anything else as it is."""
    return (
        reread(english, WRITTEN_IN_ENGLISH, locale, lambda name, value: _value_in_locale(name, value, locale))
        or english
    )


def _value_in_locale(name: str, value: str, locale: object) -> str:
    if name in NESTED:
        return in_locale(value, locale)
    if name == "permissions":
        labels = _permission_labels(value)
        return join_list([permission_text(label, locale) for label in labels], locale) if labels else value
    if name == "option":
        return declared_text(f"cmd.subscribe.{value}.name", value, locale)  # as the member's client shows it
    return value


def permission_text(label: str, locale: object) -> str:
    """A permission as Discord shows it in `locale`, from its English name (`Send Messages`); unknown: as is."""
    return reread(label, PERMISSION_KEYS, locale) or label


def _permission_labels(names: str) -> list[str] | None:
    """ "View Channel, Send Messages and Embed Links" as its permission names; None unless all are known."""
    if names in PERMISSION_LABELS:
        return [names]
    for label in PERMISSION_LABELS:
        for separator in (", ", " and "):
            if names.startswith(label + separator):
                rest = _permission_labels(names[len(label + separator) :])
                if rest is not None:
                    return [label, *rest]
    return None


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(Subscriptions(bot))
