"""The real discord.py 2.7.1 client against FakeDiscord over loopback: the test server speaks Discord."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands

from tests.support.discord_server import (
    ChannelType,
    FakeDiscord,
    InvocationRefused,
    MessageFlag,
    Permission,
    shard_for,
)


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
        target = client.get_channel(channel.id)
        assert isinstance(target, discord.TextChannel)
        server.channel_message_limit = None
        await asyncio.gather(*(target.send(f"m{i}") for i in range(6)))
    assert len(server.messages(channel.id)) == 6  # retried after the global 429s
    assert server.stats.global_ratelimited >= 1
    assert server.stats.ratelimited == server.stats.global_ratelimited
    assert server.ledger.peak(server.token) <= 3  # never more than the limit in one second


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
    async with aiohttp.ClientSession() as session:
        for token, intents, code in (("wrong", 1, 4004), (server.token, 1 | 1 << 15, 4014)):
            async with session.ws_connect(server.gateway_url + "?v=10&encoding=json") as ws:
                hello = await ws.receive_json()
                assert hello["op"] == 10
                await ws.send_json({"op": 2, "d": {"token": token, "intents": intents, "properties": {}}})
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code
    assert server.stats.identifies == 0


# --- channel kinds: forums, threads, announcements -------------------------------------------------------

NO_PINGS = discord.AllowedMentions.none()


async def test_forum_post_answers_a_thread_with_its_first_message_and_tags(server: FakeDiscord) -> None:
    server.channel_message_limit = None  # discord.py would sleep 5 s after the 5th post to the forum
    guild = server.add_guild()
    forum = server.add_channel(
        guild.id, "comebacks", type=ChannelType.FORUM, tags=["News", ("Comeback", "🔥")], require_tag=True
    )
    async with running(plain_client(), server.token) as client:
        seen = client.get_channel(forum.id)
        assert isinstance(seen, discord.ForumChannel)
        assert [t.name for t in seen.available_tags] == ["News", "Comeback"]
        assert seen.flags.require_tag
        comeback = seen.get_tag(forum.tag_id("Comeback"))
        assert comeback is not None and str(comeback.emoji) == "🔥"
        post = await seen.create_thread(
            name="BTS's V announces a solo comeback",
            content="The story",
            embed=discord.Embed(title="V comeback", url="https://example.com/v"),
            applied_tags=[comeback],
            allowed_mentions=NO_PINGS,
        )
        assert post.thread.type is discord.ChannelType.public_thread
        assert post.thread.parent_id == forum.id and post.thread.id == post.message.id
        assert post.thread.applied_tags == [comeback]
        assert post.message.channel.id == post.thread.id and post.message.embeds[0].title == "V comeback"
        await server.wait_for(lambda: client.get_channel(post.thread.id), what="THREAD_CREATE")
        # the first message lives in the thread's own list, so editing it works as for any message
        await post.message.edit(content="The story (updated)")
        await post.thread.send("a follow-up", allowed_mentions=NO_PINGS)
        with pytest.raises(discord.HTTPException) as caught:
            await seen.create_thread(name="untagged", content="no tag", allowed_mentions=NO_PINGS)
        assert caught.value.status == 400 and caught.value.code == 40067
        with pytest.raises(discord.HTTPException) as caught:
            await seen.create_thread(name="n" * 101, content="x", applied_tags=[comeback])
        assert caught.value.code == 50035 and "name" in caught.value.text
        with pytest.raises(discord.HTTPException) as caught:  # a tag of another forum
            await seen.create_thread(name="t", content="x", applied_tags=[discord.Object(id=1234567)])  # type: ignore[list-item]
        assert caught.value.code == 50035 and "applied_tags" in caught.value.text
        with pytest.raises(discord.HTTPException) as caught:
            await seen.create_thread(name="empty", applied_tags=[comeback])
        assert caught.value.code == 50006
        with pytest.raises(discord.HTTPException) as caught:  # a forum takes posts, not messages
            await client.http.send_message(forum.id, params=_params("hello"))
        assert caught.value.code == 40058
    [thread] = server.threads(forum.id)
    assert thread.applied_tags == [forum.tag_id("Comeback")] and thread.owner_id == server.bot_user_id
    assert [m["content"] for m in server.messages(thread.id)] == ["The story (updated)", "a follow-up"]
    assert server.create_payload(post.message.id)["allowed_mentions"] == {"parse": []}
    assert thread.message_count == 1  # Discord leaves the first message out of the count


async def test_forum_limits_and_permissions(server: FakeDiscord) -> None:
    guild = server.add_guild()
    forum = server.add_channel(guild.id, "news", type=ChannelType.FORUM, tags=[f"t{i}" for i in range(6)])
    with pytest.raises(ValueError):
        server.add_channel(guild.id, "too many", type=ChannelType.FORUM, tags=[f"t{i}" for i in range(21)])
    async with running(plain_client(), server.token) as client:
        seen = client.get_channel(forum.id)
        assert isinstance(seen, discord.ForumChannel)
        with pytest.raises(discord.HTTPException) as caught:
            await seen.create_thread(name="six", content="x", applied_tags=list(seen.available_tags))
        assert caught.value.code == 50035 and "5 or fewer" in caught.value.text
        post = await seen.create_thread(name="untagged is fine here", content="x")
        # "Create Posts" is SEND_MESSAGES on the forum; posting inside a post is SEND_MESSAGES_IN_THREADS
        server.set_channel_overwrite(forum.id, server.bot_user_id, deny=Permission.SEND_MESSAGES_IN_THREADS)
        with pytest.raises(discord.Forbidden) as caught:
            await post.thread.send("in the thread")
        assert caught.value.code == 50013
        server.set_channel_overwrite(forum.id, guild.bot_role_id, deny=Permission.SEND_MESSAGES)
        with pytest.raises(discord.Forbidden) as caught:
            await seen.create_thread(name="no", content="x")
        assert caught.value.code == 50013
        server.set_channel_overwrite(forum.id, server.bot_user_id)  # removed: threads may be posted in again
        await post.thread.send("in the thread")
        server.set_channel_overwrite(forum.id, guild.bot_role_id, deny=Permission.EMBED_LINKS)
        with pytest.raises(discord.Forbidden):
            await post.thread.send(embed=discord.Embed(title="no embeds"))
        server.set_channel_overwrite(forum.id, guild.everyone_role_id, deny=Permission.VIEW_CHANNEL)
        with pytest.raises(discord.Forbidden) as caught:
            await post.thread.send("hidden")
        assert caught.value.code == 50001
    assert [m["content"] for m in server.messages(post.thread.id)] == ["x", "in the thread"]


async def test_thread_on_a_message(server: FakeDiscord) -> None:
    guild = server.add_guild(channels=("general", "news"))
    general, news = guild.channel("general"), guild.channel("news")
    async with running(plain_client(), server.token) as client:
        channel = client.get_channel(general.id)
        assert isinstance(channel, discord.TextChannel)
        story = await channel.send("A story", allowed_mentions=NO_PINGS)
        thread = await story.create_thread(name="Talk about it", auto_archive_duration=60)
        assert thread.id == story.id and thread.parent_id == general.id
        assert thread.type is discord.ChannelType.public_thread and thread.auto_archive_duration == 60
        stored = server.message(story.id)
        assert stored["thread"]["id"] == str(thread.id) and stored["flags"] & MessageFlag.HAS_THREAD
        await thread.send("first reply", allowed_mentions=NO_PINGS)
        with pytest.raises(discord.HTTPException) as caught:
            await story.create_thread(name="again")
        assert caught.value.code == 160004
        other = await channel.send("Another", allowed_mentions=NO_PINGS)
        with pytest.raises(discord.HTTPException) as caught:
            await client.http.start_thread_with_message(
                general.id,
                other.id,
                name="x",
                auto_archive_duration=30,  # type: ignore[arg-type]
            )
        assert caught.value.code == 50035 and "auto_archive_duration" in caught.value.text
        with pytest.raises(discord.HTTPException) as caught:
            await other.create_thread(name="n" * 101)
        assert caught.value.code == 50035
        server.set_channel_overwrite(news.id, server.bot_user_id, deny=Permission.CREATE_PUBLIC_THREADS)
        news_channel = client.get_channel(news.id)
        assert isinstance(news_channel, discord.TextChannel)
        in_news = await news_channel.send("No threads here", allowed_mentions=NO_PINGS)
        with pytest.raises(discord.Forbidden) as caught:
            await in_news.create_thread(name="x")
        assert caught.value.code == 50013
    assert [m["content"] for m in server.messages(thread.id)] == ["first reply"]
    assert [t.name for t in server.threads(general.id)] == ["Talk about it"]


async def test_publishing_is_for_announcement_channels_and_limited_per_channel(server: FakeDiscord) -> None:
    assert server.publish_limit == (10, 3600.0)  # Discord: about 10 publishes per channel per hour
    server.channel_message_limit = None
    guild = server.add_guild()
    announcements = server.add_channel(guild.id, "announcements", type=ChannelType.ANNOUNCEMENT)
    other = server.add_channel(guild.id, "updates", type=ChannelType.ANNOUNCEMENT)
    client = discord.Client(
        intents=discord.Intents(guilds=True), guild_ready_timeout=0.1, max_ratelimit_timeout=30
    )
    async with running(client, server.token):
        channel = client.get_channel(announcements.id)
        assert isinstance(channel, discord.TextChannel) and channel.is_news()
        sent = [await channel.send(f"story {i}", allowed_mentions=NO_PINGS) for i in range(11)]
        for message in sent[:10]:
            await message.publish()
        assert all(server.message(m.id)["flags"] & MessageFlag.CROSSPOSTED for m in sent[:10])
        with pytest.raises(discord.HTTPException) as caught:
            await sent[0].publish()
        assert caught.value.code == 40033  # published already
        # the limit shows only in the 429 (as on Discord); its hour-long retry_after is more than the client's
        # max_ratelimit_timeout, so discord.py raises instead of sleeping
        with pytest.raises(discord.RateLimited) as limited:
            await sent[10].publish()
        assert limited.value.retry_after > 3000 and server.stats.route_ratelimited == 1
        general = client.get_channel(guild.channel("general").id)
        assert isinstance(general, discord.TextChannel)
        plain = await general.send("not an announcement", allowed_mentions=NO_PINGS)
        with pytest.raises(discord.HTTPException) as caught:
            await plain.publish()
        assert caught.value.code == 50024
        elsewhere = client.get_channel(other.id)
        assert isinstance(elsewhere, discord.TextChannel)
        fresh = await elsewhere.send("another channel, another bucket", allowed_mentions=NO_PINGS)
        server.set_bot_channel_permissions(other.id, send=False)
        with pytest.raises(discord.Forbidden) as caught:
            await fresh.publish()
        assert caught.value.code == 50013
        server.set_bot_channel_permissions(other.id, send=True)
        await fresh.publish()
    assert server.stats.publishes == 11
    async with aiohttp.ClientSession() as raw:
        url = f"{server.api_base}/channels/{announcements.id}/messages/{sent[10].id}/crosspost"
        async with raw.post(url, headers={"Authorization": f"Bot {server.token}"}) as response:
            body = await response.json()
            assert response.status == 429 and body["global"] is False and body["retry_after"] > 3000
            assert response.headers["Via"] and response.headers["X-RateLimit-Limit"] == "10"
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert response.headers["X-RateLimit-Scope"] == "user" and response.headers["X-RateLimit-Bucket"]
    assert server.stats.route_ratelimited == server.stats.ratelimited == 2


# --- roles and pings -------------------------------------------------------------------------------------


def _role_ids(message: discord.Message) -> list[int]:
    """The roles Discord says were mentioned (`mention_roles`); discord.py's raw_role_mentions reads the text."""
    return [role.id for role in message.role_mentions]


