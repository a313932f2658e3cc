"""The Discord edge: the bot (one `commands.AutoShardedBot`), its background services, and `kpopnews run`.

`KpopNewsBot.setup_hook` opens what the whole bot shares (one aiohttp session, the database, the artist index),
loads the cogs, sets the command translator (cogs/translator.py: names, descriptions and options in every
locale of bot/locales), syncs the slash commands only when their translated definitions changed, then starts the
background
services that cogs and modules registered with `add_service` (the poller, the delivery worker). `close` stops the
services first, then Discord, then the session and the database.

Several processes can be one bot (contract: "Several processes, one bot"): each runs the shards `[discord]
shard_ids` names out of `shard_count`, so a server's events and commands reach the process running its shard;
polling and deliveries are claimed in the shared database, and every request to Discord waits for the one
global limiter (`bot.global_limiter`, bot/rate_limit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.artists import load_artist_index
from bot.config import Config
from bot.delivery import SWEEP_SECONDS, DeliveryWorker, DirectMessageWorker
from bot.fetch import Fetcher, make_session
from bot.i18n import CATALOGS, join_list, text
from bot.models import Source, Story
from bot.onboarding import FeedOnboarding
from bot.pipeline import after_store
from bot.poller import Poller
from bot.rate_limit import GlobalLimiter, LocalLimiter, limiter_for, request_trace
from bot.retention import drop_old_texts_hourly
from bot.store import Store, StoreError
from bot.workers import Workers
from cogs.common import answer_error
from cogs.translator import CatalogTranslator, command_name

if TYPE_CHECKING:
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

COG_EXTENSIONS = ("cogs.about", "cogs.news", "cogs.subscriptions", "cogs.trending", "cogs.follows")
COMMANDS_HASH_KEY = "app_commands_hash"  # meta key: hash of the command definitions Discord last accepted
DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"
SERVICE_STOP_TIMEOUT = 10.0  # seconds a cancelled service may take to leave its work safely pending
SERVICE_RESTART_MAX = 60.0  # a crashing service is restarted after 1, 2, 4 … up to this many seconds
# a 429 asking for a longer wait raises discord.RateLimited instead of sleeping (the hourly publish limit)
MAX_RATE_LIMIT_WAIT = 60.0
COMMAND_SYNC_LOCK = "command-sync"  # held by the one process syncing the slash commands
COMMAND_SYNC_WAIT = 60.0  # seconds a process waits for another one's sync before giving up on its own
IDENTIFY_SPACING = 5.2  # seconds between IDENTIFYs of one bucket (Discord: 5), a little margin for clocks
SHARED_SWEEP_SECONDS = 2.0  # with other processes queueing deliveries too, the worker looks this often

ServiceRun = Callable[[], Awaitable[None]]


class UserFacingError(app_commands.AppCommandError):
    """Raise from a command with a sentence for the user: it is answered ephemerally as is (no traceback)."""


def point_discord_at(api_base: str, gateway_url: str) -> None:
    """Send discord.py's REST calls and gateway connection to another server (a proxy, or the tests' fake).

    discord.py has no option for this; these two class attributes are what it reads (docs/discord-wire.md).
    Empty strings mean Discord's own."""
    discord.http.Route.BASE = api_base.rstrip("/") if api_base else DISCORD_API_BASE
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url or DISCORD_GATEWAY)


