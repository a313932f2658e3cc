"""Start FakeDiscord and the real KpopNewsBot against it: in-process, or as the `kpopnews run` process.

In-process (most e2e tests), with the fixtures `bot_harness` and `fake_discord` of tests/conftest.py:

    async def test_about(bot_harness: BotHarness) -> None:
        h = bot_harness                                   # h.server, h.bot, h.config, h.guild, h.database
        interaction = await h.server.invoke("about", channel_id=h.channel("news").id)
        reply = await interaction.reply()

or, for your own set-up, the context managers `fake_discord_with_bot(tmp_path, ...)` (server + guild + bot) and
`running_bot(server, config)` (a bot against a server you made; use it twice for a restart). `bot_config(server,
database, sources=...)` builds the Config; sources default to none, so nothing polls the internet.

As a process (`kpopnews run --config …`, for signals and kill -9): `write_config(path, server, database, ...)`,
then `async with bot_process(config_path) as proc:` … `await proc.wait_for_log("ready:")`, `proc.kill()`,
`await proc.stop()` (SIGTERM, returns the exit status), `proc.stderr_text()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

from bot.config import Config, DeliveryConfig, DiscordConfig, PollingConfig, SourceConfig, StorageConfig
from bot.discord_bot import KpopNewsBot, point_discord_at
from tests.support.cli import child_env, kpopnews_command
from tests.support.discord_server import FakeChannel, FakeDiscord, FakeGuild
from tests.support.feed_server import FeedServer


def bot_config(
    server: FakeDiscord,
    database: str | Path,
    *,
    sources: Iterable[SourceConfig] = (),
    polling: PollingConfig | None = None,
    delivery: DeliveryConfig | None = None,
    token: str | None = None,
) -> Config:
    """A configuration pointing at `server`, with its token, a database file and (by default) no sources."""
    return Config(
        discord=DiscordConfig(
            token if token is not None else server.token, server.api_base, server.gateway_url
        ),
        storage=StorageConfig(str(database)),
        polling=polling or PollingConfig(),
        delivery=delivery or DeliveryConfig(),
        sources=tuple(sources),
    )


@contextlib.asynccontextmanager
async def running_bot(
    server: FakeDiscord,
    config: Config,
    *,
    ready_timeout: float = 15.0,
    guild_ready_timeout: float = 0.1,
    bot_class: type[KpopNewsBot] = KpopNewsBot,
    **bot_options: Any,
) -> AsyncIterator[KpopNewsBot]:
    """A KpopNewsBot (or `bot_class`) connected to `server` and ready (guilds loaded, services started);
    closed on exit."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    point_discord_at(config.discord.api_base, config.discord.gateway_url)
    bot = bot_class(config, guild_ready_timeout=guild_ready_timeout, **bot_options)
    task = asyncio.create_task(bot.start(config.discord.token), name="bot-under-test")
    try:
        async with asyncio.timeout(ready_timeout):
            while not bot.is_ready():
                if task.done():
                    task.result()  # raises why the bot stopped (LoginFailure, StoreError, …)
                    raise AssertionError("the bot stopped before it was ready")
                await asyncio.sleep(0.02)
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


@dataclass
class BotHarness:
    server: FakeDiscord
    bot: KpopNewsBot
    config: Config
    guild: FakeGuild
    database: Path

    def channel(self, name: str) -> FakeChannel:
        return self.guild.channel(name)


@contextlib.asynccontextmanager
async def fake_discord_with_bot(
    tmp_path: Path,
    *,
    server: FakeDiscord | None = None,
    sources: Iterable[SourceConfig] = (),
    channels: Iterable[str] = ("general", "news"),
    server_options: Mapping[str, Any] | None = None,
    config: Config | None = None,
    **bot_options: Any,
) -> AsyncIterator[BotHarness]:
    """FakeDiscord (yours or a new one) with a guild holding `channels`, and a ready KpopNewsBot on a tmp db."""
    async with contextlib.AsyncExitStack() as stack:
        if server is None:
            server = await stack.enter_async_context(FakeDiscord(**dict(server_options or {})))
        guild = server.add_guild("K-pop Fans", channels=channels)
        database = tmp_path / "kpopnews.db"
        config = config or bot_config(server, database, sources=sources)
        bot = await stack.enter_async_context(running_bot(server, config, **bot_options))
        yield BotHarness(server, bot, config, guild, Path(config.storage.database))


# --- the bot as a process -----------------------------------------------------------------------------------


