"""The real discord.py 2.7.1 client against FakeDiscord over loopback: the test server speaks Discord."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import discord
import pytest
import yarl
from discord import app_commands

from tests.support.discord_server import FakeDiscord, InvocationRefused, Permission


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
        yield fake


class SlashClient(discord.Client):
    """A plain client with a command tree: /echo (autocomplete on `text`) and /admin-only."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents(guilds=True), guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(self)
        self.seen_guild_removals: list[int] = []

        @self.tree.command(name="echo", description="Say it back")
        @app_commands.describe(text="What to say", channel="Where it was said")
        async def echo(
            interaction: discord.Interaction, text: str, channel: discord.TextChannel | None = None
        ) -> None:
            where = channel.name if channel else "here"
            await interaction.response.send_message(
                embed=discord.Embed(title=text, description=f"in {where}"), ephemeral=True
            )

        @echo.autocomplete("text")
        async def echo_text(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=f"{current}-{i}", value=f"{current}-{i}") for i in range(40)][
                :25
            ]

        @self.tree.command(name="greedy", description="Offers too many choices")
        async def greedy(interaction: discord.Interaction, text: str) -> None:  # pragma: no cover
            await interaction.response.send_message(text)

        @greedy.autocomplete("text")
        async def greedy_text(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=f"{current}-{i}", value=str(i)) for i in range(26)]

        @self.tree.command(name="slow", description="Defers, then edits")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content="done thinking")
            await interaction.followup.send("and one more thing", wait=True)

        @self.tree.command(name="admin-only", description="Needs Manage Server")
        @app_commands.default_permissions(manage_guild=True)
        async def admin_only(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("ok")

        @self.tree.command(name="pages", description="A message with a button")
        async def pages(interaction: discord.Interaction) -> None:
            view = discord.ui.View()
            view.add_item(discord.ui.Button(label="Next", custom_id="page:2"))
            await interaction.response.send_message("page 1", view=view)

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.seen_guild_removals.append(guild.id)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.component:
            await interaction.response.edit_message(content="page 2", view=None)


@contextlib.asynccontextmanager
async def running(client: discord.Client, token: str) -> AsyncIterator[discord.Client]:
    """Start the client, wait until ready (or its failure), close it afterwards."""
    task = asyncio.create_task(client.start(token))
    try:
        async with asyncio.timeout(10):
            while not client.is_ready():
                if task.done():
                    task.result()  # raises the client's error (LoginFailure, ...)
                    raise AssertionError("the client stopped before it was ready")
                await asyncio.sleep(0.02)
        yield client
    finally:
        await client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


def plain_client() -> discord.Client:
    return discord.Client(intents=discord.Intents(guilds=True), guild_ready_timeout=0.1)


async def test_login_ready_and_guild_visible(server: FakeDiscord) -> None:
    guild = server.add_guild("K-pop Fans", channels=("general", "news"))
    async with running(plain_client(), server.token) as client:
        assert client.user is not None and client.user.id == server.bot_user_id
        assert client.application_id == server.application_id
        seen = client.get_guild(guild.id)
        assert seen is not None and seen.name == "K-pop Fans"
        assert sorted(c.name for c in seen.text_channels) == ["general", "news"]
        assert seen.me is not None and seen.me.guild_permissions.embed_links
    identify = server.identify_payloads[0]
    assert identify["intents"] == discord.Intents(guilds=True).value
    assert server.stats.identifies == 1 and server.stats.heartbeats >= 1


async def test_send_embed_is_recorded_with_nonce(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel = guild.channel("general")
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        embed = discord.Embed(title="V and IU", url="https://example.com/story", description="A story")
        sent = await target.send(embed=embed, allowed_mentions=discord.AllowedMentions.none())
    posted = server.messages(channel.id)
    assert [m["id"] for m in posted] == [str(sent.id)]
    assert posted[0]["embeds"][0]["title"] == "V and IU"
    payload = server.create_payload(sent.id)
    assert payload["allowed_mentions"] == {"parse": []}
    assert payload["enforce_nonce"] is True and payload["nonce"]


async def test_repeated_nonce_returns_the_original_message(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel = guild.channel("general")
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        first = await target.send("hello", nonce="delivery-42")
        again = await target.send("hello", nonce="delivery-42")
        other = await target.send("hello", nonce="delivery-43")
    assert again.id == first.id and other.id != first.id
    assert len(server.messages(channel.id)) == 2
    assert server.stats.nonce_replays == 1


async def test_429_with_via_is_retried_and_delivered_once(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel = guild.channel("general")
    fault = server.inject("POST", rf"/channels/{channel.id}/messages", 429, retry_after=0.2)
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        await target.send("once")
    assert fault.hits == 1
    assert [m["content"] for m in server.messages(channel.id)] == ["once"]
    assert server.stats.injected[429] == 1
    assert server.stats.ratelimited == 0  # injected, not caused by the client


async def test_429_without_via_raises_at_once(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel = guild.channel("general")
    server.inject("POST", rf"/channels/{channel.id}/messages", 429, via=False)
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as caught:
            await target.send("cloudflare")
    assert caught.value.status == 429
    assert server.messages(channel.id) == []


async def test_502_is_retried_and_503_raises(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel = guild.channel("general")
    server.inject("POST", rf"/channels/{channel.id}/messages", 502)
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        await target.send("after a 502")
        server.inject("POST", rf"/channels/{channel.id}/messages", 503)
        with pytest.raises(discord.DiscordServerError) as caught:
            await target.send("into a 503")
    assert caught.value.status == 503
    assert [m["content"] for m in server.messages(channel.id)] == ["after a 502"]


async def test_lost_reply_then_resend_with_same_nonce_posts_once(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel = guild.channel("general")
    # the message is stored, but the bot sees a 500: discord.py retries with the same body and nonce
    server.inject("POST", rf"/channels/{channel.id}/messages", 500, after=True)
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        sent = await target.send("exactly once", nonce="story-7-chan")
    assert [m["id"] for m in server.messages(channel.id)] == [str(sent.id)]
    assert server.stats.nonce_replays == 1


async def test_discord_limits_answer_400_invalid_form_body(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel = guild.channel("general")
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as caught:
            await target.send(embed=discord.Embed(title="t", description="x" * 4097))
        assert caught.value.status == 400 and caught.value.code == 50035
        assert "embeds.0.description" in caught.value.text
        too_big = discord.Embed(title="t" * 256, description="d" * 4096)
        for i in range(7):
            too_big.add_field(name=f"f{i}", value="v" * 250)
        with pytest.raises(discord.HTTPException, match="6000"):
            await target.send(embed=too_big)
        with pytest.raises(discord.HTTPException, match="2000"):
            await target.send("x" * 2001)
        with pytest.raises(discord.HTTPException, match=r"embeds\.0\.image\.url"):
            await target.send(embed=discord.Embed(title="t").set_image(url="/relative/lead.jpg"))
        with pytest.raises(discord.HTTPException, match="nonce"):
            await target.send("hi", nonce="n" * 26)
    assert server.messages(channel.id) == []


async def test_per_channel_limit_headers_keep_the_client_under_it(server: FakeDiscord) -> None:
    server.channel_message_limit = (2, 0.5)
    guild = server.add_guild()
    channel = guild.channel("general")
    async with running(plain_client(), server.token) as client:
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        await asyncio.gather(*(target.send(f"m{i}") for i in range(5)))
    assert len(server.messages(channel.id)) == 5
    assert server.stats.route_ratelimited == 0  # discord.py honours X-RateLimit-Remaining/Reset-After


async def test_global_limit_answers_429_global(server: FakeDiscord) -> None:
    server.global_limit = 3
    guild = server.add_guild()
    channel = guild.channel("general")
    async with running(plain_client(), server.token) as client:
        server.global_limit = 3  # a full bucket for this burst
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        server.channel_message_limit = None
        await asyncio.gather(*(target.send(f"m{i}") for i in range(6)))
    assert len(server.messages(channel.id)) == 6  # retried after the global 429s
    assert server.stats.global_ratelimited >= 1
    assert server.stats.ratelimited == server.stats.global_ratelimited


async def test_channel_permissions_and_unknown_channel(server: FakeDiscord) -> None:
    guild = server.add_guild()
    muted = server.add_channel(guild.id, "announcements", bot_can_send=False)
    no_embeds = server.add_channel(guild.id, "text-only", bot_can_embed=False)
    hidden = server.add_channel(guild.id, "staff", bot_can_view=False)
    async with running(plain_client(), server.token) as client:
        seen = client.get_guild(guild.id)
        assert seen is not None
        muted_channel = seen.get_channel(muted.id)
        assert isinstance(muted_channel, discord.TextChannel)
        assert not muted_channel.permissions_for(seen.me).send_messages  # the cache agrees with the server
        with pytest.raises(discord.Forbidden) as caught:
            await muted_channel.send("no")
        assert caught.value.code == 50013
        text_only = seen.get_channel(no_embeds.id)
        assert isinstance(text_only, discord.TextChannel)
        await text_only.send("words are fine")
        with pytest.raises(discord.Forbidden):
            await text_only.send(embed=discord.Embed(title="no embeds"))
        with pytest.raises(discord.Forbidden) as caught:
            await client.http.send_message(hidden.id, params=_params("hidden"))
        assert caught.value.code == 50001
        with pytest.raises(discord.NotFound) as caught:
            await client.http.send_message(123456789, params=_params("nowhere"))
        assert caught.value.code == 10003
        server.set_bot_channel_permissions(muted.id, send=True)
        await server.wait_for(
            lambda: muted_channel.permissions_for(seen.me).send_messages, what="CHANNEL_UPDATE"
        )
        await muted_channel.send("now allowed")
    assert [m["content"] for m in server.messages(muted.id)] == ["now allowed"]
    assert server.stats.invalid_requests == 3  # the 403s; a 404 is not an "invalid request"


def _params(content: str) -> discord.http.MultipartParameters:
    return discord.http.handle_message_parameters(content=content)


async def test_commands_synced_with_ids_and_limits_checked(server: FakeDiscord) -> None:
    server.add_guild()
    async with running(SlashClient(), server.token):
        pass
    assert server.stats.command_syncs == 1
    names = sorted(c["name"] for c in server.commands)
    assert names == ["admin-only", "echo", "greedy", "pages", "slow"]
    assert all(c["id"] and c["application_id"] == str(server.application_id) for c in server.commands)
    bad = SlashClient()

    @bad.tree.command(name="long", description="d" * 101)  # discord.py checks names, not this
    async def too_long(interaction: discord.Interaction) -> None:  # pragma: no cover - never invoked
        pass

    with pytest.raises(discord.HTTPException) as caught:
        async with running(bad, server.token):
            pass
    assert caught.value.code == 50035 and "description" in caught.value.text
    assert server.stats.command_syncs == 1  # the refused sync changed nothing


async def test_slash_command_round_trip(server: FakeDiscord) -> None:
    guild = server.add_guild(channels=("general", "news"))
    news = guild.channel("news")
    async with running(SlashClient(), server.token):
        interaction = await server.invoke("echo", {"text": "annyeong", "channel": news.id}, guild_id=guild.id)
        reply = await interaction.reply()
        assert reply["embeds"][0]["title"] == "annyeong"
        assert reply["embeds"][0]["description"] == "in news"  # channel option resolved
        assert interaction.ephemeral
        slow = await server.invoke("slow")
        assert (await slow.response())["type"] == 5
        assert (await slow.reply())["content"] == "done thinking"
        followups = await slow.wait_for_followups(1)
        assert followups[0]["content"] == "and one more thing"
    assert server.stats.late_interaction_callbacks == 0


async def test_autocomplete_and_button_click(server: FakeDiscord) -> None:
    server.add_guild()
    async with running(SlashClient(), server.token):
        choices = await server.autocomplete("echo", {"text": "jimin"}, focused="text")
        assert len(choices) == 25 and choices[0] == {"name": "jimin-0", "value": "jimin-0"}
        greedy = await server.invoke("greedy", {"text": "x"}, focused="text")
        await server.wait_for(lambda: server.stats.responses[400] == 1, what="26 choices refused")
        assert greedy.callback is None  # Discord answers 400: the user sees no choices at all
        pages = await server.invoke("pages")
        message = await pages.reply()
        click = await server.click(message, "page:2")
        updated = await click.reply()
        assert updated["id"] == message["id"] and updated["content"] == "page 2"


async def test_default_member_permissions_are_respected(server: FakeDiscord) -> None:
    guild = server.add_guild()
    fan = server.member(guild.id, "fan")
    admin = server.member(guild.id, "admin", permissions=Permission.MANAGE_GUILD)
    async with running(SlashClient(), server.token):
        with pytest.raises(InvocationRefused):
            await server.invoke("admin-only", user_id=fan.id)
        allowed = await server.invoke("admin-only", user_id=admin.id)
        assert (await allowed.reply())["content"] == "ok"
        # a server that granted the command to everyone: Discord dispatches it, the bot must check itself
        granted = await server.invoke("admin-only", user_id=fan.id, respect_default_permissions=False)
        assert (await granted.reply())["content"] == "ok"
        assert int(granted.payload["member"]["permissions"]) & Permission.MANAGE_GUILD == 0


async def test_answering_twice_and_late_answers_are_refused(server: FakeDiscord) -> None:
    server.add_guild()
    client = SlashClient()
    errors: list[Exception] = []

    @client.tree.command(name="twice", description="Answers twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("one")
        try:
            await client.http.request(  # bypass discord.py's own is_done() guard
                discord.http.Route(
                    "POST",
                    "/interactions/{webhook_id}/{webhook_token}/callback",
                    webhook_id=interaction.id,
                    webhook_token=interaction.token,
                ),
                json={"type": 4, "data": {"content": "two"}},
            )
        except discord.HTTPException as exc:
            errors.append(exc)

    async with running(client, server.token):
        interaction = await server.invoke("twice")
        assert (await interaction.reply())["content"] == "one"
        await server.wait_for(lambda: errors, what="the second answer to fail")
    assert isinstance(errors[0], discord.HTTPException) and errors[0].code == 40060


async def test_op7_reconnect_resumes_and_replays_missed_events(server: FakeDiscord) -> None:
    guild = server.add_guild()
    async with running(SlashClient(), server.token) as client:
        await server.reconnect()
        assert server.stats.resumes == 1 and server.stats.identifies == 1
        assert server.gateway_paths == ["/gateway", "/gateway/resume"]  # READY's resume_gateway_url
        interaction = await server.invoke("echo", {"text": "after resume"})
        assert (await interaction.reply())["embeds"][0]["title"] == "after resume"
        # events sent while the client is between sockets are replayed on RESUME
        sessions = list(server._sessions.values())
        await server.drop_connections(wait=False)
        server.remove_guild(guild.id)
        await server.wait_for(lambda: server.stats.resumes == 2, what="the second resume")
        await server.wait_for(
            lambda: client.seen_guild_removals == [guild.id], what="the replayed GUILD_DELETE"
        )
        assert len(sessions) == 1 and server.stats.identifies == 1


class QuickReidentifyClient(discord.Client):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass  # discord.py sleeps 5 s before every IDENTIFY but the first


async def test_invalid_session_not_resumable_identifies_again(server: FakeDiscord) -> None:
    server.add_guild()
    client = QuickReidentifyClient(intents=discord.Intents(guilds=True), guild_ready_timeout=0.1)
    async with running(client, server.token):
        await server.invalidate_session(resumable=False)
        assert server.stats.identifies == 2
        await server.wait_for(lambda: client.is_ready() and client.guilds, what="the client ready again")
        await server.invalidate_session(resumable=True)
        assert server.stats.resumes == 1


async def test_wrong_token_is_a_login_failure(server: FakeDiscord) -> None:
    with pytest.raises(discord.LoginFailure):
        async with running(plain_client(), "not-the-token"):
            pass
    assert server.stats.responses[401] == 1
    assert server.stats.identifies == 0


async def test_gateway_refuses_wrong_token_and_privileged_intents(server: FakeDiscord) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for token, intents, code in (("wrong", 1, 4004), (server.token, 1 | 1 << 15, 4014)):
            async with session.ws_connect(server.gateway_url + "?v=10&encoding=json") as ws:
                hello = await ws.receive_json()
                assert hello["op"] == 10
                await ws.send_json({"op": 2, "d": {"token": token, "intents": intents, "properties": {}}})
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code
    assert server.stats.identifies == 0