def commands_hash(application_id: int, payload: list[dict[str, Any]], api_base: str = "") -> str:
    """A stable hash of the command definitions (order of commands and keys does not matter), for one
    application on one API: a database moved behind another REST proxy or test server syncs again."""
    ordered = sorted(payload, key=lambda c: (c.get("type", 1), c.get("name", "")))
    text = json.dumps(
        {"application_id": application_id, "api_base": api_base, "commands": ordered}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def permission_names(names: list[str], locale: object = None) -> str:
    """discord.py permission names as Discord shows them in `locale`: manage_guild -> Manage Server."""
    known = set(CATALOGS.keys("permission."))
    words = [
        text(f"permission.{name}", locale)
        if f"permission.{name}" in known
        else name.replace("_", " ").title().replace("Guild", "Server")  # one the catalog lacks: in English
        for name in names
    ]
    return join_list(words, locale)


def error_text(error: app_commands.AppCommandError, command: str, locale: object = None) -> str | None:
    """What to tell the user about a failed command, in their `locale`; None when it is our fault (a bug,
    logged loudly)."""
    if isinstance(error, UserFacingError):
        return str(error)
    shown = command_name(command, locale)
    if isinstance(error, app_commands.MissingPermissions):
        names = permission_names(error.missing_permissions, locale)
        return text("error.missing_permissions", locale, permissions=names, command=shown)
    if isinstance(error, app_commands.BotMissingPermissions):
        names = permission_names(error.missing_permissions, locale)
        return text("error.bot_missing_permissions", locale, permissions=names)
    if isinstance(error, app_commands.NoPrivateMessage):
        return text("error.no_private_message", locale)
    if isinstance(error, app_commands.CommandOnCooldown):
        seconds = max(1, round(error.retry_after))
        return text("error.cooldown", locale, command=shown, seconds=seconds)
    if isinstance(error, app_commands.CheckFailure):
        return text("error.check_failed", locale, command=shown)
    if isinstance(error, app_commands.TransformerError):
        return text("error.bad_value", locale, value=repr(str(error.value)[:100]))
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return text("error.command_changed", locale)
    return None


class KpopNewsTree(app_commands.CommandTree):
    """The command tree with one error handler for every command that has none of its own."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        command = interaction.command
        if command is not None and getattr(command, "_has_any_error_handlers", lambda: False)():
            return  # the command's or its cog's handler has answered the user and logged
        data: Mapping[str, Any] = interaction.data or {}
        name = command.qualified_name if command is not None else str(data.get("name", "?"))
        locale = interaction.locale  # the member's language
        reply = error_text(error, name, locale)
        context = (
            name,
            interaction.user.id if interaction.user else None,
            interaction.guild_id,
            interaction.channel_id,
            data.get("options"),
        )
        if reply is None:
            cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
            log.error("/%s failed (user %s, guild %s, channel %s, options %r)", *context, exc_info=cause)
            reply = text("error.internal", locale, command=command_name(name, locale))
        else:
            log.info("/%s refused (user %s, guild %s, channel %s, options %r): %s", *context, reply)
        await answer_error(interaction, reply)


class KpopNewsBot(commands.AutoShardedBot):
    """The bot. Cogs reach what it shares as `bot.config`, `bot.store`, `bot.http_session`, `bot.fetcher`,
    `bot.artists` (None until the artist index loads, or if it cannot), `bot.global_limiter` (acquire it before
    each request to Discord), and the stages `setup_hook` wires: `bot.poller`, `bot.delivery` (the delivery
    worker), `bot.direct_messages` (the followers' DMs, paced by the same limiter), `bot.onboarding` (feeds added
    from Discord).

    Sharded as `[discord] shard_count` / `shard_ids` say: with neither, one process runs the shards Discord
    recommends (one for a small bot)."""

    config: Config
    artists: ArtistIndex | None
    store: Store
    http_session: aiohttp.ClientSession
    fetcher: Fetcher
    poller: Poller
    delivery: DeliveryWorker
    direct_messages: DirectMessageWorker
    onboarding: FeedOnboarding

    def __init__(self, config: Config, **kwargs: Any) -> None:
        # the bot never joins voice: silence discord.py's start-up warnings about voice libraries
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        kwargs.setdefault("intents", discord.Intents(guilds=True))  # the minimum; nothing privileged
        kwargs.setdefault("command_prefix", commands.when_mentioned)  # slash commands only
        kwargs.setdefault("help_command", None)
        kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
        kwargs.setdefault("tree_cls", KpopNewsTree)
        kwargs.setdefault("max_ratelimit_timeout", MAX_RATE_LIMIT_WAIT)
        kwargs.setdefault("shard_count", config.discord.shard_count or None)  # None: asked in setup_hook
        if config.discord.shard_ids:
            kwargs.setdefault("shard_ids", list(config.discord.shard_ids))
        # every request carrying the token waits for the global limiter (the one in use when it is made)
        kwargs.setdefault("http_trace", request_trace(lambda: self.global_limiter))
        super().__init__(**kwargs)
        self.config = config
        self.global_limiter: GlobalLimiter = LocalLimiter()  # shared by all processes once the store is open
        self.artists = None
        # command names, descriptions and options in every locale of bot/locales (set in setup_hook)
        self.command_translator: app_commands.Translator = CatalogTranslator()
        self.commands_synced = False  # whether this start sent the command definitions to Discord
        self.stopping = asyncio.Event()  # set when close() begins; services may watch it
        self._services: dict[str, ServiceRun] = {}
        self._service_tasks: dict[str, asyncio.Task[None]] = {}
        self._services_started = False
        self._closing = False
        self._setup_started = False
        self._setup_done = asyncio.Event()  # close() waits for a setup_hook in flight (see there)
        self._max_concurrency: int | None = None  # Discord's IDENTIFY buckets (asked when sharing a database)

    # --- start-up ---------------------------------------------------------------------------------------

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord lets a bot IDENTIFY `max_concurrency` sessions per 5 s, one per bucket (shard id modulo
        max_concurrency), whichever process sends them. One process spaces its own shards (discord.py's default);
        several on one database take turns through the store (a slot per bucket, every 5 s), so processes that
        start together do not identify at once and have sessions refused."""
        if not getattr(self, "store", None) or not self.store.shared:
            await super().before_identify_hook(shard_id, initial=initial)
            return
        buckets = await self._identify_buckets()
        slot = await self.store.rates.reserve(f"identify:{(shard_id or 0) % buckets}", IDENTIFY_SPACING)
        wait = slot - time.time()
        if wait > 0:
            log.info("shard %s waits %.1f s for its turn to IDENTIFY", shard_id, wait)
            await asyncio.sleep(wait)

    async def _identify_buckets(self) -> int:
        """Discord's max_concurrency for this bot (GET /gateway/bot), asked once; 1 (the usual) if it cannot say."""
        if self._max_concurrency is None:
            try:
                self._max_concurrency = max(1, (await self.fetch_session_start_limits()).max_concurrency)
            except (discord.HTTPException, aiohttp.ClientError, TimeoutError, KeyError) as exc:
                log.warning("cannot read the IDENTIFY concurrency (%r): one at a time", exc)
                self._max_concurrency = 1
        return self._max_concurrency

    async def setup_hook(self) -> None:
        self._setup_started = True
        try:
            await self._setup()
        finally:
            self._setup_done.set()

    async def _setup(self) -> None:
        # a stop signal may arrive at any await below: each step checks, and starts nothing more
        self.http_session = make_session(self.config.polling)
        self.fetcher = Fetcher(self.http_session, self.config.polling)
        self.store = await Store.open_configured(self.config.storage)
        self.global_limiter = limiter_for(self.store)
        await self.store.sources.sync_config(self.config.sources)
        if self.shard_count is None:
            # Discord's recommended count, asked here so the shards connect to gateway_url (a proxy), not the URL
            # /gateway/bot answers
            self.shard_count = (await self.http.get_bot_gateway())[0]
        if self._closing:
            return
        self.artists = await load_artist_index(err=sys.stderr)  # None, with a warning, if it cannot load
        self.store.artists = self.artists
        self._wire_stages()  # the poller and the delivery worker start below, once commands are ready
        for name in COG_EXTENSIONS:
            if self._closing:
                return
            await self._load_extension(name)
        if self._closing:
            return
        await self.tree.set_translator(
            self.command_translator
        )  # a malformed locale file stops the start here
        await self.sync_commands_if_changed()
        if self._closing:
            return
        _freeze_start_up_objects()
        self._services_started = True
        for name in self._services:
            self._start_service(name)

    def _wire_stages(self) -> None:
        """Build the stages, each given what it needs (none builds another), and register the services.

        New stories go poller -> after_store (cluster, queue deliveries) -> the delivery worker, woken. Here, not
        in a cog, so polling never depends on a cog loading."""
        config = self.config
        expand = self.artists.expand if self.artists is not None else None
        self.delivery = DeliveryWorker(
            self,
            self.store,
            artists=self.artists,
            limiter=self.global_limiter,
            sweep_seconds=SHARED_SWEEP_SECONDS if self.store.shared else SWEEP_SECONDS,
        )
        self.direct_messages = DirectMessageWorker(
            self, self.store, posts=self.delivery, most_per_day=config.delivery.max_dms_per_day
        )

        def wake() -> None:
            self.delivery.wake()
            self.direct_messages.wake()

        async def on_new_stories(stories: list[Story]) -> None:
            await after_store(self.store, stories, config=config.delivery, wake=wake, expand=expand)

        self.workers = (
            Workers()
        )  # parsing and enrichment off the event loop, in processes that end with the bot
        self.poller = Poller(
            config,
            self.store,
            self.fetcher,
            self.artists,
            on_new_stories=on_new_stories,
            workers=self.workers,
        )
        self.onboarding = FeedOnboarding(
            self.store,
            self.fetcher,
            self.poller.workers.parse,
            first_poll=self._first_poll,
            max_guild_sources=config.delivery.max_guild_sources,
            max_feed_bytes=config.polling.max_feed_bytes,
        )
        self.add_service("delivery", self.delivery.run)
        self.add_service("direct-messages", self.direct_messages.run)
        self.add_service("poller", self.poller.run_forever)
        keep_days = config.storage.keep_text_days
        self.add_service("text-retention", lambda: drop_old_texts_hourly(self.store, keep_days))

    async def _first_poll(self, source: Source) -> None:
        """A feed a server just added: store what it carries now (as backfill: never posted), then let the
        poller schedule it."""
        await self.poller.poll_claimed(source)  # unless another process is polling it already
        self.poller.wake()

    async def _load_extension(self, name: str) -> None:
        """Load one cog. One that fails is a bug: logged loudly, and the bot runs on without its commands."""
        try:
            await self.load_extension(name)
        except commands.ExtensionFailed as exc:
            log.error("cog %s failed to load: its commands are left out", name, exc_info=exc.original)
        except commands.ExtensionError as exc:
            log.error("cog %s failed to load: %s: its commands are left out", name, exc)

    async def command_payload(self) -> list[dict[str, Any]]:
        """The global command definitions as `tree.sync()` sends them: translated, localizations included
        (`to_dict()` leaves them out, so an edited translation would never be synced)."""
        commands = self.tree.get_commands()
        translator = self.tree.translator
        if translator is None:
            return [command.to_dict(self.tree) for command in commands]
        return [await command.get_translated_payload(self.tree, translator) for command in commands]

    async def sync_commands_if_changed(self) -> bool:
        """Sync the slash commands when their translated definitions differ from the last sync Discord
        accepted. Processes starting together sync once: one holds the store's lock and syncs, the others wait
        for it and find the hash it stored."""
        assert self.application_id is not None  # known after login, which runs before setup_hook
        payload = await self.command_payload()
        digest = commands_hash(self.application_id, payload, self.config.discord.api_base)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + COMMAND_SYNC_WAIT
        while not self._closing:
            async with self.store.locks.try_lock(COMMAND_SYNC_LOCK) as held:
                if held:
                    if await self.store.meta.get(COMMANDS_HASH_KEY) == digest:
                        log.info("slash commands unchanged since the last sync: not syncing")
                        return False
                    return await self._sync_commands(digest)
            if loop.time() > give_up:
                log.warning(
                    "another process has been syncing the slash commands for %.0f s: not syncing",
                    COMMAND_SYNC_WAIT,
                )
                return False
            await asyncio.sleep(0.5)
        return False

    async def _sync_commands(self, digest: str) -> bool:
        try:
            synced = await self.tree.sync()
        except discord.HTTPException as exc:
            log.error("Discord refused the slash commands (%s): they will be synced at the next start", exc)
            return False
        await self.store.meta.set(COMMANDS_HASH_KEY, digest)
        self.commands_synced = True
        log.info("synced %d slash commands: %s", len(synced), ", ".join(f"/{c.name}" for c in synced))
        return True

    async def launch_shard(self, gateway: yarl.URL, shard_id: int, *, initial: bool = False) -> None:
        # discord.py retries a failed shard connection every 5 s, also once close() has shut the HTTP session
        # (a stop signal during start-up): the process would never exit
        if self._closing:
            return
        await super().launch_shard(gateway, shard_id, initial=initial)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info(
            "ready: logged in as %s (id %d) in %d servers, shards %s of %s",
            self.user.name,
            self.user.id,
            len(self.guilds),
            ",".join(map(str, sorted(self.shards))),
            self.shard_count,
        )

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("event handler %s failed", event_method)

    # --- background services ----------------------------------------------------------------------------

    def add_service(self, name: str, run: ServiceRun) -> None:
        """Run `await run()` in the background from the end of setup_hook until close (restarted with backoff
        if it raises). Register from a cog's `setup()` or `cog_load()`; added later, it starts at once. A
        service needing the gateway's cache should `await bot.wait_until_ready()` first. On close it is
        cancelled: leave work safely pending on CancelledError."""
        if name in self._services:
            raise ValueError(f"a service named {name!r} is registered already")
        self._services[name] = run
        if self._services_started and not self._closing:
            self._start_service(name)

    def service_names(self) -> list[str]:
        return [name for name, task in self._service_tasks.items() if not task.done()]

    def _start_service(self, name: str) -> None:
        self._service_tasks[name] = asyncio.create_task(
            self._supervise(name, self._services[name]), name=f"service:{name}"
        )

    async def _supervise(self, name: str, run: ServiceRun) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            try:
                await run()
            except Exception:
                log.exception("service %s crashed: restarting it in %.0f s", name, delay)
            else:
                log.info("service %s finished", name)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, SERVICE_RESTART_MAX)

    async def _stop_services(self) -> None:
        tasks = [task for task in self._service_tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SERVICE_STOP_TIMEOUT)
            for task in pending:
                log.error("service %s did not stop within %.0f s", task.get_name(), SERVICE_STOP_TIMEOUT)

    # --- shut-down --------------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closing:
            await super().close()  # discord.py's close is idempotent: wait for the first one
            return
        self._closing = True
        self.stopping.set()
        if self._setup_started and not self._setup_done.is_set():
            # a cog still loading would open its resources after they were closed here (its cog_unload never
            # called, an aiosqlite thread left running, and the process never exits): let setup_hook finish
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._setup_done.wait(), SERVICE_STOP_TIMEOUT)
        await self._stop_services()
        try:
            await super().close()
        finally:
            workers = getattr(self, "workers", None)
            if workers is not None:
                await asyncio.to_thread(workers.close)
            session = getattr(self, "http_session", None)
            if session is not None and not session.closed:
                await session.close()
            store = getattr(self, "store", None)
            if store is not None:
                await store.close()