def write_config(
    path: Path,
    server: FakeDiscord,
    database: str | Path,
    *,
    sources: Iterable[SourceConfig] = (),
    token: str | None = None,
    interval_seconds: float = 300,
    fetch_article_pages: bool = True,
) -> Path:
    """A TOML configuration file for `kpopnews run --config path` against `server`. token=None: the server's;
    token="": none in the file (give DISCORD_TOKEN instead)."""
    token = server.token if token is None else token
    lines = [
        "[discord]",
        f"token = {_toml(token)}",
        f"api_base = {_toml(server.api_base)}",
        f"gateway_url = {_toml(server.gateway_url)}",
        "",
        "[storage]",
        f"database = {_toml(str(database))}",
        "",
        "[polling]",
        f"interval_seconds = {float(interval_seconds)}",
        f"fetch_article_pages = {'true' if fetch_article_pages else 'false'}",
    ]
    sources = list(sources)
    for source in sources:
        lines += ["", "[[sources]]", f"name = {_toml(source.name)}", f"url = {_toml(source.url)}"]
    if not sources:
        lines.insert(0, "sources = []")  # no [[sources]]: the built-in list would poll the internet
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class BotProcess:
    """A running `kpopnews run`; its stderr is collected line by line."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def stderr_text(self) -> str:
        return "".join(self.lines)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode("utf-8", "replace"))
            self._changed.set()
        self._changed.set()

    async def wait_for_log(self, text: str, timeout: float = 20.0) -> str:  # noqa: ASYNC109 - test API
        """The first stderr line containing `text` (raises TimeoutError with the stderr so far)."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self.process.returncode is not None and self._reader is not None and self._reader.done():
                    raise AssertionError(
                        f"kpopnews exited {self.process.returncode} before logging {text!r}:\n{self.stderr_text()}"
                    )
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.2)

    async def wait(self, timeout: float = 20.0) -> int:  # noqa: ASYNC109 - test API
        returncode = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return returncode

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:  # noqa: ASYNC109 - test API
        """Send `sig` (SIGTERM by default) and return the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await self.wait(timeout)

    def kill(self) -> None:
        """kill -9: no clean-up at all."""
        if self.process.returncode is None:
            self.process.kill()


@contextlib.asynccontextmanager
async def bot_process(
    config_path: Path, *, env: Mapping[str, str] | None = None, args: Iterable[str] = ()
) -> AsyncIterator[BotProcess]:
    """`kpopnews run --config config_path` as a child process (DISCORD_TOKEN removed from the environment
    unless `env` sets it); killed on exit if still running."""
    process = await asyncio.create_subprocess_exec(
        *kpopnews_command(),
        "run",
        "--config",
        str(config_path),
        *args,
        cwd=str(config_path.parent),
        env=child_env({"PYTHONUNBUFFERED": "1", **(env or {})}),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    handle = BotProcess(process)
    handle._reader = asyncio.create_task(handle._read())
    try:
        yield handle
    except BaseException:
        # a failing test shows what the bot logged (pytest prints a failed test's captured output)
        print(f"--- the last lines kpopnews run logged (pid {process.pid}) ---")
        print("".join(handle.lines[-80:]), end="")
        raise
    finally:
        handle.kill()
        with contextlib.suppress(Exception):
            await handle.wait(10)


# --- crashing the bot on purpose ------------------------------------------------------------------------------


def one_feed_bot_config(
    tmp_path: Path, server: FakeDiscord, feeds: FeedServer, feed: str
) -> tuple[Path, Path]:
    """`kpopnews run`'s configuration for a bot polling one feed of `feeds` (as Koreaboo) every second, without
    article pages: the config file and the database it names."""
    database = tmp_path / "kpopnews.db"
    config = write_config(
        tmp_path / "config.toml",
        server,
        database,
        sources=[SourceConfig("Koreaboo", feeds.url(f"/dyn/{feed}"))],
        interval_seconds=1,
        fetch_article_pages=False,
    )
    return config, database


async def started_and_polled(process: BotProcess, server: FakeDiscord, feeds: FeedServer, feed: str) -> None:
    """Wait until the bot is ready and has polled `feed` once."""
    await process.wait_for_log("ready:")
    await server.wait_for(lambda: feeds.hits[f"/dyn/{feed}"] >= 1, 15, what="the first poll")


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (the poller's feed-parser processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_9_tree(process: asyncio.subprocess.Process) -> None:
    """kill -9 as a supervisor does it (systemd kills the whole cgroup): the bot and its helper processes."""
    below = descendants(process.pid)
    process.kill()
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
