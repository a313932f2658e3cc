"""FakeDiscord: a small Discord-compatible server for tests, on 127.0.0.1 (REST `/api/v10` + gateway websocket).

The real discord.py client talks to it over real sockets; the facts it follows are in
../shared/docs/discord-wire.md (checked against discord.py 2.7.1). It keeps Discord's rules where a bot can
break them: the limits on messages, embeds and commands answer 400 with Discord's error body, the global and
per-channel rate limits answer 429 with `Via` and `retry_after`, channel permissions answer 403, unknown
channels 404, interactions must be answered within 3 s and only once, and a repeated message `nonce` with
`enforce_nonce` returns the original message instead of a duplicate. Several bot processes may use it at once
(same token, different shards): every listener is on loopback and all state is per server, not per socket.

Quick start
-----------
    async with FakeDiscord() as server:
        guild = server.add_guild("K-pop Fans")          # owner, @everyone, the bot's member and role, #general
        news = server.add_channel(guild.id, "news")
        admin = server.member(guild.id, "admin", permissions=Permission.MANAGE_GUILD)
        # point the client at server.api_base / server.gateway_url, log in with server.token, wait until ready
        interaction = await server.invoke("about", guild_id=guild.id, channel_id=news.id, user_id=admin.id)
        reply = await interaction.reply()               # the message the user finally sees (after a defer too)
        posted = await server.wait_for_messages(news.id, 1)

Endpoints beyond plain messages and interactions (Discord's answers; errors as {"code", "message", "errors"})
-------------------------------------------------------------------------------------------------------------
| endpoint                                     | behaviour                                                   |
|----------------------------------------------|-------------------------------------------------------------|
| POST /channels/{forum}/threads               | forum post (type 15/16): `name` 1-100, `message` (content,  |
|                                              | embeds, allowed_mentions, nonce kept but not deduplicated), |
|                                              | `applied_tags` <= 5 existing tag ids, else 400 50035; a     |
|                                              | REQUIRE_TAG forum without a tag: 400 40067. Needs           |
|                                              | VIEW_CHANNEL (403 50001), SEND_MESSAGES = "Create Posts"    |
|                                              | (+ EMBED_LINKS for embeds; 403 50013). 201: a thread (type  |
|                                              | 11) whose id is its first message's, with `message`;        |
|                                              | THREAD_CREATE is dispatched.                                |
| POST /channels/{text}/threads                | a thread without a message (`type` 11/12, 10 in announce-   |
|                                              | ment channels); CREATE_PUBLIC/PRIVATE_THREADS.              |
| POST /channels/{id}/messages/{msg}/threads   | a thread on a message (text/announcement only, else 400     |
|                                              | 50024): `name` <= 100, `auto_archive_duration` in 60, 1440, |
|                                              | 4320, 10080; CREATE_PUBLIC_THREADS; once per message (400   |
|                                              | 160004). The thread takes the message's id; the message     |
|                                              | gets `thread` and flag HAS_THREAD.                          |
| POST, PATCH /channels/{thread}/messages…     | threads have their own message list (a forum post's first   |
|                                              | message is in it); posting needs SEND_MESSAGES_IN_THREADS,  |
|                                              | permissions come from the parent channel.                   |
| POST /channels/{forum}/messages              | 400 40058 (a forum takes posts).                            |
| POST /channels/{id}/messages/{msg}/crosspost | publish: announcement channels only (400 50024), once (400  |
|                                              | 40033), own message SEND_MESSAGES, others' MANAGE_MESSAGES; |
|                                              | `publish_limit` (10 per hour) per channel, hidden until its |
|                                              | 429: `retry_after` ~3600, Via, X-RateLimit-* (own bucket).  |
|                                              | discord.py sleeps through that unless max_ratelimit_timeout |
|                                              | is lower (then it raises discord.RateLimited).              |
| any message create (channel, thread, DM,     | mentions in `content`: `<@user>`, `<@&role>`, @everyone,    |
| forum post, interaction reply/followup)      | @here under allowed_mentions (absent: all parsed). A role   |
|                                              | pings if mentionable or the bot has MENTION_EVERYONE in the |
|                                              | channel; @everyone/@here only with MENTION_EVERYONE. Fills  |
|                                              | `mentions`, `mention_roles` (roles pinged),                 |
|                                              | `mention_everyone`; each mention is recorded in `mentions`. |
|                                              | allowed_mentions is validated (parse values; "roles" in     |
|                                              | parse and a `roles` list are exclusive).                    |
| POST /users/@me/channels                     | `recipient_id` -> the DM channel (type 1), the same each    |
|                                              | time; unknown user 400 50033. A send to a user who closed   |
|                                              | DMs, shares no server with the bot, or is a bot: 403 50007. |
| PUT …/commands                               | `name_localizations` / `description_localizations` on       |
|                                              | commands, options, choices: keys are Discord locales, values|
|                                              | follow the rule of what they translate (names 1-32 lower-   |
|                                              | case, Discord's regex; descriptions 1-100); else 400 50035. |
|                                              | Echoed back and kept in `commands`.                         |
| GET /gateway/bot                             | `url`, `shards` (= recommended_shards), session_start_limit |
|                                              | (total 1000, remaining, reset_after, max_concurrency).      |
| gateway IDENTIFY `shard: [id, count]`        | bad shard closes 4010; more than `guilds_per_shard` guilds  |
|                                              | on the shard 4011. A guild's events (GUILD_CREATE,          |
|                                              | INTERACTION_CREATE, CHANNEL_*, THREAD_*…) go only to the    |
|                                              | sessions of shard (guild_id >> 22) % count; events without  |
|                                              | a guild (DMs) to shard 0. READY carries `shard`.            |
|                                              | Two IDENTIFYs of one bucket (shard id % max_concurrency)    |
|                                              | within 5 s count `stats.identify_too_soon` (Discord refuses |
|                                              | the session); `identify_times` [(unix time, shard id)].     |
| every request with the bot token             | the global ledger: at most `global_limit` (50) in any one   |
| (interaction callbacks and followups exempt) | second per token, all connections and processes together;   |
|                                              | past it 429 `global: true`, X-RateLimit-Global. A route's   |
|                                              | X-RateLimit headers come on its error answers too.          |

Test API (all on `FakeDiscord`)
-------------------------------
Life cycle: `await start()` / `await close()` or `async with FakeDiscord(...)`. Properties `api_base`
("http://127.0.0.1:PORT/api/v10"), `gateway_url` ("ws://127.0.0.1:PORT/gateway"), `token`, `application_id`,
`bot_user_id`. Constructor knobs (attributes too): `global_limit` (requests in any one second per token, None =
count only), `channel_message_limit` ((count, seconds) per channel for POST messages and POST threads, None =
off), `publish_limit` ((10, 3600.0) crossposts per channel), `interaction_deadline` (3.0 s; None = off),
`nonce_window` (300 s), `heartbeat_interval` (seconds), `privileged_intents_allowed`, `recommended_shards` (1),
`max_concurrency` (1), `guilds_per_shard` (2500).

World (synchronous; changes made while a bot is connected are dispatched to it as Discord would):
  `add_guild(name, shard=(id, count), preferred_locale="en-US", ...) -> FakeGuild` (`shard`: an id whose events
  go to that shard; `guild.shard(count)`, `shard_for(guild_id, count)`), `remove_guild(guild_id)` (the bot was
  removed: GUILD_DELETE), `add_channel(guild_id, name, type=ChannelType.TEXT, bot_can_view/send/embed=...,
  tags=("News", ("Comeback", "🔥")), require_tag=False) -> FakeChannel` (tags and require_tag for forums;
  `channel.tag_id("News")`), `remove_channel(channel_id)` (threads too), `add_role(guild_id, name,
  permissions=0, mentionable=False)`, `update_role(guild_id, role_id, permissions=, mentionable=)`,
  `set_channel_overwrite(channel_id, target_id, allow=0, deny=0)` (a role or member; the bot is
  `bot_user_id`, its role `guild.bot_role_id`, @everyone `guild.everyone_role_id`; 0/0 removes it),
  `set_bot_channel_permissions(channel_id, view=, send=, embed=)` (the common case),
  `add_user(name, locale="en-US", dms_open=True)`, `member(guild_id, name, roles=(), permissions=None,
  locale=None) -> FakeMember` (permissions: a role with them is made; `member.user.dms_open = False` closes
  their DMs), `permissions_for(guild_id, user_id, channel_id=None) -> int`. `Permission`, `ChannelType`,
  `ChannelFlag`, `MessageFlag` hold the numbers.

What the bot did:
  `messages(channel_id)` the messages the bot created in a channel, thread or DM (POST messages, a forum
  post's first message; current state, edits applied; interaction replies are not in it), `message(id)`,
  `create_payload(message_id)` (the JSON the bot sent), `threads(channel_id)` (threads/posts made there),
  `direct_messages(user_id)`, `dm_channels`, `mentions` (`Mention(message_id, channel_id, kind "user"/"role"/
  "everyone"/"here", target_id, allowed, pinged)`: assert `not any(m.pinged for m in server.mentions)`),
  `await wait_for_messages(channel_id, count, timeout=5)`, `requests` (every REST request:
  `RecordedRequest(method, path, route, json, status, headers)`), `commands` / `guild_commands[guild_id]` (the
  synced definitions, with ids and localizations), `command_syncs` (the bodies of each PUT),
  `identify_payloads` (with `shard`), `ledger` (`GlobalLedger`: `per_second[token]` {unix second: requests},
  `peak(token)`, `refused[token]`), `stats` (`Stats`: requests by route, responses by status, `ratelimited`
  = 429s the bot caused itself (global + route; a bench asserts 0), injected faults, invalid requests,
  syncs, identifies, resumes, nonce replays, late interaction answers, role_pings, everyone_pings,
  publishes), and `await wait_for(predicate, timeout=5, what="...")` for anything else.

Interactions (the command must have been synced; option types come from its definition):
  `await invoke(name, options, *, guild_id, channel_id, user_id, permissions=None, locale=None,
  guild_locale=None, respect_default_permissions=True, focused=None) -> Interaction` (defaults: first guild,
  its first text channel, its owner; `locale` the user's, `guild_locale` the server's preferred_locale;
  "group sub" for subcommands; channel/user/role options take ids and get `resolved` data;
  a user lacking the command's default_member_permissions raises InvocationRefused unless
  respect_default_permissions=False, which models admins granting the command to everyone);
  `await autocomplete(name, options, focused="artist", ...) -> list[choice dicts]` (focused=... on invoke gives
  the Interaction instead); `await click(message, custom_id, *, user_id=None) -> Interaction` (a button, type 3;
  @original is then the message clicked). `interactions()` lists them all. An interaction goes to the session
  of its guild's shard (RuntimeError when no session is on it).
  `Interaction`: `await response()` (the callback body), `await reply()` (the message the user sees: the type 4
  message, or after a defer the first edit of @original or followup), `await wait_for_followups(n)`,
  `await wait_for_edits(n)`, attributes `callback`, `original`, `followups`, `edits`, `ephemeral`, `payload`.

Gateway: `await reconnect()` (op 7; waits for the resume), `await invalidate_session(resumable)` (op 9; waits for
  the resume or the new IDENTIFY, which discord.py delays 5 s), `await drop_connections(code=4000)` (server
  closes the socket; the client resumes), `dispatch(event_name, data)` (any event, e.g. "GUILD_DELETE", to the
  shard of its guild; events sent while a session is between sockets are replayed on RESUME),
  `await wait_for_ready_session(shard=None)`, `live_sessions()` (each with `.shard` and `.events`),
  `connection_count`, `gateway_paths` ("/gateway", then "/gateway/resume" on resumes).
  Note: discord.py 2.7.1 closes with code 4000 even on `Client.close()`, so its sessions stay resumable here
  as on Discord; only a 1000/1001 close ends a session. Sharded discord.py clients (AutoShardedClient) sleep
  5 s before each IDENTIFY but the first: override `before_identify_hook` in tests.

Faults: `inject(method="POST", path=r"/channels/123/messages", status=502, times=1, body=None, retry_after=1.0,
  via=True, is_global=False, delay=0.0, after=False) -> Injection` (path: a regex matched in full against the
  path after /api/v10; `after=True` lets the request succeed (e.g. the message is stored) and then answers the
  fault, which is how a reply gets lost; `status=None` with `delay` only slows the request),
  `clear_injections()`.
"""

# ruff: noqa: ASYNC109  # the test API takes `timeout=` arguments on purpose: tests read better with them

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
_JSON_BODY: web.RequestKey[Any] = web.RequestKey("json_body", object)  # the parsed body (middleware)
# a route's X-RateLimit headers: Discord takes from the bucket before handling, so errors carry them too
_RATE_LIMIT_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("rate_limit_headers", dict)
DISCORD_EPOCH_MS = 1420070400000
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
INTERACTION_TOKEN_LIFETIME = 15 * 60.0
GATEWAY_EVENT_BUFFER = 2000  # events kept per session for replay on RESUME


