"""The real KpopNewsBot (in-process and as `kpopnews run`) against FakeDiscord over loopback."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import discord
import pytest
import yarl
from discord import app_commands

from bot.config import SourceConfig
from bot.discord_bot import (
    COMMANDS_HASH_KEY,
    DISCORD_API_BASE,
    KpopNewsBot,
    UserFacingError,
    point_discord_at,
)
from bot.store import Store
from tests.support import sql
from tests.support.bot_harness import (
    BotHarness,
    bot_config,
    bot_process,
    fake_discord_with_bot,
    running_bot,
    write_config,
)
from tests.support.discord_server import FakeDiscord

# named like the real outlets, but on a closed loopback port: the poller (if running) never leaves the machine
SOURCES = (
    SourceConfig("Koreaboo", "http://127.0.0.1:9/koreaboo/feed"),
    SourceConfig("Soompi", "http://127.0.0.1:9/soompi/feed"),
)


class BotWithTestCommands(KpopNewsBot):
    """The real bot plus commands that fail, to see the global error handler at work."""

    async def setup_hook(self) -> None:
        @self.tree.command(name="boom", description="Fails with a bug")
        async def boom(interaction: discord.Interaction) -> None:
            raise RuntimeError("a bug in a command")

        @self.tree.command(name="refuse", description="Refuses politely")
        async def refuse(interaction: discord.Interaction) -> None:
            raise UserFacingError("That artist is not one I know yet.")

        @self.tree.command(name="late-boom", description="Defers, then fails")
        async def late_boom(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True)
            raise RuntimeError("a bug after the defer")

        @self.tree.command(name="mods", description="Needs Manage Server, checked at run time")
        @app_commands.checks.has_permissions(manage_guild=True)
        async def mods(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("welcome, moderator")

        await super().setup_hook()


async def test_bot_connects_syncs_and_answers_about(tmp_path: Path) -> None:
    async with fake_discord_with_bot(tmp_path, sources=SOURCES) as h:
        assert h.bot.is_ready() and h.bot.get_guild(h.guild.id) is not None
        identify = h.server.identify_payloads[0]
        assert identify["intents"] == discord.Intents(guilds=True).value  # the minimum, nothing privileged
        assert h.server.stats.command_syncs == 1 and h.bot.commands_synced
        assert "about" in {c["name"] for c in h.server.commands}
        interaction = await h.server.invoke("about", channel_id=h.channel("news").id)
        reply = await interaction.reply()
        assert interaction.ephemeral
        embed = reply["embeds"][0]
        assert embed["title"] == "About KpopNews"
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert "**Koreaboo**" in fields["Sources"] and "**Soompi**" in fields["Sources"]
        assert "`/about`" in fields["Commands"]
        assert "github.com" in fields["Help"]
        assert interaction.callback is not None
        assert interaction.callback["data"]["allowed_mentions"] == {"parse": []}
    assert h.server.stats.late_interaction_callbacks == 0


async def test_commands_sync_only_when_definitions_change(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        server.add_guild()
        config = bot_config(server, tmp_path / "bot.db")
        async with running_bot(server, config) as bot:
            assert bot.commands_synced
        async with running_bot(server, config) as bot:
            assert not bot.commands_synced  # same definitions, same application: no PUT
            interaction = await server.invoke("about")
            assert (await interaction.reply())["embeds"]
        assert server.stats.command_syncs == 1
        async with running_bot(server, config, bot_class=BotWithTestCommands) as bot:
            assert bot.commands_synced  # a new command: synced
        assert server.stats.command_syncs == 2
        assert "boom" in {c["name"] for c in server.commands}
        store = await Store.open(config.storage.database)
        try:
            assert await store.meta.get(COMMANDS_HASH_KEY)
        finally:
            await store.close()


async def test_a_database_moved_to_another_api_syncs_again(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    async with FakeDiscord(application_id=4242, token="4242.FAKE.same") as first:
        first.add_guild()
        async with running_bot(first, bot_config(first, database)) as bot:
            assert bot.commands_synced
    # the same application on a fresh server (another port), which has no commands: they must be sent
    async with FakeDiscord(application_id=4242, token="4242.FAKE.same") as second:
        second.add_guild()
        async with running_bot(second, bot_config(second, database)) as bot:
            assert bot.commands_synced
            interaction = await second.invoke("about")
            assert (await interaction.reply())["embeds"]
        assert second.stats.command_syncs == 1


async def test_errors_answer_the_user_in_words(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with fake_discord_with_bot(tmp_path, bot_class=BotWithTestCommands) as h:
        boom = await h.server.invoke("boom")
        reply = await boom.reply()
        assert boom.ephemeral and "something went wrong" in reply["content"]
        refused = await h.server.invoke("refuse")
        assert (await refused.reply())["content"] == "That artist is not one I know yet."
        late = await h.server.invoke("late-boom")
        followups = await late.wait_for_followups(1)
        assert "something went wrong" in followups[0]["content"]
        fan = h.server.member(h.guild.id, "fan")
        denied = await h.server.invoke("mods", user_id=fan.id)
        assert "Manage Server" in (await denied.reply())["content"]
        # a command Discord still shows but the bot no longer has (a stale client): answered in words too
        h.server.commands.append(dict(h.server.commands[0], id=str(h.server.snowflake()), name="retired"))
        stale = await h.server.invoke("retired")
        assert "changed since Discord last loaded it" in (await stale.reply())["content"]
        mod = h.server.member(h.guild.id, "mod", permissions=0x20)
        allowed = await h.server.invoke("mods", user_id=mod.id)
        assert (await allowed.reply())["content"] == "welcome, moderator"
    failures = [r for r in caplog.records if r.name == "bot.discord_bot" and "/boom failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None and failures[0].levelno == logging.ERROR
    assert f"guild {h.guild.id}" in failures[0].getMessage()
    assert not [r for r in caplog.records if "Ignoring exception" in r.getMessage()]  # discord.py's default


async def test_services_run_restart_and_stop_with_the_bot(tmp_path: Path) -> None:
    events: list[str] = []

    class BotWithServices(KpopNewsBot):
        async def setup_hook(self) -> None:
            crashes = 0

            async def ticker() -> None:
                events.append("ticker started")
                try:
                    await asyncio.Event().wait()
                finally:
                    events.append("ticker stopped")

            async def flaky() -> None:
                nonlocal crashes
                crashes += 1
                events.append(f"flaky run {crashes}")
                if crashes == 1:
                    raise RuntimeError("first run fails")
                await asyncio.Event().wait()

            self.add_service("ticker", ticker)
            self.add_service("flaky", flaky)
            await super().setup_hook()

    async with FakeDiscord() as server:
        server.add_guild()
        async with running_bot(
            server, bot_config(server, tmp_path / "bot.db"), bot_class=BotWithServices
        ) as bot:
            assert events[:2] == ["ticker started", "flaky run 1"]
            with pytest.raises(ValueError):
                bot.add_service("ticker", lambda: asyncio.sleep(0))
            await server.wait_for(lambda: "flaky run 2" in events, what="the flaky service restarted")
            assert {"flaky", "ticker"} <= set(bot.service_names())
        assert events[-1] == "ticker stopped" and bot.service_names() == []
        with pytest.raises(ValueError):  # the database is closed
            await sql.rows(bot.store, "SELECT 1")
        assert bot.http_session.closed


async def test_a_cog_that_fails_to_load_is_an_error_and_the_others_still_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_cog.py").write_text('raise RuntimeError("a bug in the cog")\n', encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    async with fake_discord_with_bot(tmp_path) as h:
        await h.bot._load_extension("broken_cog")
        await h.bot._load_extension("cogs.no_such_cog")
        assert "broken_cog" not in h.bot.extensions and "cogs.about" in h.bot.extensions
        interaction = await h.server.invoke("about")
        assert (await interaction.reply())["embeds"]
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and "failed to load" in r.getMessage()]
    assert [r.getMessage().split()[1] for r in failed] == ["broken_cog", "cogs.no_such_cog"]
    assert failed[0].exc_info is not None and "a bug in the cog" in str(failed[0].exc_info[1])


async def test_point_discord_at_empty_means_discord() -> None:
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    try:
        point_discord_at("http://127.0.0.1:9/api/v10/", "ws://127.0.0.1:9/gateway")
        assert discord.http.Route.BASE == "http://127.0.0.1:9/api/v10"
        assert discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL("ws://127.0.0.1:9/gateway")
        point_discord_at("", "")
        assert discord.http.Route.BASE == DISCORD_API_BASE
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def test_harness_fixture_gives_a_ready_bot(bot_harness: BotHarness) -> None:
    assert bot_harness.bot.is_ready()
    assert {c.name for c in bot_harness.bot.get_guild(bot_harness.guild.id).text_channels} == {
        "general",
        "news",
    }


# --- `kpopnews run` as a process ----------------------------------------------------------------------------


async def test_kpopnews_run_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        guild = server.add_guild(channels=("general",))
        config_path = write_config(tmp_path / "config.toml", server, tmp_path / "bot.db", sources=SOURCES)
        async with bot_process(config_path) as proc:
            await proc.wait_for_log("ready:")
            interaction = await server.invoke("about", guild_id=guild.id)
            reply = await interaction.reply(timeout=10)
            assert reply["embeds"][0]["title"] == "About KpopNews"
            assert await proc.stop(signal.SIGTERM) == 0
        stderr = proc.stderr_text()
        shutdown = stderr[stderr.index("stopping:") :]
        assert "stopped" in shutdown and "Traceback" not in shutdown and "ERROR" not in shutdown
        assert server.token not in stderr
        assert server.stats.command_syncs == 1
        await server.wait_for(lambda: server.connection_count == 0, what="the gateway socket to close")


async def test_kpopnews_run_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        server.add_guild()
        config_path = write_config(tmp_path / "config.toml", server, tmp_path / "bot.db")
        async with bot_process(config_path) as proc:
            await proc.wait_for_log("ready:")
            assert await proc.stop(signal.SIGINT) == 0


async def test_kpopnews_run_wrong_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        server.add_guild()
        wrong = "MTIzNDU2.wrong.token-value"
        config_path = write_config(tmp_path / "config.toml", server, tmp_path / "bot.db", token=wrong)
        async with bot_process(config_path) as proc:
            assert await proc.wait() == 2
        lines = [line for line in proc.stderr_text().splitlines() if line.strip()]
        assert len(lines) == 1 and "rejected the bot token" in lines[0]
        assert wrong not in proc.stderr_text()
        assert server.stats.responses[401] == 1 and server.stats.identifies == 0


async def test_kpopnews_run_token_from_environment_wins(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        server.add_guild()
        config_path = write_config(
            tmp_path / "config.toml", server, tmp_path / "bot.db", token="file-token-wrong"
        )
        async with bot_process(config_path, env={"DISCORD_TOKEN": server.token}) as proc:
            await proc.wait_for_log("ready:")
            assert await proc.stop() == 0
        assert server.stats.identifies == 1


async def test_kpopnews_run_without_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        config_path = write_config(tmp_path / "config.toml", server, tmp_path / "bot.db", token="")
        async with bot_process(config_path) as proc:
            assert await proc.wait() == 2
        lines = [line for line in proc.stderr_text().splitlines() if line.strip()]
        assert len(lines) == 1 and "DISCORD_TOKEN" in lines[0]
        assert not server.requests  # nothing was sent anywhere


def test_about_embed_stays_within_discord_limits_with_many_sources() -> None:
    from bot.models import Source
    from cogs.about import about_embed
    from tests.support.discord_server import FormErrors, validate_embed

    sources = [
        Source(url=f"https://feeds.example/{i}", name=f"Outlet {i} 🎤 " + "*" * 40) for i in range(200)
    ]
    commands = [(f"command-{i}", "d" * 100) for i in range(30)]
    embed = about_embed("KpopNews", sources, commands).to_dict()
    errors = FormErrors()
    assert validate_embed(embed, errors, ["embed"]) <= 6000 and not errors, errors.tree
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Sources"].endswith("more") and "\\*" in fields["Sources"]  # markdown in names is escaped
    assert fields["Commands"].endswith("more")