async def test_role_pings_follow_mentionable_and_mention_everyone(server: FakeDiscord) -> None:
    server.channel_message_limit = None  # discord.py would sleep 5 s after the 5th message
    guild = server.add_guild()
    channel_id = guild.channel("general").id
    fans = server.add_role(guild.id, "V Fans", mentionable=True)
    staff = server.add_role(guild.id, "Staff")
    content = f"<@&{fans.id}> <@&{staff.id}> new story! @everyone @here"
    both_roles = discord.AllowedMentions(
        everyone=False, users=False, roles=[discord.Object(fans.id), discord.Object(staff.id)]
    )
    async with running(plain_client(), server.token) as client:
        channel = client.get_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        allowed = await channel.send(content, allowed_mentions=both_roles)
        assert _role_ids(allowed) == [fans.id]  # Staff is not mentionable and the bot may not force it
        assert not allowed.mention_everyone
        silent = await channel.send(content, allowed_mentions=NO_PINGS)
        assert _role_ids(silent) == [] and server.message(silent.id)["mention_roles"] == []
        server.set_channel_overwrite(channel_id, guild.bot_role_id, allow=Permission.MENTION_EVERYONE)
        forced = await channel.send(content, allowed_mentions=both_roles)
        assert sorted(_role_ids(forced)) == sorted([fans.id, staff.id])
        assert not forced.mention_everyone  # allowed_mentions left "everyone" out
        defaults = await channel.send("@everyone look")  # no allowed_mentions at all: Discord parses all
        assert defaults.mention_everyone
        server.update_role(guild.id, fans.id, mentionable=False)
        server.set_channel_overwrite(channel_id, guild.bot_role_id)
        await server.wait_for(lambda: not guild.roles[fans.id].mentionable, what="the role update")
        quiet = await channel.send(content, allowed_mentions=both_roles)
        assert _role_ids(quiet) == []
    first = [m for m in server.mentions if m.message_id == allowed.id]
    assert [(m.kind, m.target_id, m.allowed, m.pinged) for m in first] == [
        ("role", fans.id, True, True),
        ("role", staff.id, True, False),
        ("everyone", None, False, False),
        ("here", None, False, False),
    ]
    assert not any(m.allowed for m in server.mentions if m.message_id == silent.id)
    assert server.stats.role_pings == 3 and server.stats.everyone_pings == 1