class Permission:
    """Discord permission bits (the ones tests talk about)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 51) - 1

    EVERYONE_DEFAULT = (
        CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
        | CHANGE_NICKNAME
        | USE_APPLICATION_COMMANDS
        | CREATE_PUBLIC_THREADS
        | CREATE_PRIVATE_THREADS
        | SEND_MESSAGES_IN_THREADS
    )
    BOT_DEFAULT = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY | ADD_REACTIONS


class ChannelType:
    TEXT = 0
    DM = 1
    VOICE = 2
    CATEGORY = 4
    ANNOUNCEMENT = 5
    ANNOUNCEMENT_THREAD = 10
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    FORUM = 15
    MEDIA = 16
    THREADS = (ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD)
    FORUMS = (FORUM, MEDIA)
    MESSAGEABLE = (TEXT, DM, VOICE, ANNOUNCEMENT, *THREADS)  # POST /channels/{id}/messages works in these


class ChannelFlag:
    REQUIRE_TAG = 1 << 4  # a forum whose posts must carry a tag


class MessageFlag:
    CROSSPOSTED = 1 << 0  # published from an announcement channel
    HAS_THREAD = 1 << 5
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7  # an interaction deferred: "thinking…"


# Discord's locales (interaction `locale`, command `*_localizations` keys)
DISCORD_LOCALES = frozenset(
    "id da de en-GB en-US es-ES es-419 fr hr it lt hu nl no pl pt-BR ro fi sv-SE vi tr cs el bg ru uk hi th "
    "zh-CN ja zh-TW ko".split()
)
THREAD_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)  # minutes


def _check_locale(locale: str) -> None:
    if locale not in DISCORD_LOCALES:
        raise ValueError(f"{locale!r} is not a Discord locale (one of {sorted(DISCORD_LOCALES)})")


class GatewayIntent:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1  # privileged
    GUILD_PRESENCES = 1 << 8  # privileged
    MESSAGE_CONTENT = 1 << 15  # privileged
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


# --- the world ---------------------------------------------------------------------------------------------


@dataclass
class FakeUser:
    id: int
    username: str
    bot: bool = False
    locale: str = "en-US"  # the language of their Discord client: an interaction's `locale`
    dms_open: bool = True  # False: "Allow direct messages from server members" is off

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": None if self.bot else self.username,
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class FakeRole:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    mentionable: bool = False  # "Allow anyone to @mention this role"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }


@dataclass
class FakeMember:
    user: FakeUser
    guild_id: int
    roles: list[int] = field(default_factory=list)
    joined_at: str = ""

    @property
    def id(self) -> int:
        return self.user.id

    def to_json(self, *, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.user.to_json(),
            "roles": [str(r) for r in self.roles],
            "nick": None,
            "avatar": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass
class FakeChannel:
    """A server's channel (text, voice, announcement, forum, ...) or thread (types 10-12, `parent_id` set)."""

    id: int
    guild_id: int
    name: str
    type: int = ChannelType.TEXT
    position: int = 0
    topic: str | None = None
    # target id -> (type 0 role / 1 member, allow, deny)
    overwrites: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    parent_id: int | None = None  # a thread's channel (a category's, for others)
    flags: int = 0  # ChannelFlag bits
    # a forum's tags, as Discord sends them: {"id", "name", "moderated", "emoji_id", "emoji_name"}
    available_tags: list[dict[str, Any]] = field(default_factory=list)
    # threads only
    owner_id: int = 0
    applied_tags: list[int] = field(default_factory=list)
    auto_archive_duration: int = 1440
    created_at: str = ""
    message_count: int = 0  # messages sent in the thread after its first

    def tag_id(self, name: str) -> int:
        """The id of the forum tag with this name (test convenience)."""
        for tag in self.available_tags:
            if tag["name"] == name:
                return int(tag["id"])
        raise KeyError(f"channel {self.name!r} has no tag {name!r}")

    def to_json(self, *, with_guild: bool = True) -> dict[str, Any]:
        if self.type in ChannelType.THREADS:
            return self._thread_json()
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "permission_overwrites": [
                {"id": str(target), "type": kind, "allow": str(allow), "deny": str(deny)}
                for target, (kind, allow, deny) in self.overwrites.items()
            ],
            "flags": self.flags,
        }
        if self.type in (ChannelType.TEXT, ChannelType.ANNOUNCEMENT, *ChannelType.FORUMS):
            data.update(
                {"topic": self.topic, "nsfw": False, "rate_limit_per_user": 0, "last_message_id": None}
            )
        if self.type in ChannelType.FORUMS:
            data.update(
                {
                    "available_tags": self.available_tags,
                    "default_reaction_emoji": None,
                    "default_sort_order": None,
                    "default_forum_layout": 0,
                    "default_thread_rate_limit_per_user": 0,
                    "default_auto_archive_duration": 1440,
                }
            )
        if self.type == ChannelType.VOICE:
            data.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None, "nsfw": False})
        if with_guild:
            data["guild_id"] = str(self.guild_id)
        return data

    def _thread_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "parent_id": str(self.parent_id),
            "owner_id": str(self.owner_id),
            "name": self.name,
            "last_message_id": None,
            "message_count": self.message_count,
            "total_message_sent": self.message_count,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": self.flags,
            "applied_tags": [str(t) for t in self.applied_tags],
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": self.created_at,
                "locked": False,
                "create_timestamp": self.created_at,
            },
        }


@dataclass
class FakeDMChannel:
    """The bot's direct-message channel with one user (type 1)."""

    id: int
    recipient: FakeUser
    type: int = ChannelType.DM
    guild_id: None = None  # a DM belongs to no server

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "last_message_id": None,
            "recipients": [self.recipient.to_json()],
            "flags": 0,
        }


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    threads: dict[int, FakeChannel] = field(default_factory=dict)  # active threads and forum posts
    members: dict[int, FakeMember] = field(default_factory=dict)
    bot_role_id: int = 0
    joined_at: str = ""
    bot_present: bool = True  # False once the bot was removed from the server
    preferred_locale: str = "en-US"  # Community servers' "primary language": an interaction's `guild_locale`

    @property
    def everyone_role_id(self) -> int:
        return self.id  # Discord's @everyone role shares the guild's id

    def channel(self, name: str) -> FakeChannel:
        """The channel with this name (test convenience)."""
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise KeyError(f"guild {self.name!r} has no channel named {name!r}")

    @property
    def text_channels(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.type in (ChannelType.TEXT, ChannelType.ANNOUNCEMENT)]

    def shard(self, shard_count: int) -> int:
        """The shard that receives this server's events: (id >> 22) % shard_count."""
        return shard_for(self.id, shard_count)


def shard_for(guild_id: int | None, shard_count: int) -> int:
    """Discord's routing: a server's events go to shard (guild_id >> 22) % shard_count; DMs to shard 0."""
    return 0 if guild_id is None else (int(guild_id) >> 22) % shard_count


# --- records -----------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One REST request as the server saw it and answered it."""

    method: str
    path: str  # after /api/v10, with the query string
    route: str  # "POST /channels/{channel_id}/messages"
    json: Any
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # request headers, Authorization removed
    at: float = 0.0  # time.monotonic()


@dataclass
class Stats:
    """Counters a test or benchmark reads after the run."""

    requests: Counter[str] = field(default_factory=Counter)  # route -> count
    responses: Counter[int] = field(default_factory=Counter)  # status -> count
    ratelimited: int = 0  # 429s the server's own limits caused (the bot went too fast)
    global_ratelimited: int = 0
    route_ratelimited: int = 0
    injected: Counter[int] = field(default_factory=Counter)  # status -> count of injected faults answered
    invalid_requests: int = 0  # 401, 403 and 429 answers (Discord bans an IP at 10,000 per 10 minutes)
    command_syncs: int = 0  # PUT of global or guild commands
    gateway_connections: int = 0
    identifies: int = 0
    identify_too_soon: int = 0  # IDENTIFYs less than 5 s after the last one of their bucket
    resumes: int = 0
    failed_resumes: int = 0
    heartbeats: int = 0
    nonce_replays: int = 0  # POSTs answered with the original message because of nonce + enforce_nonce
    late_interaction_callbacks: int = 0  # callbacks after the deadline (answered 404 Unknown interaction)
    role_pings: int = 0  # role mentions that notified the role's members
    everyone_pings: int = 0  # @everyone / @here mentions that notified everyone (a bot should have 0)
    publishes: int = 0  # announcement messages crossposted to following servers


@dataclass
class Mention:
    """A mention in the content of a message the bot created, and what Discord made of it."""

    message_id: int
    channel_id: int
    kind: str  # "user", "role", "everyone" or "here"
    target_id: int | None  # the user or role (None for everyone/here)
    allowed: bool  # the message's allowed_mentions let Discord parse it
    pinged: bool  # someone was notified (a role: mentionable, or the bot may MENTION_EVERYONE in the channel)


@dataclass
class Injection:
    """A fault the server answers to the next `times` requests matching `method` and `path`."""

    method: str
    path: re.Pattern[str]
    status: int | None
    times: int | None
    body: Any = None
    retry_after: float = 1.0
    via: bool = True
    is_global: bool = False
    delay: float = 0.0
    after: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method == "*" or self.method == method) and self.path.fullmatch(path) is not None


class DiscordHTTPError(Exception):
    """An answer in Discord's error format: {"code", "message", "errors"?}."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        data.update(self.extra)
        return data


def missing_permissions() -> DiscordHTTPError:
    return DiscordHTTPError(403, 50013, "Missing Permissions")


def missing_access() -> DiscordHTTPError:
    return DiscordHTTPError(403, 50001, "Missing Access")


def unknown_channel() -> DiscordHTTPError:
    return DiscordHTTPError(404, 10003, "Unknown Channel")


# --- Discord's limits --------------------------------------------------------------------------------------


class FormErrors:
    """Collects errors in Discord's nested "Invalid Form Body" shape (code 50035)."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Iterable[Any], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def __bool__(self) -> bool:
        return bool(self.tree)

    def raise_if_any(self) -> None:
        if self.tree:
            raise DiscordHTTPError(400, 50035, "Invalid Form Body", self.tree)


def text_length(value: str) -> int:
    """Characters as Discord's limits are counted here: UTF-16 code units (an emoji outside the BMP is 2), the
    stricter of the two ways a client may count, so text accepted here is accepted by Discord."""
    return len(value) + sum(1 for ch in value if ord(ch) > 0xFFFF)


def _check_length(
    errors: FormErrors, path: list[Any], value: Any, maximum: int, *, minimum: int = 0, required: bool = False
) -> None:
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    if not isinstance(value, str):
        errors.add(path, "BASE_TYPE_STRING", "Could not interpret value as string.")
        return
    if minimum and text_length(value) < minimum:
        errors.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {minimum} and {maximum} in length.")
    elif text_length(value) > maximum:
        if minimum:
            errors.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {minimum} and {maximum} in length.")
        else:
            errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {maximum} or fewer in length.")