_start_up_frozen = False


def _freeze_start_up_objects() -> None:
    """Move what start-up built (modules, the artist index and its tagger, the cogs: ~70,000 objects the
    collector tracks, all kept for the life of the process) out of the collector's sight, once per process:
    a full collection stops the event loop while it walks every tracked object, and during a big ingest each
    one cost ~90 ms of the loop's CPU with ~190,000 of them on the shared test machine (bench_fanout --stalls)."""
    global _start_up_frozen
    if _start_up_frozen:  # tests start many bots in one process: only the first start-up is kept for good
        return
    _start_up_frozen = True
    gc.collect()  # start-up's garbage goes first: a frozen object is never collected
    gc.freeze()


async def run_bot(config: Config, *, err: Any = None) -> int:
    """`kpopnews run`: runs the bot until SIGINT/SIGTERM (exit 0). A missing or rejected token, or a database
    that cannot be used, is one line on stderr and exit 2. The token is never logged."""
    err = err or sys.stderr
    token = config.discord.token.strip()
    if not token:
        print(
            "kpopnews: no Discord bot token: set the DISCORD_TOKEN environment variable or [discord] token",
            file=err,
        )
        return 2
    point_discord_at(config.discord.api_base, config.discord.gateway_url)
    # its only INFO line is "logging in using static token": noise before a rejected token's one clear line
    logging.getLogger("discord.client").setLevel(logging.WARNING)
    bot = KpopNewsBot(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform or thread
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    runner = asyncio.create_task(bot.start(token), name="discord")
    stopped_by_signal = False
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not runner.done():
            log.info("stopping: finishing in-flight work")
            stopped_by_signal = True
            return 0
        exc = runner.exception()
        if exc is None:
            return 0
        return _report_failure(exc, config, err)
    finally:
        stopper.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
        await bot.close()
        if not runner.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(runner, SERVICE_STOP_TIMEOUT)
        if stopped_by_signal:
            log.info("stopped")


def _report_failure(exc: BaseException, config: Config, err: Any) -> int:
    """One clear line for what stopped the bot; returns the exit status."""
    if isinstance(exc, discord.LoginFailure):
        print(
            "kpopnews: Discord rejected the bot token (401 Unauthorized): check DISCORD_TOKEN or [discord] token",
            file=err,
        )
        return 2
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        print("kpopnews: Discord refused the gateway intents the bot asked for (close code 4014)", file=err)
        return 2
    if isinstance(exc, StoreError):
        print(f"kpopnews: {exc}", file=err)
        return 2
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        where = config.discord.api_base or DISCORD_API_BASE
        print(f"kpopnews: cannot reach Discord at {where}: {exc}", file=err)
        return 1
    if isinstance(exc, discord.ConnectionClosed):
        print(
            f"kpopnews: Discord closed the gateway connection (code {exc.code}): {exc.reason or 'no reason'}",
            file=err,
        )
        return 1
    log.error("the bot stopped on an unexpected error", exc_info=exc)
    print(f"kpopnews: the bot stopped: {type(exc).__name__}: {exc}", file=err)
    return 1