async def test_allowed_mentions_are_checked_and_edits_reparse(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel_id = guild.channel("general").id
    fans = server.add_role(guild.id, "Fans", mentionable=True)
    async with running(plain_client(), server.token) as client:
        with pytest.raises(discord.HTTPException) as caught:
            await client.http.request(
                discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id),
                json={"content": "x", "allowed_mentions": {"parse": ["roles"], "roles": [str(fans.id)]}},
            )
        assert caught.value.code == 50035 and "mutually exclusive" in caught.value.text
        with pytest.raises(discord.HTTPException) as caught:
            await client.http.request(
                discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id),
                json={"content": "x", "allowed_mentions": {"parse": ["all"]}},
            )
        assert caught.value.code == 50035 and "allowed_mentions.parse.0" in caught.value.text
        channel = client.get_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send(f"<@&{fans.id}>", allowed_mentions=discord.AllowedMentions(roles=True))
        edited = await sent.edit(content="no ping any more")
        assert _role_ids(sent) == [fans.id] and _role_ids(edited) == []
    assert server.stats.role_pings == 1  # an edit notifies no one


# --- direct messages --------------------------------------------------------------------------------------


async def test_direct_messages_to_open_and_closed_dms(server: FakeDiscord) -> None:
    guild = server.add_guild()
    fan = server.member(guild.id, "fan")
    private = server.member(guild.id, "private")
    private.user.dms_open = False
    stranger = server.add_user("stranger")  # shares no server with the bot
    async with running(plain_client(), server.token) as client:
        user = await client.fetch_user(fan.id)
        dm = await user.create_dm()
        assert isinstance(dm, discord.DMChannel) and dm.recipient and dm.recipient.id == fan.id
        sent = await user.send("Your daily K-pop digest", allowed_mentions=NO_PINGS)
        assert sent.guild is None and (await user.create_dm()).id == dm.id
        for closed in (private.id, stranger.id):
            with pytest.raises(discord.Forbidden) as caught:
                await (await client.fetch_user(closed)).send("hello")
            assert caught.value.code == 50007
        private.user.dms_open = True
        await (await client.fetch_user(private.id)).send("now it arrives")
        with pytest.raises(discord.HTTPException) as invalid:
            await client.http.start_private_message(123456789)
        assert invalid.value.code == 50033
    assert [m["content"] for m in server.direct_messages(fan.id)] == ["Your daily K-pop digest"]
    assert "guild_id" not in server.direct_messages(fan.id)[0]
    assert [m["content"] for m in server.direct_messages(private.id)] == ["now it arrives"]
    # DMs count against the global limit like every other request of the token
    counted = [r for r in server.requests if r.status != 401 and not r.path.startswith("/interactions/")]
    assert sum(server.ledger.per_second[server.token].values()) == len(counted)
    assert sorted(dm.recipient.id for dm in server.dm_channels.values()) == sorted(
        [fan.id, private.id, stranger.id]
    )