def _check_url(errors: FormErrors, path: list[Any], value: Any, *, attachments: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > 2048:
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        return
    parts = urlsplit(value)
    allowed = ("http", "https", "attachment") if attachments else ("http", "https")
    if parts.scheme not in allowed:
        errors.add(
            path,
            "URL_TYPE_INVALID_SCHEME",
            f'Scheme "{parts.scheme}" is not supported. Scheme must be one of {allowed}.',
        )
    elif parts.scheme != "attachment" and not parts.netloc:
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")


def validate_embed(embed: Any, errors: FormErrors, path: list[Any]) -> int:
    """Checks one embed against Discord's limits; returns the characters it counts toward 6000."""
    if not isinstance(embed, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return 0
    size = 0
    for key, maximum in (("title", 256), ("description", 4096)):
        value = embed.get(key)
        _check_length(errors, [*path, key], value, maximum)
        size += text_length(value) if isinstance(value, str) else 0
    _check_url(errors, [*path, "url"], embed.get("url"))
    color = embed.get("color")
    if color is not None and (
        not isinstance(color, int) or isinstance(color, bool) or not 0 <= color <= 0xFFFFFF
    ):
        errors.add([*path, "color"], "NUMBER_TYPE_MAX", "int value should be less than or equal to 16777215.")
    timestamp = embed.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp))
        except ValueError:
            errors.add(
                [*path, "timestamp"], "DATE_TYPE_PARSE", f"Could not parse {timestamp}. Should be ISO8601."
            )
    for key in ("image", "thumbnail"):
        media = embed.get(key)
        if media is not None:
            if not isinstance(media, dict):
                errors.add([*path, key], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            else:
                _check_url(errors, [*path, key, "url"], media.get("url"), attachments=True)
    footer = embed.get("footer")
    if isinstance(footer, dict):
        text = footer.get("text")
        _check_length(errors, [*path, "footer", "text"], text, 2048, required=True)
        size += text_length(text) if isinstance(text, str) else 0
        _check_url(errors, [*path, "footer", "icon_url"], footer.get("icon_url"), attachments=True)
    author = embed.get("author")
    if isinstance(author, dict):
        name = author.get("name")
        _check_length(errors, [*path, "author", "name"], name, 256, required=True)
        size += text_length(name) if isinstance(name, str) else 0
        _check_url(errors, [*path, "author", "url"], author.get("url"))
        _check_url(errors, [*path, "author", "icon_url"], author.get("icon_url"), attachments=True)
    fields = embed.get("fields")
    if fields is not None:
        if not isinstance(fields, list):
            errors.add([*path, "fields"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        else:
            if len(fields) > 25:
                errors.add([*path, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for i, item in enumerate(fields):
                where = [*path, "fields", i]
                if not isinstance(item, dict):
                    errors.add(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
                    continue
                name, value = item.get("name"), item.get("value")
                _check_length(errors, [*where, "name"], name, 256, required=True)
                _check_length(errors, [*where, "value"], value, 1024, required=True)
                for text in (name, value):
                    size += text_length(text) if isinstance(text, str) else 0
    return size


def validate_components(components: Any, errors: FormErrors, path: list[Any]) -> None:
    if components is None:
        return
    if not isinstance(components, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return
    if len(components) > 5:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    for i, row in enumerate(components):
        children = row.get("components", []) if isinstance(row, dict) else []
        if len(children) > 5:
            errors.add([*path, i, "components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for j, child in enumerate(children):
            where = [*path, i, "components", j]
            if not isinstance(child, dict):
                continue
            if child.get("type") == 2 and child.get("style") != 5:
                _check_length(
                    errors, [*where, "custom_id"], child.get("custom_id"), 100, minimum=1, required=True
                )
            if child.get("label") is not None:
                _check_length(errors, [*where, "label"], child.get("label"), 80)


def message_form_errors(payload: dict[str, Any], errors: FormErrors, path: list[Any]) -> None:
    """Adds the errors of a message body (create or edit) found at `path` ([] or ["message"] in a forum post)."""
    content = payload.get("content")
    _check_length(errors, [*path, "content"], content, 2000)
    embeds = payload.get("embeds")
    total = 0
    if embeds is not None:
        if not isinstance(embeds, list):
            errors.add([*path, "embeds"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        else:
            if len(embeds) > 10:
                errors.add([*path, "embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
            for i, embed in enumerate(embeds):
                total += validate_embed(embed, errors, [*path, "embeds", i])
            if total > 6000:
                errors.add(
                    [*path, "embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
                )
    nonce = payload.get("nonce")
    if nonce is not None:
        if isinstance(nonce, bool) or not isinstance(nonce, str | int):
            errors.add([*path, "nonce"], "BASE_TYPE_STRING", "Could not interpret value as string.")
        elif len(str(nonce)) > 25:
            errors.add([*path, "nonce"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    validate_components(payload.get("components"), errors, [*path, "components"])
    validate_allowed_mentions(payload.get("allowed_mentions"), errors, [*path, "allowed_mentions"])


def _check_not_empty(payload: dict[str, Any]) -> None:
    has_body = (
        bool(payload.get("content"))
        or bool(payload.get("embeds"))
        or bool(payload.get("components"))
        or bool(payload.get("sticker_ids"))
    )
    if not has_body and not payload.get("attachments") and not payload.get("poll"):
        raise DiscordHTTPError(400, 50006, "Cannot send an empty message")


def validate_message(payload: Any, *, allow_empty: bool = False, is_edit: bool = False) -> None:
    """Raises DiscordHTTPError (400) where a message create/edit body breaks Discord's rules."""
    if not isinstance(payload, dict):
        raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.")
    errors = FormErrors()
    message_form_errors(payload, errors, [])
    errors.raise_if_any()
    if not allow_empty and not is_edit:
        _check_not_empty(payload)


MENTION_KINDS = ("roles", "users", "everyone")


def validate_allowed_mentions(value: Any, errors: FormErrors, path: list[Any]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    parse = value.get("parse") or []
    if not isinstance(parse, list):
        errors.add([*path, "parse"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        parse = []
    for i, kind in enumerate(parse):
        if kind not in MENTION_KINDS:
            errors.add([*path, "parse", i], "ENUM_TYPE_COERCE", f'Value "{kind}" is not a valid enum value.')
    for key in ("roles", "users"):
        ids = value.get(key)
        if ids is None:
            continue
        if not isinstance(ids, list):
            errors.add([*path, key], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            continue
        if len(ids) > 100:
            errors.add([*path, key], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        for i, snowflake in enumerate(ids):
            if not str(snowflake).isdigit():
                errors.add([*path, key, i], "NUMBER_TYPE_COERCE", f'Value "{snowflake}" is not snowflake.')
        if ids and key in parse:
            errors.add(
                path,
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{key}"] and {key}: [ids] are mutually exclusive.',
            )


_MENTION = re.compile(r"(?<!\\)(?:<@(?P<kind>[!&]?)(?P<id>\d{1,20})>|@(?P<group>everyone|here))")


def mentions_in(content: str) -> list[tuple[str, int | None]]:
    """The mentions Discord would parse in message content, once each, in order: ("user", id), ("role", id),
    ("everyone", None), ("here", None). A backslash before one defuses it; code blocks are not looked at
    (stricter than Discord's client: a mention there counts)."""
    found: list[tuple[str, int | None]] = []
    for match in _MENTION.finditer(content):
        if match["group"]:
            mention: tuple[str, int | None] = (match["group"], None)
        else:
            mention = ("role" if match["kind"] == "&" else "user", int(match["id"]))
        if mention not in found:
            found.append(mention)
    return found


def allowed_mention_sets(allowed_mentions: Any) -> tuple[set[str], set[int], set[int]]:
    """(parse kinds, role ids, user ids) that allowed_mentions lets Discord parse; absent, everything is."""
    if not isinstance(allowed_mentions, dict):
        return set(MENTION_KINDS), set(), set()
    return (
        set(allowed_mentions.get("parse") or ()),
        {int(r) for r in allowed_mentions.get("roles") or ()},
        {int(u) for u in allowed_mentions.get("users") or ()},
    )


def validate_thread(payload: Any, *, forum: bool) -> None:
    """Raises DiscordHTTPError (400) where a thread create body (a forum post when `forum`) breaks the rules;
    whether its tags exist is the forum's question (see FakeDiscord._post_thread)."""
    if not isinstance(payload, dict):
        raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.")
    errors = FormErrors()
    _check_length(errors, ["name"], payload.get("name"), 100, minimum=1, required=True)
    duration = payload.get("auto_archive_duration")
    if duration is not None and (isinstance(duration, bool) or duration not in THREAD_ARCHIVE_DURATIONS):
        errors.add(
            ["auto_archive_duration"],
            "BASE_TYPE_CHOICES",
            f"Value must be one of {set(THREAD_ARCHIVE_DURATIONS)}.",
        )
    message = payload.get("message")
    if forum:
        if not isinstance(message, dict):
            errors.add(["message"], "BASE_TYPE_REQUIRED", "This field is required")
        else:
            message_form_errors(message, errors, ["message"])
        tags = payload.get("applied_tags")
        if tags is not None and not isinstance(tags, list):
            errors.add(["applied_tags"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        elif tags is not None and len(tags) > 5:
            errors.add(["applied_tags"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    errors.raise_if_any()
    if forum and isinstance(message, dict):
        _check_not_empty(message)


def validate_choices(choices: Any, errors: FormErrors, path: list[Any]) -> None:
    if not isinstance(choices, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return
    if len(choices) > 25:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            errors.add([*path, i], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        _check_length(errors, [*path, i, "name"], choice.get("name"), 100, minimum=1, required=True)
        _check_localizations(errors, [*path, i, "name_localizations"], choice.get("name_localizations"))
        value = choice.get("value")
        if value is None:
            errors.add([*path, i, "value"], "BASE_TYPE_REQUIRED", "This field is required")
        elif isinstance(value, str):
            _check_length(errors, [*path, i, "value"], value, 100)


def _valid_command_name(name: str, *, chat_input: bool) -> bool:
    # Discord's rule for chat-input names: ^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$, and a letter with a
    # lowercase form must be lowercase (Korean, Japanese, ... have none); Deva/Thai vowel signs are not isalnum()
    if not 1 <= len(name) <= 32:
        return False
    if chat_input and name != name.lower():
        return False
    return all(
        ch.isalnum()
        or ch in "-_'"
        or "\u0900" <= ch <= "\u097f"
        or "\u0e00" <= ch <= "\u0e7f"
        or (not chat_input and ch == " ")
        for ch in name
    )


def _check_localizations(
    errors: FormErrors, path: list[Any], value: Any, *, command_name: bool = False, chat_input: bool = True
) -> None:
    """`*_localizations`: keys are Discord locales; a value follows the rule of what it translates, a command
    or option name when `command_name`, else a description or choice name (1-100 characters)."""
    if value is None:
        return
    if not isinstance(value, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    for locale, text in value.items():
        where = [*path, locale]
        if locale not in DISCORD_LOCALES:
            errors.add(where, "ENUM_TYPE_COERCE", f'Value "{locale}" is not a valid enum value.')
        elif not command_name:
            _check_length(errors, where, text, 100, minimum=1, required=True)
        elif not isinstance(text, str) or not _valid_command_name(text, chat_input=chat_input):
            errors.add(where, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _validate_options(options: Any, errors: FormErrors, path: list[Any], *, depth: int) -> int:
    """Checks command options; returns the characters they count toward the 4000 per command."""
    if options is None:
        return 0
    if not isinstance(options, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return 0
    if len(options) > 25:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    size = 0
    seen: set[str] = set()
    optional_seen = False
    for i, option in enumerate(options):
        where = [*path, i]
        if not isinstance(option, dict):
            errors.add(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        kind = option.get("type")
        if kind not in range(1, 12):
            errors.add([*where, "type"], "BASE_TYPE_CHOICES", f"Value must be one of {set(range(1, 12))}.")
        name = option.get("name")
        if not isinstance(name, str) or not _valid_command_name(name, chat_input=True):
            errors.add([*where, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        elif name in seen:
            errors.add(
                [*where, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        else:
            seen.add(name)
        description = option.get("description")
        _check_length(errors, [*where, "description"], description, 100, minimum=1, required=True)
        _check_localizations(
            errors, [*where, "name_localizations"], option.get("name_localizations"), command_name=True
        )
        _check_localizations(
            errors, [*where, "description_localizations"], option.get("description_localizations")
        )
        size += len(name or "") + len(description or "")
        if kind in (1, 2):
            if depth >= 2 or (kind == 2 and depth >= 1):
                errors.add(
                    [*where, "type"], "APPLICATION_COMMAND_OPTION_TYPE_INVALID", "Subcommands nest too deep"
                )
            size += _validate_options(option.get("options"), errors, [*where, "options"], depth=depth + 1)
            continue
        if option.get("required"):
            if optional_seen:
                errors.add(
                    [*where, "required"],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        choices = option.get("choices")
        if choices:
            if option.get("autocomplete"):
                errors.add(
                    [*where, "autocomplete"],
                    "APPLICATION_COMMAND_AUTOCOMPLETE_WITH_CHOICES",
                    "Autocomplete cannot be enabled on options with choices",
                )
            validate_choices(choices, errors, [*where, "choices"])
            size += sum(
                len(str(c.get("name", ""))) + len(str(c.get("value", "")))
                for c in choices
                if isinstance(c, dict)
            )
    return size


def validate_commands(commands: Any) -> None:
    """Raises DiscordHTTPError (400) where a bulk-overwrite body breaks Discord's command rules."""
    if not isinstance(commands, list):
        raise DiscordHTTPError(
            400,
            50035,
            "Invalid Form Body",
            {
                "_errors": [
                    {"code": "LIST_TYPE_CONVERT", "message": "Only iterables may be used in a ListType"}
                ]
            },
        )
    errors = FormErrors()
    if sum(1 for c in commands if isinstance(c, dict) and c.get("type", 1) == 1) > 100:
        errors.add(
            [], "APPLICATION_COMMANDS_TOO_MANY", "Maximum number of application commands reached (100)"
        )
    names: set[tuple[int, str]] = set()
    for i, command in enumerate(commands):
        if not isinstance(command, dict):
            errors.add([i], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        kind = command.get("type", 1)
        name = command.get("name")
        if not isinstance(name, str) or not _valid_command_name(name, chat_input=kind == 1):
            errors.add([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        elif (kind, name) in names:
            errors.add(
                [i, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {name}",
            )
        else:
            names.add((kind, name))
        description = command.get("description")
        _check_localizations(
            errors,
            [i, "name_localizations"],
            command.get("name_localizations"),
            command_name=True,
            chat_input=kind == 1,
        )
        if kind == 1:
            _check_length(errors, [i, "description"], description, 100, minimum=1, required=True)
            _check_localizations(
                errors, [i, "description_localizations"], command.get("description_localizations")
            )
        size = len(name or "") + len(description or "")
        size += _validate_options(command.get("options"), errors, [i, "options"], depth=0)
        if size > 4000:
            errors.add([i], "APPLICATION_COMMAND_TOO_LARGE", "Command exceeds maximum size (4000)")
    errors.raise_if_any()


# --- rate limits -------------------------------------------------------------------------------------------


class GlobalLedger:
    """Discord's global limit as a ledger: every request of a bot token, from all its connections and processes,
    counted per second; a request finding `limit` others in the last second is refused (429, global).
    Interaction callbacks and followups are not counted (Discord exempts them)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit  # requests per second per token; None counts without refusing
        # token -> time.monotonic() of its requests in the last second
        self._recent: dict[str, deque[float]] = {}
        # token -> {unix second: requests let through}
        self.per_second: dict[str, Counter[int]] = {}
        # token -> requests answered 429 global (the bot went too fast)
        self.refused: Counter[str] = Counter()

    def take(self, token: str) -> float:
        """0.0 when the request may go (it is counted), else the seconds until it may."""
        now = time.monotonic()
        recent = self._recent.setdefault(token, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if self.limit is not None and len(recent) >= self.limit:
            self.refused[token] += 1
            return max(recent[0] + 1.0 - now, 0.001)
        recent.append(now)
        self.per_second.setdefault(token, Counter())[int(time.time())] += 1
        return 0.0

    def peak(self, token: str) -> int:
        """The most requests let through in any wall-clock second."""
        return max(self.per_second.get(token, Counter()).values(), default=0)


@dataclass
class _Window:
    """A per-route, per-major-parameter bucket as Discord reports it: `limit` per `per` seconds."""

    limit: int
    per: float
    remaining: int = 0
    reset_at: float = 0.0

    def take(self) -> tuple[bool, float]:
        now = time.monotonic()
        if now >= self.reset_at:
            self.remaining = self.limit
            self.reset_at = now + self.per
        if self.remaining <= 0:
            return False, self.reset_at - now
        self.remaining -= 1
        return True, self.reset_at - now


# --- interactions ------------------------------------------------------------------------------------------


class Interaction:
    """An interaction the test started; follow what the bot answered."""

    def __init__(self, server: FakeDiscord, payload: dict[str, Any], deadline: float | None) -> None:
        self._server = server
        self.payload = payload  # the INTERACTION_CREATE `d` as dispatched
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        self.channel_id = int(payload["channel"]["id"])
        self.user_id = int(payload["member"]["user"]["id"])
        self.created = time.monotonic()
        self.deadline = deadline
        self.callback: dict[str, Any] | None = None  # the body of POST /interactions/{id}/{token}/callback
        self.callback_at: float | None = None
        self.original: dict[str, Any] | None = None  # the message the callback made (type 4/5) or updated (7)
        self.followups: list[dict[str, Any]] = []  # messages made by POST /webhooks/{app}/{token}
        self.edits: list[dict[str, Any]] = []  # bodies of PATCH /webhooks/{app}/{token}/messages/@original
        self.late = False  # the bot answered after the deadline

    @property
    def name(self) -> str:
        return str(self.payload.get("data", {}).get("name") or self.payload.get("data", {}).get("custom_id"))

    @property
    def ephemeral(self) -> bool:
        message = self.original or (self.followups[0] if self.followups else None)
        return bool(message and int(message.get("flags", 0)) & MessageFlag.EPHEMERAL)

    @property
    def answered(self) -> bool:
        return self.callback is not None

    def _describe(self) -> str:
        return (
            f"interaction {self.name!r} (type {self.type}): callback={self.callback['type'] if self.callback else 'none'}, "
            f"{len(self.edits)} edit(s), {len(self.followups)} followup(s)"
        )

    async def response(self, timeout: float = 5.0) -> dict[str, Any]:
        """The callback body ({"type", "data"}) once the bot answered."""
        await self._server.wait_for(
            lambda: self.callback is not None, timeout, what=f"an answer to {self._describe()}"
        )
        assert self.callback is not None
        return self.callback

    async def reply(self, timeout: float = 5.0) -> dict[str, Any]:
        """The message the user finally sees: the type 4/7 message, or after a defer the edited original or
        first followup. For an autocomplete, the callback data ({"choices": [...]})."""
        callback = await self.response(timeout)
        kind = callback.get("type")
        if kind in (4, 7):
            assert self.original is not None
            return self.original
        if kind == 8:
            return callback.get("data") or {}
        await self._server.wait_for(
            lambda: self.edits or self.followups,
            timeout,
            what=f"a message after the defer of {self._describe()}",
        )
        if self.edits and self.original is not None:
            return self.original
        return self.followups[0]

    async def wait_for_followups(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self._server.wait_for(
            lambda: len(self.followups) >= count, timeout, what=f"{count} followup(s) to {self._describe()}"
        )
        return list(self.followups)

    async def wait_for_edits(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self._server.wait_for(
            lambda: len(self.edits) >= count, timeout, what=f"{count} edit(s) of {self._describe()}"
        )
        return list(self.edits)


class InvocationRefused(Exception):
    """Discord itself would not let this user run the command (its default_member_permissions)."""


# --- gateway -----------------------------------------------------------------------------------------------


class _Connection:
    """One websocket; frames go out through a queue so events keep their order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.session: _Session | None = None
        self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while True:
            frame = await self.queue.get()
            if frame is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    def send(self, payload: dict[str, Any]) -> None:
        self.queue.put_nowait(json.dumps(payload, separators=(",", ":")))

    async def close(self, code: int, message: str = "") -> None:
        self.queue.put_nowait(None)
        await asyncio.wait(
            [self.writer], timeout=2.0
        )  # never raises the writer's own end (it may be cancelled)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message.encode())


@dataclass
class _Session:
    id: str
    intents: int
    shard: tuple[int, int] = (0, 1)  # (shard_id, shard_count) from IDENTIFY
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    connection: _Connection | None = None
    alive: bool = True  # False once invalidated or closed cleanly by the client


# --- the server --------------------------------------------------------------------------------------------


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    # exactly "application/json": discord.py compares the header verbatim (no "; charset=utf-8")
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat()


class FakeDiscord:
    """See the module docstring for the whole test API."""

    def __init__(
        self,
        *,
        token: str | None = None,
        application_id: int | None = None,
        bot_name: str = "KpopNews",
        global_limit: float | None = 50.0,
        channel_message_limit: tuple[int, float] | None = (5, 5.0),
        interaction_deadline: float | None = 3.0,
        nonce_window: float = 300.0,
        heartbeat_interval: float = 41.25,
        privileged_intents_allowed: bool = False,
        publish_limit: tuple[int, float] | None = (10, 3600.0),
        recommended_shards: int = 1,
        max_concurrency: int = 1,
        guilds_per_shard: int = 2500,
    ) -> None:
        self._last_id = 0
        self.application_id = application_id or self.snowflake()
        self.bot_user = FakeUser(self.application_id, bot_name, bot=True)
        self.token = token or f"{self.application_id}.FAKE.{secrets.token_urlsafe(24)}"
        self.ledger = GlobalLedger(global_limit)
        self.channel_message_limit = channel_message_limit
        self.publish_limit = publish_limit  # crossposts per announcement channel: (count, seconds)
        self.recommended_shards = recommended_shards  # GET /gateway/bot "shards"
        self.max_concurrency = max_concurrency  # GET /gateway/bot session_start_limit.max_concurrency
        self.guilds_per_shard = guilds_per_shard  # more guilds on one shard: IDENTIFY closes 4011
        self.interaction_deadline = interaction_deadline
        self.nonce_window = nonce_window
        self.heartbeat_interval = heartbeat_interval
        self.privileged_intents_allowed = privileged_intents_allowed

        self.guilds: dict[int, FakeGuild] = {}
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user}
        self.commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.command_syncs: list[Any] = []
        self.identify_payloads: list[dict[str, Any]] = []
        self.identify_times: list[tuple[float, int]] = []  # (unix time, shard id) of each IDENTIFY
        self.gateway_paths: list[
            str
        ] = []  # the path of each gateway connection ("/gateway/resume" on RESUME)
        self.requests: list[RecordedRequest] = []
        self.stats = Stats()
        self.injections: list[Injection] = []
        self.mentions: list[Mention] = []  # every mention in the content of a message the bot created
        self.dm_channels: dict[int, FakeDMChannel] = {}  # channel id -> the bot's DM with a user

        self._messages: dict[int, dict[str, Any]] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._create_payloads: dict[int, Any] = {}
        self._nonces: dict[tuple[int, str], tuple[float, int]] = {}
        self._interactions: dict[int, Interaction] = {}
        self._interactions_by_token: dict[str, Interaction] = {}
        self._message_interaction: dict[int, Interaction] = {}  # message id -> interaction that made it
        self._command_ids: dict[tuple[int | None, int, str], int] = {}
        self._windows: dict[tuple[str, int], _Window] = {}
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- life cycle -------------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware], client_max_size=25 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/resume", self._gateway)
        r = app.router
        p = API_PREFIX
        r.add_get(p + "/gateway", self._get_gateway)
        r.add_get(p + "/gateway/bot", self._get_gateway_bot)
        r.add_get(p + "/users/@me", self._get_me)
        r.add_get(p + "/users/{user_id}", self._get_user)
        r.add_post(p + "/users/@me/channels", self._open_dm)
        r.add_delete(p + "/users/@me/guilds/{guild_id}", self._leave_guild)
        r.add_get(p + "/oauth2/applications/@me", self._get_application)
        r.add_get(p + "/applications/@me", self._get_application)
        r.add_get(p + "/applications/{application_id}/commands", self._get_commands)
        r.add_put(p + "/applications/{application_id}/commands", self._put_commands)
        r.add_get(p + "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands)
        r.add_put(p + "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands)
        r.add_get(p + "/guilds/{guild_id}", self._get_guild)
        r.add_get(p + "/guilds/{guild_id}/channels", self._get_guild_channels)
        r.add_get(p + "/guilds/{guild_id}/roles", self._get_guild_roles)
        r.add_get(p + "/guilds/{guild_id}/members/{user_id}", self._get_guild_member)
        r.add_get(p + "/channels/{channel_id}", self._get_channel)
        r.add_get(p + "/channels/{channel_id}/messages", self._get_channel_messages)
        r.add_post(p + "/channels/{channel_id}/messages", self._post_message)
        r.add_get(p + "/channels/{channel_id}/messages/{message_id}", self._get_message)
        r.add_patch(p + "/channels/{channel_id}/messages/{message_id}", self._patch_message)
        r.add_delete(p + "/channels/{channel_id}/messages/{message_id}", self._delete_message)
        r.add_post(p + "/channels/{channel_id}/threads", self._post_thread)
        r.add_post(p + "/channels/{channel_id}/messages/{message_id}/threads", self._post_message_thread)
        r.add_post(p + "/channels/{channel_id}/messages/{message_id}/crosspost", self._crosspost)
        r.add_post(p + "/channels/{channel_id}/typing", self._typing)
        r.add_post(p + "/interactions/{interaction_id}/{token}/callback", self._interaction_callback)
        r.add_post(p + "/webhooks/{application_id}/{token}", self._post_followup)
        r.add_get(p + "/webhooks/{application_id}/{token}/messages/{message_id}", self._get_webhook_message)
        r.add_patch(
            p + "/webhooks/{application_id}/{token}/messages/{message_id}", self._patch_webhook_message
        )
        r.add_delete(
            p + "/webhooks/{application_id}/{token}/messages/{message_id}", self._delete_webhook_message
        )
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        for connection in list(self._connections):
            await connection.close(1001, "server going away")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def global_limit(self) -> float | None:
        """Requests per second per bot token (at most this many in any one second); None = no global limit."""
        return self.ledger.limit

    @global_limit.setter
    def global_limit(self, value: float | None) -> None:
        self.ledger.limit = value

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def bot_user_id(self) -> int:
        return self.bot_user.id

    # --- helpers ----------------------------------------------------------------------------------------

    def snowflake(self, *, shard: tuple[int, int] | None = None) -> int:
        """A new id, increasing, with the creation time in it as Discord's are. With `shard=(id, count)` a guild
        id whose events go to that shard (its timestamp moved up to `count` ms ahead until it lands there)."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22 | (1 << 17)
        self._last_id = max(candidate, self._last_id + 1)
        if shard is not None:
            shard_id, shard_count = shard
            if not 0 <= shard_id < shard_count:
                raise ValueError(f"shard {shard_id} does not exist among {shard_count}")
            millis = (self._last_id >> 22) + 1
            millis += (shard_id - millis) % shard_count
            self._last_id = millis << 22 | (1 << 17)
        return self._last_id

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, *, what: str = "a condition"
    ) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every change the server records)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = end - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"FakeDiscord: waited {timeout:.1f} s for {what}")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                # wake at least every 0.1 s so time-based predicates are re-checked too
                await asyncio.wait_for(changed.wait(), min(remaining, 0.1))

    # --- the world --------------------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        user_id: int | None = None,
        bot: bool = False,
        locale: str = "en-US",
        dms_open: bool = True,
    ) -> FakeUser:
        """A Discord user. `user.dms_open = False` later closes their DMs (sends answer 403, code 50007)."""
        _check_locale(locale)
        user = FakeUser(user_id or self.snowflake(), name, bot=bot, locale=locale, dms_open=dms_open)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "K-pop Fans",
        *,
        guild_id: int | None = None,
        shard: tuple[int, int] | None = None,
        channels: Iterable[str] = ("general",),
        bot_permissions: int = Permission.BOT_DEFAULT,
        everyone_permissions: int = Permission.EVERYONE_DEFAULT,
        owner_name: str = "owner",
        preferred_locale: str = "en-US",
    ) -> FakeGuild:
        """A server with the bot in it: @everyone, the bot's managed role, an owner (all permissions as owner)
        and text channels. `shard=(id, count)` picks an id whose events go to that shard. Dispatched as
        GUILD_CREATE (a join) when a bot is connected."""
        _check_locale(preferred_locale)
        guild_id = guild_id or self.snowflake(shard=shard)
        owner = self.add_user(owner_name)
        guild = FakeGuild(guild_id, name, owner.id, joined_at=_iso(), preferred_locale=preferred_locale)
        guild.roles[guild_id] = FakeRole(guild_id, guild_id, "@everyone", everyone_permissions, 0)
        bot_role = FakeRole(
            self.snowflake(), guild_id, self.bot_user.username, bot_permissions, 1, managed=True
        )
        guild.roles[bot_role.id] = bot_role
        guild.bot_role_id = bot_role.id
        guild.members[self.bot_user.id] = FakeMember(self.bot_user, guild_id, [bot_role.id], _iso())
        guild.members[owner.id] = FakeMember(owner, guild_id, [], _iso())
        self.guilds[guild_id] = guild
        for channel_name in channels:
            self._new_channel(guild, channel_name)
        if self.live_sessions():
            self.dispatch("GUILD_CREATE", self._guild_create_payload(guild, None))
        self._notify()
        return guild

    def remove_guild(self, guild_id: int) -> None:
        """The bot was removed from the server: GUILD_DELETE, then its channels answer 403 Missing Access."""
        guild = self._guild(guild_id)
        guild.bot_present = False
        self.dispatch("GUILD_DELETE", {"id": str(guild_id)})

    def _new_channel(
        self, guild: FakeGuild, name: str, *, channel_id: int | None = None, type: int = ChannelType.TEXT
    ) -> FakeChannel:
        channel = FakeChannel(
            channel_id or self.snowflake(), guild.id, name, type, position=len(guild.channels)
        )
        guild.channels[channel.id] = channel
        self._channel_messages.setdefault(channel.id, [])
        return channel

    def add_channel(
        self,
        guild_id: int,
        name: str,
        *,
        channel_id: int | None = None,
        type: int = ChannelType.TEXT,
        bot_can_view: bool = True,
        bot_can_send: bool = True,
        bot_can_embed: bool = True,
        tags: Iterable[str | tuple[str, str]] = (),
        require_tag: bool = False,
    ) -> FakeChannel:
        """A channel; `bot_can_*=False` adds a member overwrite denying the bot that permission. A forum
        (type=ChannelType.FORUM) takes `tags` (names, or (name, emoji) pairs; at most 20) and `require_tag`
        (flag REQUIRE_TAG: a post without a tag answers 400, code 40067)."""
        guild = self._guild(guild_id)
        tags = list(tags)
        if (tags or require_tag) and type not in ChannelType.FORUMS:
            raise ValueError("only forum and media channels have tags")
        if len(tags) > 20:
            raise ValueError(f"Discord allows 20 tags on a forum, not {len(tags)}")
        channel = self._new_channel(guild, name, channel_id=channel_id, type=type)
        for tag in tags:
            tag_name, emoji = (tag, None) if isinstance(tag, str) else tag
            channel.available_tags.append(
                {
                    "id": str(self.snowflake()),
                    "name": tag_name,
                    "moderated": False,
                    "emoji_id": None,
                    "emoji_name": emoji,
                }
            )
        channel.flags |= ChannelFlag.REQUIRE_TAG if require_tag else 0
        self._set_bot_overwrite(channel, bot_can_view, bot_can_send, bot_can_embed)
        if self.live_sessions():
            self.dispatch("CHANNEL_CREATE", channel.to_json())
        return channel

    def _set_bot_overwrite(self, channel: FakeChannel, view: bool, send: bool, embed: bool) -> None:
        deny = (0 if view else Permission.VIEW_CHANNEL) | (0 if send else Permission.SEND_MESSAGES)
        deny |= 0 if embed else Permission.EMBED_LINKS
        self._write_overwrite(channel, self.bot_user.id, 0, deny)

    def _write_overwrite(self, channel: FakeChannel, target_id: int, allow: int, deny: int) -> None:
        if not allow and not deny:
            channel.overwrites.pop(target_id, None)
            return
        kind = 0 if target_id in self.guilds[channel.guild_id].roles else 1
        channel.overwrites[target_id] = (kind, allow, deny)

    def set_bot_channel_permissions(
        self, channel_id: int, *, view: bool = True, send: bool = True, embed: bool = True
    ) -> None:
        """Change what the bot may do in a channel (CHANNEL_UPDATE is dispatched)."""
        channel = self._channel(channel_id)
        self._set_bot_overwrite(channel, view, send, embed)
        self.dispatch("CHANNEL_UPDATE", channel.to_json())

    def set_channel_overwrite(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0
    ) -> None:
        """A channel's permission overwrite for a role or member (e.g. `server.bot_user_id`, `guild.bot_role_id`,
        `guild.everyone_role_id`); allow=deny=0 removes it. Threads follow their parent. CHANNEL_UPDATE."""
        channel = self._channel(channel_id)
        if channel.type in ChannelType.THREADS:
            raise ValueError("threads have no overwrites of their own: set them on the parent channel")
        self._write_overwrite(channel, int(target_id), allow, deny)
        self.dispatch("CHANNEL_UPDATE", channel.to_json())

    def remove_channel(self, channel_id: int) -> None:
        """The channel (or thread) is deleted (CHANNEL_DELETE / THREAD_DELETE); posting to it answers 404."""
        channel = self._channel(channel_id)
        guild = self.guilds[channel.guild_id]
        if channel.type in ChannelType.THREADS:
            del guild.threads[channel.id]
            self.dispatch(
                "THREAD_DELETE",
                {
                    "id": str(channel.id),
                    "guild_id": str(guild.id),
                    "parent_id": str(channel.parent_id),
                    "type": channel.type,
                },
            )
            return
        del guild.channels[channel.id]
        self.dispatch("CHANNEL_DELETE", channel.to_json())

    def add_role(
        self, guild_id: int, name: str, permissions: int = 0, *, mentionable: bool = False
    ) -> FakeRole:
        guild = self._guild(guild_id)
        role = FakeRole(
            self.snowflake(), guild_id, name, permissions, position=len(guild.roles), mentionable=mentionable
        )
        guild.roles[role.id] = role
        if self.live_sessions():
            self.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": role.to_json()})
        return role

    def update_role(
        self, guild_id: int, role_id: int, *, permissions: int | None = None, mentionable: bool | None = None
    ) -> FakeRole:
        """Change a role (the bot's is `guild.bot_role_id`, @everyone's `guild.everyone_role_id`):
        GUILD_ROLE_UPDATE is dispatched."""
        guild = self._guild(guild_id)
        role = guild.roles[int(role_id)]
        if permissions is not None:
            role.permissions = permissions
        if mentionable is not None:
            role.mentionable = mentionable
        if self.live_sessions():
            self.dispatch("GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": role.to_json()})
        return role

    def member(
        self,
        guild_id: int,
        name: str = "member",
        *,
        user_id: int | None = None,
        roles: Iterable[int] = (),
        permissions: int | None = None,
        locale: str | None = None,
    ) -> FakeMember:
        """A member of the server (made if new). `permissions` gives them a role with exactly those bits;
        `locale` is their Discord client's language (an interaction's `locale`)."""
        guild = self._guild(guild_id)
        if user_id is not None and user_id in guild.members:
            member = guild.members[user_id]
        else:
            user = self.users.get(user_id) if user_id else None
            user = user or self.add_user(name, user_id=user_id)
            member = FakeMember(user, guild_id, [], _iso())
            guild.members[user.id] = member
        if locale is not None:
            _check_locale(locale)
            member.user.locale = locale
        member.roles.extend(int(r) for r in roles if int(r) not in member.roles)
        if permissions is not None:
            role = self.add_role(guild_id, f"{name} role", permissions)
            member.roles.append(role.id)
        return member

    def permissions_for(self, guild_id: int, user_id: int, channel_id: int | None = None) -> int:
        """Discord's permission computation: owner and Administrator get all; channel overwrites apply."""
        guild = self._guild(guild_id)
        member = guild.members.get(user_id)
        if user_id == guild.owner_id:
            return Permission.ALL
        role_ids = member.roles if member else []
        base = guild.roles[guild.everyone_role_id].permissions
        for role_id in role_ids:
            if role_id in guild.roles:
                base |= guild.roles[role_id].permissions
        if base & Permission.ADMINISTRATOR:
            return Permission.ALL
        if channel_id is None:
            return base
        thread = guild.threads.get(int(channel_id))
        channel = guild.channels.get(thread.parent_id if thread and thread.parent_id else int(channel_id))
        if channel is None:
            return base
        perms = base
        if guild.id in channel.overwrites:
            _, allow, deny = channel.overwrites[guild.id]
            perms = (perms & ~deny) | allow
        allow_roles = deny_roles = 0
        for role_id in role_ids:
            if role_id in channel.overwrites:
                _, allow, deny = channel.overwrites[role_id]
                allow_roles |= allow
                deny_roles |= deny
        perms = (perms & ~deny_roles) | allow_roles
        if user_id in channel.overwrites:
            _, allow, deny = channel.overwrites[user_id]
            perms = (perms & ~deny) | allow
        if not perms & Permission.VIEW_CHANNEL:
            return 0
        return perms

    def _guild(self, guild_id: int) -> FakeGuild:
        try:
            return self.guilds[int(guild_id)]
        except KeyError:
            raise KeyError(f"FakeDiscord has no guild {guild_id}; make it with add_guild()") from None

    def _channel(self, channel_id: int) -> FakeChannel:
        """A server's channel or thread."""
        for guild in self.guilds.values():
            found = guild.channels.get(int(channel_id)) or guild.threads.get(int(channel_id))
            if found is not None:
                return found
        raise KeyError(f"FakeDiscord has no channel {channel_id}; make it with add_channel()")

    def _find_channel(self, channel_id: int) -> FakeChannel | None:
        try:
            return self._channel(channel_id)
        except KeyError:
            return None

    # --- what the bot did -------------------------------------------------------------------------------

    def messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages the bot created in the channel, thread or DM (POST /channels/{id}/messages, a forum post's
        first message), oldest first, edits applied."""
        return [
            self._messages[m] for m in self._channel_messages.get(int(channel_id), []) if m in self._messages
        ]

    def message(self, message_id: int) -> dict[str, Any]:
        return self._messages[int(message_id)]

    def direct_messages(self, user_id: int) -> list[dict[str, Any]]:
        """Messages the bot sent to this user in their DM channel, oldest first."""
        return [
            m
            for dm in self.dm_channels.values()
            if dm.recipient.id == int(user_id)
            for m in self.messages(dm.id)
        ]

    def threads(self, channel_id: int) -> list[FakeChannel]:
        """The threads (forum posts) made in this channel, oldest first; `messages(thread.id)` holds theirs."""
        channel = self._channel(channel_id)
        return [t for t in self.guilds[channel.guild_id].threads.values() if t.parent_id == channel.id]

    def create_payload(self, message_id: int) -> Any:
        """The JSON body the bot sent to create this message (allowed_mentions, nonce, ...)."""
        return self._create_payloads[int(message_id)]

    async def wait_for_messages(
        self, channel_id: int, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait until the channel holds at least `count` posted messages; returns them all."""
        await self.wait_for(
            lambda: len(self.messages(channel_id)) >= count,
            timeout,
            what=f"{count} message(s) in channel {channel_id} (has {len(self.messages(channel_id))})",
        )
        return self.messages(channel_id)

    def interactions(self) -> list[Interaction]:
        return list(self._interactions.values())

    # --- faults -----------------------------------------------------------------------------------------

    def inject(
        self,
        method: str = "POST",
        path: str = r"/channels/\d+/messages",
        status: int | None = 500,
        *,
        times: int | None = 1,
        body: Any = None,
        retry_after: float = 1.0,
        via: bool = True,
        is_global: bool = False,
        delay: float = 0.0,
        after: bool = False,
    ) -> Injection:
        """Answer the next `times` matching requests (None: all) with `status`; see the module docstring."""
        injection = Injection(
            method.upper(), re.compile(path), status, times, body, retry_after, via, is_global, delay, after
        )
        self.injections.append(injection)
        return injection

    def clear_injections(self) -> None:
        self.injections.clear()

    def _fault_response(self, injection: Injection) -> web.Response:
        status = injection.status
        assert status is not None
        self.stats.injected[status] += 1
        headers: dict[str, str] = {}
        if status == 429:
            body = injection.body or {
                "message": "You are being rate limited.",
                "retry_after": injection.retry_after,
                "global": injection.is_global,
            }
            headers["Retry-After"] = str(math.ceil(injection.retry_after))
            if injection.is_global:
                headers["X-RateLimit-Global"] = "true"
                headers["X-RateLimit-Scope"] = "global"
            if injection.via:
                headers["Via"] = "1.1 google"
        else:
            defaults: dict[int, Any] = {
                400: {"message": "Invalid Form Body", "code": 50035, "errors": {}},
                401: {"message": "401: Unauthorized", "code": 0},
                403: {"message": "Missing Permissions", "code": 50013},
                404: {"message": "Unknown Channel", "code": 10003},
                500: {"message": "500: Internal Server Error", "code": 0},
                503: {"message": "upstream connect error or disconnect/reset before headers", "code": 0},
            }
            body = injection.body if injection.body is not None else defaults.get(status)
            if body is None:  # 502/504 come from Cloudflare as HTML
                return web.Response(
                    status=status,
                    text=f"<html><body>{status} Bad Gateway</body></html>",
                    content_type="text/html",
                )
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/plain", headers=headers)
        return _json_response(status, body, headers)

    # --- REST plumbing ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        path = request.path[len(API_PREFIX) :]
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else path
        route = f"{request.method} {canonical[len(API_PREFIX) :] if canonical.startswith(API_PREFIX) else canonical}"
        raw = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = RecordedRequest(
            request.method, request.path_qs[len(API_PREFIX) :], route, None, 0, headers, time.monotonic()
        )
        self.requests.append(record)
        self.stats.requests[route] += 1
        response = await self._answer(request, handler, path, raw, record)
        record.status = response.status
        self.stats.responses[response.status] += 1
        if response.status in (401, 403, 429):
            self.stats.invalid_requests += 1
        self._notify()
        return response

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
        path: str,
        raw: bytes,
        record: RecordedRequest,
    ) -> web.StreamResponse:
        try:
            if raw:
                if request.content_type == "application/json":
                    try:
                        record.json = json.loads(raw)
                    except ValueError:
                        raise DiscordHTTPError(
                            400, 50109, "The request body contains invalid JSON."
                        ) from None
                elif request.content_type == "multipart/form-data":
                    record.json = self._payload_json_from_multipart(raw, request)
                else:
                    raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.")
            request[_JSON_BODY] = record.json
            interaction_route = path.startswith(("/interactions/", "/webhooks/"))
            if not interaction_route:
                auth = request.headers.get("Authorization")
                if auth != f"Bot {self.token}":
                    raise DiscordHTTPError(401, 0, "401: Unauthorized")
            injection = next((i for i in self.injections if i.matches(request.method, path)), None)
            if injection is not None:
                injection.hits += 1
                if injection.delay:
                    if not injection.after:
                        await asyncio.sleep(injection.delay)
                if injection.status is not None and not injection.after:
                    return self._fault_response(injection)
            if not interaction_route:
                wait = self.ledger.take(self.token)
                if wait:
                    self.stats.ratelimited += 1
                    self.stats.global_ratelimited += 1
                    return _json_response(
                        429,
                        {
                            "message": "You are being rate limited.",
                            "retry_after": round(wait, 3),
                            "global": True,
                        },
                        {
                            "Retry-After": str(math.ceil(wait)),
                            "X-RateLimit-Global": "true",
                            "X-RateLimit-Scope": "global",
                            "Via": "1.1 google",
                        },
                    )
            response = await handler(request)
            response.headers.update(request.get(_RATE_LIMIT_HEADERS, {}))
            if injection is not None and injection.after:
                if injection.delay:
                    await asyncio.sleep(injection.delay)
                if injection.status is not None:
                    return self._fault_response(injection)
            return response
        except DiscordHTTPError as exc:
            headers = {**request.get(_RATE_LIMIT_HEADERS, {}), **exc.headers}
            return _json_response(exc.status, exc.body(), headers)
        except web.HTTPException as exc:
            if exc.status == 404:
                return _json_response(404, {"message": "404: Not Found", "code": 0})
            if exc.status == 405:
                return _json_response(405, {"message": "405: Method Not Allowed", "code": 0})
            raise

    @staticmethod
    def _payload_json_from_multipart(raw: bytes, request: web.Request) -> Any:
        # files are not kept; the JSON part is what matters to the tests
        match = re.search(rb'name="payload_json"\r\n(?:[^\r\n]+\r\n)*\r\n(.*?)\r\n--', raw, re.S)
        if not match:
            raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.")
        try:
            return json.loads(match.group(1))
        except ValueError:
            raise DiscordHTTPError(400, 50109, "The request body contains invalid JSON.") from None

    def _rate_limit(
        self,
        request: web.Request,
        route: str,
        major: str | int,
        limit: tuple[int, float] | None,
        *,
        hidden: bool = False,
    ) -> None:
        """Takes one request from the bucket of the route and its major parameter (a channel id): the answer,
        error or not, carries the X-RateLimit headers; or raises 429. A `hidden` limit (Discord's hourly
        publish limit) shows only in its 429: other answers carry no headers, so a client cannot see it coming."""
        if limit is None:
            return
        key = (route, int(major) if str(major).isdigit() else 0)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(limit[0], limit[1])
        allowed, reset_after = window.take()
        bucket = hashlib.sha1(route.encode()).hexdigest()[:16]
        headers = {
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }
        if not allowed:
            self.stats.ratelimited += 1
            self.stats.route_ratelimited += 1
            headers.update(
                {"Retry-After": str(math.ceil(reset_after)), "X-RateLimit-Scope": "user", "Via": "1.1 google"}
            )
            raise DiscordHTTPError(
                429,
                0,
                "You are being rate limited.",
                headers=headers,
                extra={"retry_after": round(reset_after, 3), "global": False},
            )
        if not hidden:
            request[_RATE_LIMIT_HEADERS] = headers

    # --- REST: users, application, commands -------------------------------------------------------------

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json_response(200, {"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        total = 1000
        return _json_response(
            200,
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": total,
                    "remaining": max(0, total - self.stats.identifies),
                    "reset_after": 86_400_000,  # milliseconds
                    "max_concurrency": self.max_concurrency,
                },
            },
        )

    async def _get_me(self, request: web.Request) -> web.Response:
        data = self.bot_user.to_json()
        data.update({"verified": True, "mfa_enabled": False, "flags": 0, "email": None, "locale": "en-US"})
        return _json_response(200, data)

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise DiscordHTTPError(404, 10013, "Unknown User")
        return _json_response(200, user.to_json())

    async def _leave_guild(self, request: web.Request) -> web.Response:
        guild = self.guilds.get(int(request.match_info["guild_id"]))
        if guild is None or not guild.bot_present:
            raise DiscordHTTPError(404, 10004, "Unknown Guild")
        self.remove_guild(guild.id)
        return web.Response(status=204)

    async def _get_application(self, request: web.Request) -> web.Response:
        owner = FakeUser(1, "operator")
        return _json_response(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_user.username,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner.to_json(),
                "verify_key": "0" * 64,
                "team": None,
                "flags": 0,
                "summary": "",
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "bot": self.bot_user.to_json(),
            },
        )

    def _check_application(self, request: web.Request) -> None:
        if int(request.match_info["application_id"]) != self.application_id:
            raise DiscordHTTPError(403, 50001, "Missing Access")

    async def _get_commands(self, request: web.Request) -> web.Response:
        self._check_application(request)
        guild_id = request.match_info.get("guild_id")
        commands = self.guild_commands.get(int(guild_id), []) if guild_id else self.commands
        return _json_response(200, commands)

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._check_application(request)
        guild_id = int(request.match_info["guild_id"]) if "guild_id" in request.match_info else None
        if guild_id is not None and (guild_id not in self.guilds or not self.guilds[guild_id].bot_present):
            raise missing_access()
        payload = request[_JSON_BODY]
        validate_commands(payload)
        self.stats.command_syncs += 1
        self.command_syncs.append(payload)
        echoed: list[dict[str, Any]] = []
        for command in payload:
            kind = command.get("type", 1)
            key = (guild_id, kind, command["name"])
            command_id = self._command_ids.get(key) or self.snowflake()
            self._command_ids[key] = command_id  # Discord keeps a command's id across overwrites by name
            data: dict[str, Any] = {
                "id": str(command_id),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": kind,
                "name": command["name"],
                "name_localizations": command.get("name_localizations"),
                "description": command.get("description", ""),
                "description_localizations": command.get("description_localizations"),
                "options": command.get("options", []),
                "default_member_permissions": command.get("default_member_permissions"),
                "dm_permission": command.get("dm_permission", True),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types", [0]),
                "nsfw": command.get("nsfw", False),
            }
            if guild_id is not None:
                data["guild_id"] = str(guild_id)
            echoed.append(data)
        if guild_id is None:
            self.commands = echoed
        else:
            self.guild_commands[guild_id] = echoed
        return _json_response(200, echoed)

    # --- REST: guilds and channels ----------------------------------------------------------------------

    def _visible_guild(self, guild_id: str) -> FakeGuild:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise DiscordHTTPError(404, 10004, "Unknown Guild")
        if not guild.bot_present:
            raise missing_access()
        return guild

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild = self._visible_guild(request.match_info["guild_id"])
        data = self._guild_payload(guild)
        return _json_response(200, data)

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self._visible_guild(request.match_info["guild_id"])
        return _json_response(200, [c.to_json() for c in guild.channels.values()])

    async def _get_guild_roles(self, request: web.Request) -> web.Response:
        guild = self._visible_guild(request.match_info["guild_id"])
        return _json_response(200, [r.to_json() for r in guild.roles.values()])

    async def _get_guild_member(self, request: web.Request) -> web.Response:
        guild = self._visible_guild(request.match_info["guild_id"])
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise DiscordHTTPError(404, 10007, "Unknown Member")
        return _json_response(200, member.to_json())

    def _readable_channel(self, channel_id: str) -> FakeChannel | FakeDMChannel:
        """The channel, thread or DM, or Discord's error: 404 Unknown Channel, 403 Missing Access."""
        try:
            cid = int(channel_id)
        except ValueError:
            raise DiscordHTTPError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "channel_id": {
                        "_errors": [
                            {
                                "code": "NUMBER_TYPE_COERCE",
                                "message": f'Value "{channel_id}" is not snowflake.',
                            }
                        ]
                    }
                },
            ) from None
        if cid in self.dm_channels:
            return self.dm_channels[cid]
        channel = self._find_channel(cid)
        if channel is None:
            raise unknown_channel()
        guild = self.guilds[channel.guild_id]
        if not guild.bot_present:
            raise missing_access()
        if not self.permissions_for(guild.id, self.bot_user.id, channel.id) & Permission.VIEW_CHANNEL:
            raise missing_access()
        return channel

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self._readable_channel(request.match_info["channel_id"])
        return _json_response(200, channel.to_json())

    async def _typing(self, request: web.Request) -> web.Response:
        self._readable_channel(request.match_info["channel_id"])
        return web.Response(status=204)

    # --- REST: messages ---------------------------------------------------------------------------------

    def _new_message(
        self, channel_id: int, payload: dict[str, Any], *, message_id: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        message_id = message_id or self.snowflake()
        message: dict[str, Any] = {
            "id": str(message_id),
            "type": 0,
            "channel_id": str(channel_id),
            "author": self.bot_user.to_json(),
            "content": payload.get("content") or "",
            "timestamp": _iso(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [dict(e, type=e.get("type", "rich")) for e in payload.get("embeds") or []],
            "pinned": False,
            "flags": int(payload.get("flags") or 0),
            "components": payload.get("components") or [],
        }
        if payload.get("nonce") is not None:
            message["nonce"] = payload["nonce"]
        message.update(extra)
        self._messages[message_id] = message
        self._create_payloads[message_id] = payload
        found = self._parse_mentions(message, payload.get("allowed_mentions"))
        self.mentions.extend(found)
        self.stats.role_pings += sum(1 for m in found if m.pinged and m.kind == "role")
        self.stats.everyone_pings += sum(1 for m in found if m.pinged and m.kind in ("everyone", "here"))
        return message

    def _apply_edit(self, message: dict[str, Any], payload: dict[str, Any]) -> None:
        for key in ("content", "components", "flags"):
            if key in payload:
                message[key] = (
                    payload[key]
                    if payload[key] is not None
                    else ("" if key == "content" else [] if key == "components" else 0)
                )
        if "embeds" in payload:
            message["embeds"] = [dict(e, type=e.get("type", "rich")) for e in payload["embeds"] or []]
        # an edit ends the "thinking…" state
        message["flags"] = int(message.get("flags") or 0) & ~MessageFlag.LOADING
        message["edited_timestamp"] = _iso()
        if "content" in payload:  # mentions are parsed again, but an edit notifies no one
            created = self._create_payloads.get(int(message["id"])) or {}
            self._parse_mentions(message, payload.get("allowed_mentions", created.get("allowed_mentions")))

    def _check_can_post(self, channel: FakeChannel | FakeDMChannel, payload: dict[str, Any]) -> None:
        """Discord's checks before a message lands in a channel, thread or DM (after the body's)."""
        if isinstance(channel, FakeDMChannel):
            self._check_dm_open(channel)
            return
        if channel.type in ChannelType.FORUMS:
            raise DiscordHTTPError(400, 40058, "Cannot send messages in a forum channel")
        if channel.type not in ChannelType.MESSAGEABLE:
            raise DiscordHTTPError(400, 50008, "Cannot send messages in a non-text channel")
        send = (
            Permission.SEND_MESSAGES_IN_THREADS
            if channel.type in ChannelType.THREADS
            else Permission.SEND_MESSAGES
        )
        self._require(channel, send | (Permission.EMBED_LINKS if payload.get("embeds") else 0))

    def _require(self, channel: FakeChannel, needed: int) -> None:
        """403 Missing Permissions (50013) unless the bot has every bit of `needed` in the channel."""
        if self.permissions_for(channel.guild_id, self.bot_user.id, channel.id) & needed != needed:
            raise missing_permissions()

    def _store_posted(self, channel: FakeChannel | FakeDMChannel, message: dict[str, Any]) -> None:
        """A message the bot created in a channel: listed in `messages(channel.id)`."""
        if channel.guild_id is not None:
            message["guild_id"] = str(channel.guild_id)
        self._channel_messages.setdefault(channel.id, []).append(int(message["id"]))

    async def _post_message(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        self._rate_limit(
            request, "POST /channels/{channel_id}/messages", channel_id, self.channel_message_limit
        )
        channel = self._readable_channel(channel_id)
        payload = request[_JSON_BODY]
        validate_message(payload)
        self._check_can_post(channel, payload)
        nonce = payload.get("nonce")
        now = time.monotonic()
        if nonce is not None and payload.get("enforce_nonce"):
            seen = self._nonces.get((channel.id, str(nonce)))
            if seen is not None and now - seen[0] <= self.nonce_window and seen[1] in self._messages:
                self.stats.nonce_replays += 1
                return _json_response(200, self._messages[seen[1]])
        message = self._new_message(channel.id, payload)
        self._store_posted(channel, message)
        if isinstance(channel, FakeChannel) and channel.type in ChannelType.THREADS:
            channel.message_count += 1
        if nonce is not None:
            self._nonces[(channel.id, str(nonce))] = (now, int(message["id"]))
        return _json_response(200, message)

    def _channel_message(self, request: web.Request) -> tuple[FakeChannel | FakeDMChannel, dict[str, Any]]:
        channel = self._readable_channel(request.match_info["channel_id"])
        message = self._messages.get(int(request.match_info["message_id"]))
        if message is None or int(message["channel_id"]) != channel.id:
            raise DiscordHTTPError(404, 10008, "Unknown Message")
        return channel, message

    async def _get_channel_messages(self, request: web.Request) -> web.Response:
        channel = self._readable_channel(request.match_info["channel_id"])
        limit = min(int(request.query.get("limit", "50")), 100)
        return _json_response(200, list(reversed(self.messages(channel.id)))[:limit])

    async def _get_message(self, request: web.Request) -> web.Response:
        _, message = self._channel_message(request)
        return _json_response(200, message)

    async def _patch_message(self, request: web.Request) -> web.Response:
        _, message = self._channel_message(request)
        payload = request[_JSON_BODY] or {}
        validate_message(payload, is_edit=True)
        if message["author"]["id"] != str(self.bot_user.id):
            raise DiscordHTTPError(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(message, payload)
        return _json_response(200, message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        channel, message = self._channel_message(request)
        del self._messages[int(message["id"])]
        event = {"id": message["id"], "channel_id": str(channel.id)}
        if channel.guild_id is not None:
            event["guild_id"] = str(channel.guild_id)
        self.dispatch("MESSAGE_DELETE", event)
        return web.Response(status=204)

    # --- REST: threads, forum posts, publishing ---------------------------------------------------------

    def _server_channel(self, channel: FakeChannel | FakeDMChannel) -> FakeChannel:
        if isinstance(channel, FakeDMChannel):
            raise DiscordHTTPError(400, 50003, "Cannot execute action on a DM channel")
        return channel

    def _new_thread(
        self, parent: FakeChannel, payload: dict[str, Any], thread_id: int, kind: int
    ) -> FakeChannel:
        thread = FakeChannel(
            thread_id,
            parent.guild_id,
            payload["name"],
            kind,
            parent_id=parent.id,
            owner_id=self.bot_user.id,
            auto_archive_duration=payload.get("auto_archive_duration") or 1440,
            created_at=_iso(),
        )
        self.guilds[parent.guild_id].threads[thread.id] = thread
        self._channel_messages.setdefault(thread.id, [])
        return thread

    def _thread_created(self, thread: FakeChannel, message: dict[str, Any] | None = None) -> web.Response:
        """THREAD_CREATE to the bot, and the answer: the thread, with its first message for a forum post."""
        self.dispatch("THREAD_CREATE", dict(thread.to_json(), newly_created=True))
        answer = thread.to_json()
        answer["member"] = {
            "id": str(thread.id),
            "user_id": str(self.bot_user.id),
            "join_timestamp": thread.created_at,
            "flags": 1,
        }
        if message is not None:
            answer["message"] = message
        return _json_response(201, answer)

    async def _post_thread(self, request: web.Request) -> web.Response:
        """A forum post (a thread and its first message, in its own message list), or in a text channel a
        thread without a message."""
        channel_id = request.match_info["channel_id"]
        self._rate_limit(
            request, "POST /channels/{channel_id}/threads", channel_id, self.channel_message_limit
        )
        parent = self._server_channel(self._readable_channel(channel_id))
        payload = request[_JSON_BODY]
        if parent.type in ChannelType.FORUMS:
            return self._forum_post(parent, payload)
        if parent.type not in (ChannelType.TEXT, ChannelType.ANNOUNCEMENT):
            raise DiscordHTTPError(400, 50024, "Cannot execute action on this channel type")
        validate_thread(payload, forum=False)
        kinds = (
            (ChannelType.ANNOUNCEMENT_THREAD,)
            if parent.type == ChannelType.ANNOUNCEMENT
            else (ChannelType.PUBLIC_THREAD, ChannelType.PRIVATE_THREAD)
        )
        kind = payload.get("type", ChannelType.PRIVATE_THREAD)  # API v9's default; discord.py always sends it
        if kind not in kinds:
            raise DiscordHTTPError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "type": {
                        "_errors": [
                            {"code": "BASE_TYPE_CHOICES", "message": f"Value must be one of {set(kinds)}."}
                        ]
                    }
                },
            )
        private = kind == ChannelType.PRIVATE_THREAD
        self._require(
            parent, Permission.CREATE_PRIVATE_THREADS if private else Permission.CREATE_PUBLIC_THREADS
        )
        return self._thread_created(self._new_thread(parent, payload, self.snowflake(), kind))

    def _forum_post(self, forum: FakeChannel, payload: Any) -> web.Response:
        validate_thread(payload, forum=True)
        first = payload["message"]
        self._require(
            forum, Permission.SEND_MESSAGES | (Permission.EMBED_LINKS if first.get("embeds") else 0)
        )
        known = {tag["id"] for tag in forum.available_tags}
        applied = [str(tag) for tag in payload.get("applied_tags") or []]
        errors = FormErrors()
        for i, tag in enumerate(applied):
            if tag not in known:
                errors.add(["applied_tags", i], "UNKNOWN_TAG", f"Unknown tag {tag} in channel {forum.id}")
        errors.raise_if_any()
        if forum.flags & ChannelFlag.REQUIRE_TAG and not applied:
            raise DiscordHTTPError(400, 40067, "A tag is required to create a forum post in this channel")
        post_id = self.snowflake()  # a forum post's thread and its first message share the id
        thread = self._new_thread(forum, payload, post_id, ChannelType.PUBLIC_THREAD)
        thread.applied_tags = list(dict.fromkeys(int(tag) for tag in applied))
        message = self._new_message(thread.id, first, message_id=post_id)
        self._store_posted(thread, message)
        return self._thread_created(thread, message)

    async def _post_message_thread(self, request: web.Request) -> web.Response:
        """A thread on a message: it takes the message's id; the message gets `thread` and HAS_THREAD."""
        found, message = self._channel_message(request)
        channel = self._server_channel(found)
        if channel.type not in (ChannelType.TEXT, ChannelType.ANNOUNCEMENT):
            raise DiscordHTTPError(400, 50024, "Cannot execute action on this channel type")
        payload = request[_JSON_BODY]
        validate_thread(payload, forum=False)
        self._require(channel, Permission.CREATE_PUBLIC_THREADS)
        if message.get("thread"):
            raise DiscordHTTPError(400, 160004, "A thread has already been created for this message")
        kind = (
            ChannelType.ANNOUNCEMENT_THREAD
            if channel.type == ChannelType.ANNOUNCEMENT
            else ChannelType.PUBLIC_THREAD
        )
        thread = self._new_thread(channel, payload, int(message["id"]), kind)
        message["thread"] = thread.to_json()
        message["flags"] = int(message.get("flags") or 0) | MessageFlag.HAS_THREAD
        return self._thread_created(thread)

    async def _crosspost(self, request: web.Request) -> web.Response:
        """Publish to following servers: announcement channels only, each message once, `publish_limit` per
        channel (Discord: about 10 an hour; past it 429 with a long retry_after, which discord.py sleeps through
        unless the client's `max_ratelimit_timeout` is shorter: then it raises RateLimited)."""
        found, message = self._channel_message(request)
        channel = self._server_channel(found)
        if channel.type != ChannelType.ANNOUNCEMENT:
            raise DiscordHTTPError(400, 50024, "Cannot execute action on this channel type")
        own = message["author"]["id"] == str(self.bot_user.id)
        self._require(channel, Permission.SEND_MESSAGES if own else Permission.MANAGE_MESSAGES)
        if int(message.get("flags") or 0) & MessageFlag.CROSSPOSTED:
            raise DiscordHTTPError(400, 40033, "This message has already been crossposted.")
        self._rate_limit(
            request,
            "POST /channels/{channel_id}/messages/{message_id}/crosspost",
            channel.id,
            self.publish_limit,
            hidden=True,
        )
        message["flags"] = int(message.get("flags") or 0) | MessageFlag.CROSSPOSTED
        self.stats.publishes += 1
        return _json_response(200, message)

    # --- REST: direct messages --------------------------------------------------------------------------

    async def _open_dm(self, request: web.Request) -> web.Response:
        """The bot's DM channel with `recipient_id` (the same one each time)."""
        body = request[_JSON_BODY]
        recipient = body.get("recipient_id") if isinstance(body, dict) else None
        if recipient is None:
            raise DiscordHTTPError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "recipient_id": {
                        "_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]
                    }
                },
            )
        user = self.users.get(int(recipient)) if str(recipient).isdigit() else None
        if user is None or user.id == self.bot_user.id:
            raise DiscordHTTPError(400, 50033, "Invalid Recipient(s)")
        dm = next((d for d in self.dm_channels.values() if d.recipient.id == user.id), None)
        if dm is None:
            dm = FakeDMChannel(self.snowflake(), user)
            self.dm_channels[dm.id] = dm
            self._channel_messages[dm.id] = []
        return _json_response(200, dm.to_json())

    def _check_dm_open(self, dm: FakeDMChannel) -> None:
        """Discord delivers a bot's DM only to a user who shares a server with it, keeps DMs from server
        members open, and is no bot; otherwise 403 code 50007."""
        user = dm.recipient
        shares_server = any(g.bot_present and user.id in g.members for g in self.guilds.values())
        if user.bot or not user.dms_open or not shares_server:
            raise DiscordHTTPError(403, 50007, "Cannot send messages to this user")

    # --- mentions -----------------------------------------------------------------------------------------

    def _parse_mentions(self, message: dict[str, Any], allowed_mentions: Any) -> list[Mention]:
        """Discord's reading of the content's `<@user>`, `<@&role>`, @everyone and @here under allowed_mentions
        (absent: all parsed): fills `mentions`, `mention_roles` (the roles pinged) and `mention_everyone`;
        returns one Mention each, with whether it was allowed and whether it notified anyone."""
        channel_id = int(message["channel_id"])
        channel = self._find_channel(channel_id)
        guild = self.guilds[channel.guild_id] if channel is not None else None
        may_ping_all = channel is not None and bool(
            self.permissions_for(channel.guild_id, self.bot_user.id, channel.id) & Permission.MENTION_EVERYONE
        )
        parse, allowed_roles, allowed_users = allowed_mention_sets(allowed_mentions)
        found: list[Mention] = []
        for kind, target in mentions_in(message.get("content") or ""):
            if kind == "user":
                allowed = "users" in parse or target in allowed_users
                pinged = allowed and target in self.users
            elif kind == "role":
                role = guild.roles.get(target or 0) if guild is not None else None
                allowed = "roles" in parse or target in allowed_roles
                pinged = allowed and role is not None and (role.mentionable or may_ping_all)
            else:  # @everyone / @here
                allowed = "everyone" in parse
                pinged = allowed and guild is not None and may_ping_all
            found.append(Mention(int(message["id"]), channel_id, kind, target, allowed, pinged))
        pinged_found = [m for m in found if m.pinged]
        message["mentions"] = [
            self.users[m.target_id].to_json() for m in pinged_found if m.kind == "user" and m.target_id
        ]
        message["mention_roles"] = [str(m.target_id) for m in pinged_found if m.kind == "role"]
        message["mention_everyone"] = any(m.kind in ("everyone", "here") for m in pinged_found)
        return found

    # --- REST: interactions -----------------------------------------------------------------------------

    def _interaction_for(self, request: web.Request) -> Interaction:
        interaction = self._interactions_by_token.get(request.match_info["token"])
        if interaction is None or time.monotonic() - interaction.created > INTERACTION_TOKEN_LIFETIME:
            raise DiscordHTTPError(404, 10015, "Unknown Webhook")
        if (
            "application_id" in request.match_info
            and int(request.match_info["application_id"]) != self.application_id
        ):
            raise DiscordHTTPError(404, 10015, "Unknown Webhook")
        return interaction

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        interaction = self._interactions.get(int(request.match_info["interaction_id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise DiscordHTTPError(404, 10062, "Unknown interaction")
        if interaction.callback is not None:
            raise DiscordHTTPError(400, 40060, "Interaction has already been acknowledged.")
        elapsed = time.monotonic() - interaction.created
        if interaction.deadline is not None and elapsed > interaction.deadline:
            interaction.late = True
            self.stats.late_interaction_callbacks += 1
            log.warning(
                "interaction %s answered after %.2f s (deadline %.1f s)",
                interaction.name,
                elapsed,
                interaction.deadline,
            )
            raise DiscordHTTPError(404, 10062, "Unknown interaction")
        body = request[_JSON_BODY]
        if not isinstance(body, dict) or "type" not in body:
            raise DiscordHTTPError(
                400,
                50035,
                "Invalid Form Body",
                {"type": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}},
            )
        kind = body["type"]
        data = body.get("data") or {}
        allowed = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,), 5: (4, 5, 6, 7)}.get(interaction.type, ())
        if kind not in allowed:
            raise DiscordHTTPError(
                400,
                40043,
                f"Interaction response type {kind} is not valid for interaction type {interaction.type}",
            )
        if kind in (4, 7):
            validate_message(data, is_edit=kind == 7)
        if kind == 8:
            errors = FormErrors()
            validate_choices(data.get("choices"), errors, ["data", "choices"])
            errors.raise_if_any()
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:
            interaction.original = self._interaction_message(interaction, data)
            resource["message"] = interaction.original
        elif kind == 5:
            flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
            interaction.original = self._interaction_message(interaction, {"flags": flags})
            resource["message"] = interaction.original
        elif kind == 7:
            message = interaction.payload.get("message")
            target = self._messages.get(int(message["id"])) if message else None
            if target is None:
                raise DiscordHTTPError(404, 10008, "Unknown Message")
            self._apply_edit(target, data)
            interaction.original = target
            resource["message"] = target
        interaction.callback = body
        interaction.callback_at = time.monotonic()
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(
                    interaction.original and int(interaction.original.get("flags", 0)) & MessageFlag.EPHEMERAL
                ),
            }
        }
        if interaction.original is not None and kind in (4, 5, 7):
            answer["interaction"]["response_message_id"] = interaction.original["id"]
        if kind not in (6, 8):  # no message to show for these
            answer["resource"] = resource
        return _json_response(200, answer)

    def _interaction_message(self, interaction: Interaction, data: dict[str, Any]) -> dict[str, Any]:
        message = self._new_message(
            interaction.channel_id,
            data,
            webhook_id=str(self.application_id),
            application_id=str(self.application_id),
            interaction_metadata={
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.payload["member"]["user"],
                "authorizing_integration_owners": {"0": str(interaction.guild_id)},
            },
        )
        if interaction.type in (2, 4):
            message["type"] = 20  # chat input command reply
        self._message_interaction[int(message["id"])] = interaction
        return message

    async def _post_followup(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for(request)
        if interaction.callback is None:
            raise DiscordHTTPError(404, 10015, "Unknown Webhook")
        payload = request[_JSON_BODY] or {}
        validate_message(payload)
        message = self._interaction_message(interaction, payload)
        interaction.followups.append(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return _json_response(200, message)
        return web.Response(status=204)

    def _webhook_message(self, request: web.Request, interaction: Interaction) -> dict[str, Any]:
        message_id = request.match_info["message_id"]
        if message_id == "@original":
            if interaction.original is None:
                raise DiscordHTTPError(404, 10008, "Unknown Message")
            return interaction.original
        message = self._messages.get(int(message_id)) if message_id.isdigit() else None
        if message is None or self._message_interaction.get(int(message_id)) is not interaction:
            raise DiscordHTTPError(404, 10008, "Unknown Message")
        return message

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for(request)
        return _json_response(200, self._webhook_message(request, interaction))

    async def _patch_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for(request)
        message = self._webhook_message(request, interaction)
        payload = request[_JSON_BODY] or {}
        validate_message(payload, is_edit=True)
        self._apply_edit(message, payload)
        if message is interaction.original:
            interaction.edits.append(payload)
        return _json_response(200, message)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._interaction_for(request)
        message = self._webhook_message(request, interaction)
        self._messages.pop(int(message["id"]), None)
        return web.Response(status=204)

    # --- test driver: interactions ----------------------------------------------------------------------

    def _command_definition(self, name: str, guild_id: int) -> tuple[dict[str, Any], bool]:
        for command in self.guild_commands.get(guild_id, []):
            if command["name"] == name and command.get("type", 1) == 1:
                return command, True
        for command in self.commands:
            if command["name"] == name and command.get("type", 1) == 1:
                return command, False
        known = sorted(
            {c["name"] for c in self.commands} | {c["name"] for c in self.guild_commands.get(guild_id, [])}
        )
        raise LookupError(f"/{name} is not registered with FakeDiscord (synced commands: {known or 'none'})")

    def _resolve_context(
        self, guild_id: int | None, channel_id: int | None, user_id: int | None
    ) -> tuple[FakeGuild, FakeChannel, FakeMember]:
        if guild_id is None:
            if not self.guilds:
                raise LookupError("FakeDiscord has no guild; make one with add_guild()")
            guild = next(iter(self.guilds.values()))
        else:
            guild = self._guild(guild_id)
        if channel_id is None:
            if not guild.text_channels:
                raise LookupError(f"guild {guild.name!r} has no text channel")
            channel = guild.text_channels[0]
        else:
            channel = self._channel(channel_id)
        member = guild.members.get(user_id if user_id is not None else guild.owner_id)
        if member is None:
            member = self.member(guild.id, f"user{user_id}", user_id=user_id)
        return guild, channel, member

    def _option_value(
        self,
        definition: dict[str, Any],
        value: Any,
        resolved: dict[str, Any],
        guild: FakeGuild,
        member_perms: int,
        *,
        focused: bool,
    ) -> Any:
        kind = definition["type"]
        name = definition["name"]
        if focused:
            return str(value)  # autocomplete sends what the user typed so far, as text
        if kind == 3:
            return str(value)
        if kind == 4:
            return int(value)
        if kind == 5:
            return bool(value)
        if kind == 10:
            return float(value)
        snowflake = int(getattr(value, "id", value))
        if kind == 7:
            channel = self._find_channel(snowflake)
            if channel is None:
                raise LookupError(f"option {name!r}: FakeDiscord has no channel {snowflake}")
            allowed = definition.get("channel_types")
            if allowed and channel.type not in allowed:
                raise ValueError(
                    f"option {name!r}: Discord offers only channel types {allowed}, not {channel.type}"
                )
            data = channel.to_json()
            data["permissions"] = str(
                self.permissions_for(channel.guild_id, int(resolved["_member"]), channel.id)
            )
            resolved.setdefault("channels", {})[str(snowflake)] = data
        elif kind in (6, 9) and snowflake in self.users:
            resolved.setdefault("users", {})[str(snowflake)] = self.users[snowflake].to_json()
            if snowflake in guild.members:
                member_data = guild.members[snowflake].to_json(
                    permissions=self.permissions_for(guild.id, snowflake)
                )
                member_data.pop("user")
                resolved.setdefault("members", {})[str(snowflake)] = member_data
        elif kind in (8, 9) and snowflake in guild.roles:
            resolved.setdefault("roles", {})[str(snowflake)] = guild.roles[snowflake].to_json()
        elif kind in (6, 8):
            raise LookupError(f"option {name!r}: FakeDiscord knows no user or role {snowflake}")
        return str(snowflake)

    def _build_options(
        self,
        definitions: list[dict[str, Any]],
        values: dict[str, Any],
        resolved: dict[str, Any],
        guild: FakeGuild,
        member_perms: int,
        focused: str | None,
        command: str,
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in definitions}
        for key in values:
            if key not in by_name:
                raise LookupError(f"/{command} has no option {key!r} (options: {sorted(by_name)})")
        options: list[dict[str, Any]] = []
        for definition in definitions:
            name = definition["name"]
            if name not in values or values[name] is None:
                if definition.get("required") and focused is None:
                    raise ValueError(f"/{command}: option {name!r} is required")
                continue
            isfocused = name == focused
            value = self._option_value(
                definition, values[name], resolved, guild, member_perms, focused=isfocused
            )
            choices = definition.get("choices")
            if choices and not isfocused and value not in [c["value"] for c in choices]:
                raise ValueError(f"/{command}: {value!r} is not one of the choices of {name!r}")
            option: dict[str, Any] = {"type": definition["type"], "name": name, "value": value}
            if isfocused:
                option["focused"] = True
            options.append(option)
        if focused is not None and focused not in values:
            raise ValueError(
                f"/{command}: the focused option {focused!r} needs a value (what the user typed)"
            )
        return options

    def _base_interaction(
        self,
        kind: int,
        guild: FakeGuild,
        channel: FakeChannel,
        member: FakeMember,
        permissions: int | None,
        locale: str | None = None,
        guild_locale: str | None = None,
    ) -> dict[str, Any]:
        """The INTERACTION_CREATE fields every type shares; locales default to the member's and the server's."""
        locale = locale or member.user.locale
        guild_locale = guild_locale or guild.preferred_locale
        _check_locale(locale)
        _check_locale(guild_locale)
        interaction_id = self.snowflake()
        member_perms = (
            permissions if permissions is not None else self.permissions_for(guild.id, member.id, channel.id)
        )
        channel_data = channel.to_json()
        channel_data["permissions"] = str(member_perms)
        return {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(32)}",
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild_locale, "features": []},
            "guild_locale": guild_locale,
            "channel_id": str(channel.id),
            "channel": channel_data,
            "member": member.to_json(permissions=member_perms),
            "app_permissions": str(self.permissions_for(guild.id, self.bot_user.id, channel.id)),
            "locale": locale,
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }

    async def invoke(
        self,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        permissions: int | None = None,
        locale: str | None = None,
        guild_locale: str | None = None,
        respect_default_permissions: bool = True,
        focused: str | None = None,
    ) -> Interaction:
        """A user runs a slash command: INTERACTION_CREATE (type 2) is dispatched. With `focused` (an option
        name) it is an autocomplete (type 4) instead, as `autocomplete()` sends.

        Defaults: the first guild, its first text channel, its owner; `locale` the user's (`FakeUser.locale`),
        `guild_locale` the server's `preferred_locale`. `permissions` overrides the member's computed
        permissions. With `respect_default_permissions`, a user lacking the command's
        `default_member_permissions` is refused here (InvocationRefused), as Discord's client would; pass False
        to model a server whose admins granted the command to everyone in Integrations settings."""
        guild, channel, member = self._resolve_context(guild_id, channel_id, user_id)
        names = command.strip("/").split()
        definition, is_guild_command = self._command_definition(names[0], guild.id)
        base = self._base_interaction(
            4 if focused else 2, guild, channel, member, permissions, locale, guild_locale
        )
        member_perms = int(base["member"]["permissions"])
        required = definition.get("default_member_permissions")
        if respect_default_permissions and required is not None and focused is None:
            needed = int(required)
            if member_perms & needed != needed and not member_perms & Permission.ADMINISTRATOR:
                raise InvocationRefused(
                    f"Discord would not show /{names[0]} to user {member.id}: it needs permissions {needed:#x}"
                )
        resolved: dict[str, Any] = {"_member": member.id}
        definitions = definition.get("options") or []
        nested: list[tuple[int, str]] = []
        for sub in names[1:]:
            match = next((d for d in definitions if d["name"] == sub and d["type"] in (1, 2)), None)
            if match is None:
                raise LookupError(f"/{command}: no subcommand {sub!r}")
            nested.append((match["type"], sub))
            definitions = match.get("options") or []
        leaf = self._build_options(
            definitions, dict(options or {}), resolved, guild, member_perms, focused, command
        )
        for kind, sub in reversed(nested):
            leaf = [{"type": kind, "name": sub, "options": leaf}]
        resolved.pop("_member")
        data: dict[str, Any] = {"id": definition["id"], "name": names[0], "type": 1, "options": leaf}
        if resolved:
            data["resolved"] = resolved
        if is_guild_command:
            data["guild_id"] = str(guild.id)
        base["data"] = data
        return self._start_interaction(base)

    async def autocomplete(
        self,
        command: str,
        options: dict[str, Any],
        *,
        focused: str,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
        locale: str | None = None,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """A user types into option `focused`: returns the choices the bot offered (type 8 answer)."""
        interaction = await self.invoke(
            command,
            options,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            locale=locale,
            focused=focused,
        )
        callback = await interaction.response(timeout)
        return list((callback.get("data") or {}).get("choices") or [])

    async def click(
        self,
        message: dict[str, Any] | int,
        custom_id: str,
        *,
        user_id: int | None = None,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> Interaction:
        """A user clicks a button (or picks from a select) on a message the bot sent: type 3 interaction."""
        message_id = int(message if isinstance(message, int) else message["id"])
        stored = self._messages.get(message_id)
        if stored is None:
            raise LookupError(f"FakeDiscord has no message {message_id}")
        custom_ids = [
            c.get("custom_id") for row in stored.get("components", []) for c in row.get("components", [])
        ]
        if custom_id not in custom_ids:
            raise LookupError(f"message {message_id} has no component {custom_id!r} (has {custom_ids})")
        channel = self._channel(int(stored["channel_id"]))
        origin = self._message_interaction.get(message_id)
        if user_id is None and origin is not None:
            user_id = origin.user_id
        guild, channel, member = self._resolve_context(channel.guild_id, channel.id, user_id)
        base = self._base_interaction(3, guild, channel, member, None)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        base["data"] = data
        base["message"] = stored
        interaction = self._start_interaction(base)
        interaction.original = stored  # for a component, @original is the message the component is on
        self._message_interaction.setdefault(message_id, interaction)
        return interaction

    def _start_interaction(self, payload: dict[str, Any]) -> Interaction:
        if not self.live_sessions():
            raise RuntimeError(
                "no bot is connected to FakeDiscord's gateway: nothing would receive the interaction"
            )
        guild_id = int(payload["guild_id"])
        if not self._receivers("INTERACTION_CREATE", payload):
            shards = sorted({s.shard for s in self.live_sessions()})
            raise RuntimeError(
                f"no bot session is on the shard of guild {guild_id} (sessions' shards: {shards}): "
                "nothing would receive the interaction"
            )
        interaction = Interaction(self, payload, self.interaction_deadline)
        self._interactions[interaction.id] = interaction
        self._interactions_by_token[interaction.token] = interaction
        self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    # --- gateway ----------------------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        """Gateway sockets open now."""
        return len(self._connections)

    def live_sessions(self) -> list[_Session]:
        """Gateway sessions that still receive events (connected, or resumable between sockets)."""
        return [s for s in self._sessions.values() if s.alive]

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event (op 0) to the live sessions that receive it: its guild's shard, shard 0 for DMs and
        other events without a guild; kept for replay while a session is between sockets."""
        for session in self._receivers(event, data):
            self._send_event(session, event, data)
        self._notify()

    def _receivers(self, event: str, data: dict[str, Any]) -> list[_Session]:
        guild_events = ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE")
        guild_id = data.get("id") if event in guild_events else data.get("guild_id")
        return [s for s in self.live_sessions() if s.shard[0] == shard_for(guild_id, s.shard[1])]

    def _send_event(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        if (
            event
            in (
                "GUILD_CREATE",
                "GUILD_UPDATE",
                "GUILD_DELETE",
                "CHANNEL_CREATE",
                "CHANNEL_UPDATE",
                "CHANNEL_DELETE",
                "GUILD_ROLE_CREATE",
                "GUILD_ROLE_UPDATE",
                "THREAD_CREATE",
                "THREAD_DELETE",
            )
            and not session.intents & GatewayIntent.GUILDS
        ):
            return
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.events.append(frame)
        del session.events[:-GATEWAY_EVENT_BUFFER]
        if session.connection is not None:
            session.connection.send(frame)

    def _guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "preferred_locale": guild.preferred_locale,
            "features": [],
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "roles": [r.to_json() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
        }

    def _guild_create_payload(self, guild: FakeGuild, session: _Session | None) -> dict[str, Any]:
        data = self._guild_payload(guild)
        intents = session.intents if session else 0
        members = [
            m.to_json()
            for m in guild.members.values()
            if m.id == self.bot_user.id or intents & GatewayIntent.GUILD_MEMBERS
        ]
        data.update(
            {
                "joined_at": guild.joined_at,
                "large": False,
                "member_count": len(guild.members),
                "channels": [c.to_json(with_guild=False) for c in guild.channels.values()],
                "members": members,
                "threads": [t.to_json() for t in guild.threads.values()],
                "voice_states": [],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
                "embedded_activities": [],
                "lazy": True,
            }
        )
        return data

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=4096 * 1024)
        await ws.prepare(request)
        connection = _Connection(ws)
        self._connections.add(connection)
        self.stats.gateway_connections += 1
        self.gateway_paths.append(request.path)
        self._notify()
        connection.send(
            {"op": 10, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}, "s": None, "t": None}
        )
        close_code: int | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        close_code = 4002  # decode error: the client must send JSON text
                        break
                    continue
                try:
                    frame = json.loads(msg.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    close_code = 4002
                    break
                close_code = await self._gateway_op(connection, op, frame.get("d"))
                if close_code is not None:
                    break
        finally:
            # state first, without awaiting: aiohttp cancels this handler when the client's socket goes away
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                if ws.close_code in (1000, 1001) and close_code is None:
                    # a 1000/1001 close by the client ends the session, as on Discord (discord.py 2.7.1 with
                    # aiohttp 3.14 sends 4000 even from Client.close(), so its sessions stay resumable)
                    session.alive = False
            connection.session = None
            self._connections.discard(connection)
            self._notify()
            code = close_code if close_code is not None else 1000
            await connection.close(code, _CLOSE_REASONS.get(code, ""))
        return ws

    async def _gateway_op(self, connection: _Connection, op: int, data: Any) -> int | None:
        """Handles one client frame; returns a close code to end the connection."""
        if op == 1:
            self.stats.heartbeats += 1
            connection.send({"op": 11, "d": None, "s": None, "t": None})
            return None
        if op == 2:
            if connection.session is not None:
                return 4005  # already authenticated
            if not isinstance(data, dict) or data.get("token") != self.token:
                return 4004
            intents = int(data.get("intents", 0))
            if intents & GatewayIntent.PRIVILEGED and not self.privileged_intents_allowed:
                return 4014
            shard = data.get("shard", [0, 1])
            if (
                not isinstance(shard, list | tuple)
                or len(shard) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
                or not 0 <= shard[0] < shard[1]
            ):
                return 4010
            shard_id, shard_count = shard
            present = [g for g in self.guilds.values() if g.bot_present and g.shard(shard_count) == shard_id]
            if len(present) > self.guilds_per_shard:
                return 4011
            self.identify_payloads.append({k: v for k, v in data.items() if k != "token"})
            self.stats.identifies += 1
            now = time.time()
            bucket = shard_id % max(1, self.max_concurrency)
            if any(
                now - at < 5.0 and other % max(1, self.max_concurrency) == bucket
                for at, other in self.identify_times
            ):
                self.stats.identify_too_soon += 1
            self.identify_times.append((now, shard_id))
            session = _Session(secrets.token_hex(16), intents, (shard_id, shard_count))
            self._sessions[session.id] = session
            session.connection = connection
            connection.session = session
            self._send_event(
                session,
                "READY",
                {
                    "v": 10,
                    "user": dict(self.bot_user.to_json(), verified=True, mfa_enabled=False, flags=0),
                    "guilds": [{"id": str(g.id), "unavailable": True} for g in present],
                    "session_id": session.id,
                    "session_type": "normal",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway/resume",
                    "application": {"id": str(self.application_id), "flags": 0},
                    "shard": [shard_id, shard_count],
                    "private_channels": [],
                    "presences": [],
                    "relationships": [],
                    "guild_join_requests": [],
                    "geo_ordered_rtc_regions": [],
                    "auth": {},
                    "_trace": ['["fake-discord-gateway",{"micros":0}]'],
                },
            )
            for guild in present:
                payload = self._guild_create_payload(guild, session)
                payload["unavailable"] = False
                self._send_event(session, "GUILD_CREATE", payload)
            self._notify()
            return None
        if op == 6:
            if not isinstance(data, dict) or data.get("token") != self.token:
                return 4004
            resumed = self._sessions.get(str(data.get("session_id")))
            seq = data.get("seq")
            if resumed is None or not resumed.alive or connection.session is not None:
                self.stats.failed_resumes += 1
                connection.send({"op": 9, "d": False, "s": None, "t": None})
                return None
            if resumed.connection is not None and resumed.connection is not connection:
                old = resumed.connection
                old.session = None
                asyncio.create_task(old.close(4000, "session resumed elsewhere"))
            resumed.connection = connection
            connection.session = resumed
            for frame in resumed.events:
                if seq is None or frame["s"] > int(seq):
                    connection.send(frame)
            self.stats.resumes += 1
            self._send_event(resumed, "RESUMED", {"_trace": ['["fake-discord-gateway",{"micros":0}]']})
            self._notify()
            return None
        if op in (3, 4, 8):  # presence, voice state, member chunk requests: accepted, nothing to do
            if connection.session is None:
                return 4003
            return None
        return 4001  # unknown opcode

    async def wait_for_ready_session(
        self, timeout: float = 10.0, *, shard: tuple[int, int] | None = None
    ) -> None:
        """Wait until a bot has identified (READY sent) and holds a connection (on `shard`, when given)."""
        await self.wait_for(
            lambda: any(
                s.connection is not None and (shard is None or s.shard == tuple(shard))
                for s in self.live_sessions()
            ),
            timeout,
            what=f"a bot on the gateway{f' on shard {shard}' if shard else ''}",
        )

    def _send_to_connected(self, frame: dict[str, Any], *, end_session: bool = False) -> int:
        """Send an op to every connected session and detach it: later events wait for RESUME's replay."""
        sessions = [s for s in self.live_sessions() if s.connection is not None]
        if not sessions:
            raise RuntimeError("no bot is connected to FakeDiscord's gateway")
        for session in sessions:
            assert session.connection is not None
            session.connection.send(frame)
            session.connection.session = None
            session.connection = None
            if end_session:
                session.alive = False
        return len(sessions)

    async def reconnect(self, *, wait: bool = True, timeout: float = 10.0) -> None:
        """Op 7 RECONNECT to every connected session; waits until the client resumed."""
        resumes = self.stats.resumes
        count = self._send_to_connected({"op": 7, "d": None, "s": None, "t": None})
        if wait:
            await self.wait_for(
                lambda: self.stats.resumes >= resumes + count, timeout, what="the bot to RESUME after op 7"
            )

    async def invalidate_session(self, resumable: bool, *, wait: bool = True, timeout: float = 10.0) -> None:
        """Op 9 INVALID_SESSION; with resumable=False the session ends and the client must IDENTIFY again
        (discord.py waits 5 s before any IDENTIFY but its first: see Client.before_identify_hook)."""
        resumes, identifies = self.stats.resumes, self.stats.identifies
        frame = {"op": 9, "d": resumable, "s": None, "t": None}
        count = self._send_to_connected(frame, end_session=not resumable)
        if not wait:
            return
        if resumable:
            await self.wait_for(
                lambda: self.stats.resumes >= resumes + count, timeout, what="the bot to RESUME after op 9"
            )
        else:
            await self.wait_for(
                lambda: self.stats.identifies >= identifies + count,
                timeout,
                what="the bot to IDENTIFY after op 9",
            )

    async def drop_connections(self, code: int = 4000, *, wait: bool = True, timeout: float = 15.0) -> None:
        """Close every gateway socket from the server side (sessions stay resumable unless code is final)."""
        resumes = self.stats.resumes
        connections = [c for c in self._connections if c.session is not None]
        for connection in connections:
            if connection.session is not None:
                connection.session.connection = None
                connection.session = None
            await connection.close(code)
        if wait and connections and code not in _FINAL_CLOSE_CODES:
            await self.wait_for(
                lambda: self.stats.resumes >= resumes + len(connections),
                timeout,
                what="the bot to RESUME after the socket closed",
            )


_FINAL_CLOSE_CODES = (4004, 4010, 4011, 4012, 4013, 4014)
_CLOSE_REASONS = {
    4001: "Unknown opcode.",
    4002: "Decode error.",
    4003: "Not authenticated.",
    4004: "Authentication failed.",
    4005: "Already authenticated.",
    4010: "Invalid shard.",
    4011: "Sharding required.",
    4014: "Disallowed intent(s).",
}