# --- interaction locales and localized commands ----------------------------------------------------------

LOCALIZED = {
    "ko": {"news": "뉴스", "Latest K-pop news": "최신 K팝 뉴스", "artist": "아티스트", "Who": "누구"},
    "hi": {"news": "समाचार"},  # Devanagari vowel signs are not isalnum(): Discord's name rule allows them
    "th": {"news": "ข่าว"},
    "es-419": {"news": "noticias"},
}


class DictTranslator(app_commands.Translator):
    def __init__(self, table: dict[str, dict[str, str]]) -> None:
        self.table = table

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        return self.table.get(locale.value, {}).get(string.message)


class LocalizedClient(discord.Client):
    def __init__(self, table: dict[str, dict[str, str]]) -> None:
        super().__init__(intents=discord.Intents(guilds=True), guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(self)
        self.table = table

        @self.tree.command(name="news", description="Latest K-pop news")
        @app_commands.describe(artist="Who")
        async def news(interaction: discord.Interaction, artist: str | None = None) -> None:
            locale, guild_locale = interaction.locale.value, getattr(interaction.guild_locale, "value", None)
            await interaction.response.send_message(f"{locale} {guild_locale}")

    async def setup_hook(self) -> None:
        await self.tree.set_translator(DictTranslator(self.table))
        await self.tree.sync()


async def test_interactions_carry_the_member_and_server_locales(server: FakeDiscord) -> None:
    guild = server.add_guild(preferred_locale="ko")
    fan = server.member(guild.id, "fan", locale="ja")
    async with running(LocalizedClient(LOCALIZED), server.token):
        [command] = server.commands
        assert command["name_localizations"] == {locale: t["news"] for locale, t in LOCALIZED.items()}
        assert command["description_localizations"] == {"ko": "최신 K팝 뉴스"}
        assert command["options"][0]["name_localizations"] == {"ko": "아티스트"}
        reply = await (await server.invoke("news", user_id=fan.id)).reply()
        assert reply["content"] == "ja ko"
        chosen = await server.invoke("news", user_id=fan.id, locale="es-419", guild_locale="pt-BR")
        assert (await chosen.reply())["content"] == "es-419 pt-BR"
        assert chosen.payload["guild"]["locale"] == "pt-BR"
        with pytest.raises(ValueError):
            await server.invoke("news", locale="klingon")


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"ko": {"news": "News"}}, "0.name_localizations.ko"),  # names are lowercase in every locale
        ({"ja": {"news": "ニュース 速報"}}, "0.name_localizations.ja"),  # no spaces
        ({"ko": {"Latest K-pop news": "뉴" * 101}}, "0.description_localizations.ko"),
        ({"ko": {"artist": "a" * 33}}, "0.options.0.name_localizations.ko"),
        ({"xx": {"news": "news"}}, "0.name_localizations.xx"),  # not a Discord locale
    ],
)
async def test_localizations_follow_the_rules_of_what_they_translate(
    server: FakeDiscord, table: dict[str, dict[str, str]], where: str
) -> None:
    server.add_guild()
    client = LocalizedClient({})
    if "xx" in table:  # discord.py translates only into its own locales: send this one raw
        body: list[dict[str, Any]] = [
            {"name": "news", "description": "d", "name_localizations": {"xx": "news"}, "type": 1}
        ]
        async with running(plain_client(), server.token) as plain:
            with pytest.raises(discord.HTTPException) as caught:
                await plain.http.bulk_upsert_global_commands(server.application_id, body)
    else:
        client.table = table
        with pytest.raises(discord.HTTPException) as caught:
            async with running(client, server.token):
                pass
    assert caught.value.status == 400 and caught.value.code == 50035
    assert where in caught.value.text.replace("In ", "").replace(":", "")
    assert server.commands == []


# --- shards and several processes ------------------------------------------------------------------------


class QuickShardedClient(discord.AutoShardedClient):
    """Answers any interaction with the shard it came in on; identifies without discord.py's 5 s pause."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"pid {os.getpid()} shard {interaction.guild and interaction.guild.shard_id}"
        )


def _events(session: Any, name: str) -> list[dict[str, Any]]:
    return [frame["d"] for frame in session.events if frame["t"] == name]


async def test_sharded_client_gets_each_guild_on_its_shard(server: FakeDiscord) -> None:
    server.recommended_shards = 2
    zero = server.add_guild("Zero", shard=(0, 2))
    one = server.add_guild("One", shard=(1, 2))
    assert (zero.id >> 22) % 2 == 0 and (one.id >> 22) % 2 == 1 and one.shard(2) == shard_for(one.id, 2) == 1
    server.commands = [{"id": "1", "name": "whoami", "type": 1, "description": "d", "options": []}]
    client = QuickShardedClient(intents=discord.Intents(guilds=True), guild_ready_timeout=0.1)
    async with running(client, server.token):
        assert client.shard_count == 2 and {g.id for g in client.guilds} == {zero.id, one.id}
        assert sorted(p["shard"] for p in server.identify_payloads) == [[0, 2], [1, 2]]
        sessions = {s.shard: s for s in server.live_sessions()}
        assert [g["id"] for g in _events(sessions[(0, 2)], "GUILD_CREATE")] == [str(zero.id)]
        assert [g["id"] for g in _events(sessions[(1, 2)], "GUILD_CREATE")] == [str(one.id)]
        reply = await (await server.invoke("whoami", guild_id=one.id)).reply()
        assert reply["content"].endswith("shard 1")
        assert len(_events(sessions[(1, 2)], "INTERACTION_CREATE")) == 1
        assert _events(sessions[(0, 2)], "INTERACTION_CREATE") == []
        server.dispatch("USER_UPDATE", server.bot_user.to_json())  # no guild, as DMs: shard 0
        assert len(_events(sessions[(0, 2)], "USER_UPDATE")) == 1 and not _events(
            sessions[(1, 2)], "USER_UPDATE"
        )
    assert server.stats.requests["GET /gateway/bot"] == 1


async def test_gateway_bot_and_bad_shards(server: FakeDiscord) -> None:
    server.recommended_shards = 3
    server.guilds_per_shard = 1
    for _ in range(2):
        server.add_guild(shard=(0, 1))
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{server.api_base}/gateway/bot", headers={"Authorization": f"Bot {server.token}"}
        ) as response:
            data = await response.json()
        assert data["url"] == server.gateway_url and data["shards"] == 3
        assert data["session_start_limit"]["remaining"] == data["session_start_limit"]["total"]
        assert data["session_start_limit"]["max_concurrency"] == 1
        for shard, code in (([2, 2], 4010), ([0, 0], 4010), ("0", 4010), ([0, 1], 4011)):
            async with session.ws_connect(server.gateway_url + "?v=10&encoding=json") as ws:
                assert (await ws.receive_json())["op"] == 10
                identify = {"token": server.token, "intents": 1, "properties": {}, "shard": shard}
                await ws.send_json({"op": 2, "d": identify})
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code, shard
    assert server.stats.identifies == 0


SHARD_PROCESS = """
import asyncio, os, sys
import discord, yarl
api_base, gateway, token = sys.argv[1:4]
discord.http.Route.BASE = api_base
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)

class ShardOne(discord.AutoShardedClient):
    async def on_ready(self):
        print("ready", flush=True)

    async def on_interaction(self, interaction):
        await interaction.response.send_message(f"pid {os.getpid()} shard {interaction.guild.shard_id}")

client = ShardOne(intents=discord.Intents(guilds=True), shard_ids=[1], shard_count=2, guild_ready_timeout=0.1)
asyncio.run(client.start(token))
"""


async def test_two_processes_with_one_token_on_different_shards(server: FakeDiscord) -> None:
    zero = server.add_guild("Zero", shard=(0, 2))
    one = server.add_guild("One", shard=(1, 2))
    server.commands = [{"id": "1", "name": "whoami", "type": 1, "description": "d", "options": []}]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SHARD_PROCESS,
        server.api_base,
        server.gateway_url,
        server.token,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        client = QuickShardedClient(
            intents=discord.Intents(guilds=True), shard_ids=[0], shard_count=2, guild_ready_timeout=0.1
        )
        async with running(client, server.token):
            assert [g.id for g in client.guilds] == [zero.id]
            await server.wait_for_ready_session(timeout=30, shard=(1, 2))
            assert process.stdout is not None
            assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"ready"
            here = await (await server.invoke("whoami", guild_id=zero.id)).reply()
            there = await (await server.invoke("whoami", guild_id=one.id)).reply(timeout=10)
            assert here["content"] == f"pid {os.getpid()} shard 0"
            assert there["content"] == f"pid {process.pid} shard 1"
    finally:
        process.kill()
        await process.wait()
    assert server.stats.requests["GET /users/@me"] == 2  # each process logged in with the same token
    assert sorted(p["shard"] for p in server.identify_payloads) == [[0, 2], [1, 2]]


# --- the global rate-limit ledger ------------------------------------------------------------------------


async def test_global_ledger_counts_every_connection_of_a_token(server: FakeDiscord) -> None:
    guild = server.add_guild()
    channel_id = guild.channel("general").id
    server.channel_message_limit = None
    async with running(SlashClient(), server.token) as first, running(plain_client(), server.token) as second:
        server.global_limit = 5
        await asyncio.sleep(1.0)  # the logins leave the one-second window
        targets = [client.get_channel(channel_id) for client in (first, second)]
        assert all(isinstance(t, discord.TextChannel) for t in targets)
        await asyncio.gather(*(t.send(f"m{i}", allowed_mentions=NO_PINGS) for t in targets for i in range(8)))  # type: ignore[union-attr]
        assert len(server.messages(channel_id)) == 16  # each 429 was retried
        assert server.ledger.peak(server.token) <= 5
        assert 1 <= server.ledger.refused[server.token] == server.stats.global_ratelimited
        # interaction callbacks are exempt: with the window full, the answer still goes through
        server.global_limit = 1
        await asyncio.sleep(1.0)
        async with aiohttp.ClientSession() as raw:
            auth = {"Authorization": f"Bot {server.token}"}
            statuses = []
            for _ in range(2):
                async with raw.get(f"{server.api_base}/users/@me", headers=auth) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        assert response.headers["X-RateLimit-Global"] == "true"
                        assert (await response.json())["global"] is True
            assert statuses == [200, 429]
            interaction = await server.invoke("echo", {"text": "exempt"})
            assert (await interaction.reply())["embeds"][0]["title"] == "exempt"
    callbacks = [r for r in server.requests if r.path.startswith("/interactions/")]
    assert [r.status for r in callbacks] == [200]


async def test_error_answers_carry_the_routes_rate_limit_headers(server: FakeDiscord) -> None:
    guild = server.add_guild()
    url = f"{server.api_base}/channels/{guild.channel('general').id}/messages"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {server.token}"}) as raw:
        async with raw.post(url, json={"content": ""}) as response:
            assert response.status == 400 and (await response.json())["code"] == 50006
            assert response.headers["X-RateLimit-Remaining"] == "4" and response.headers["X-RateLimit-Bucket"]
        async with raw.post(url, json={"content": "ok"}) as response:
            assert response.status == 200 and response.headers["X-RateLimit-Remaining"] == "3"
