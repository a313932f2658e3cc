"""Acceptance tests over Discord's wire, black-box: the real `kpopnews run` process, configured only through
the contract's keys (token, api_base, gateway_url, database, interval_seconds, sources), against FakeDiscord
(tests/support/discord_server.py) and feeds served over loopback. Only what a server admin or a member sees
is checked: the synced commands, the interaction answers, the messages posted, the exit status.

One bot process serves the tests of this module in file order (subscribe, then a new story is posted, ...);
the token tests start short processes of their own.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.config import SourceConfig
from tests.support.bot_harness import BotProcess, bot_process, write_config
from tests.support.cli import REPO_ROOT
from tests.support.discord_server import FakeDiscord, FakeGuild, InvocationRefused, Permission
from tests.support.feed_server import FeedServer, rss

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEED = Path("/work/shared/fixtures/koreaboo-style-v-iu.xml")
if not SEED.exists():
    SEED = REPO_ROOT / "tests" / "fixtures" / "feeds" / "koreaboo-style-v-iu.xml"
SEED_DATE = "Tue, 30 Jan 2024 02:58:11 +0000"
V_IU_LINK = "https://www.koreaboo.com/news/bts-v-viral-behind-scenes-iu-love-wins-all-romantic/"
V_IU_IMAGE = "https://image.koreaboo.com/2024/01/bts-v-iu-love-wins-all-thumb.jpg"

CONTRACT_COMMANDS: dict[str, set[str]] = {
    "news": {"artist", "count"},
    "trending": {"hours"},
    "subscribe": {"channel", "artist", "source", "only_trending"},
    "unsubscribe": {"channel", "artist", "source"},
    "subscriptions": set(),
    "about": set(),
}


def rfc822(moment: datetime) -> str:
    return email.utils.format_datetime(moment)


def seventeen_item(published: datetime) -> dict[str, str]:
    return {
        "title": "SEVENTEEN Announce Their 2025 World Tour With 20 New Dates",
        "link": "https://www.koreaboo.com/news/seventeen-world-tour-2025/",
        "guid": "https://www.koreaboo.com/?p=1470001",
        "pubDate": rfc822(published),
        "description": "SEVENTEEN will tour the world again in 2025, with twenty new dates.",
        "content": "<p>SEVENTEEN will tour the world again in 2025, with twenty new dates across Asia and Europe.</p>",
    }


def plain_item(slug: str, title: str, text: str, published: datetime, site: str) -> dict[str, str]:
    return {
        "title": title,
        "link": f"{site}/news/{slug}/",
        "guid": f"{site}/?p={slug}",
        "pubDate": rfc822(published),
        "description": text,
        "content": f"<p>{text}</p><p>{text}</p>",
    }


def koreaboo_feed(*, with_v_iu: bool) -> bytes:
    """Koreaboo's feed: a SEVENTEEN story (there from the start), then also the seed V and IU story (new) and a
    story new to the feed but published 30 hours ago (too old to post)."""
    now = datetime.now(UTC)
    old = rss(
        [seventeen_item(now - timedelta(minutes=30))], title="Koreaboo", link="https://www.koreaboo.com/"
    )
    if not with_v_iu:
        return old
    stale = plain_item(
        "ateez-old",
        "ATEEZ Wrap Up Their Tour In Seoul",
        "ATEEZ wrapped up their world tour with two nights in Seoul.",
        now - timedelta(hours=30),
        "https://www.koreaboo.com",
    )
    xml = SEED.read_text(encoding="utf-8").replace(SEED_DATE, rfc822(now - timedelta(minutes=1)))
    text = old.decode() + rss([stale]).decode()
    items = "".join(re.findall(r"<item>.*?</item>", text, re.DOTALL))
    return xml.replace("</channel>", items + "</channel>").encode("utf-8")


def outlet_feed(name: str, *, with_v_iu: bool) -> bytes:
    """Soompi's or SCMP's feed: a story of their own, then also their copy of the V and IU story."""
    now = datetime.now(UTC)
    site = {"soompi": "https://www.soompi.com", "scmp": "https://www.scmp.com"}[name]
    items = [
        plain_item(
            f"{name}-karina",
            f"aespa’s Karina Wins Hearts At The Fan Meeting ({name})",
            "aespa’s Karina moved fans with a heartfelt speech at the group’s fan meeting in Seoul.",
            now - timedelta(hours=2),
            site,
        )
    ]
    if with_v_iu:
        items.insert(
            0,
            plain_item(
                f"{name}-v-iu",
                "BTS’s V Goes Viral For Singing To IU Behind The Scenes Of “Love Wins All”",
                "A behind-the-scenes clip of IU’s “Love Wins All” shows BTS’s V was really singing to IU in the "
                "wedding scene, and the moment is going viral with fans.",
                now - timedelta(seconds=30),
                site,
            ),
        )
    return rss(items, title=name, link=site + "/")


@dataclass
class World:
    server: FakeDiscord
    feeds: FeedServer
    guild: FakeGuild
    process: BotProcess
    database: Path

    def channel_id(self, name: str) -> int:
        return self.guild.channel(name).id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    folder = tmp_path_factory.mktemp("discord")
    async with FeedServer() as feeds, FakeDiscord() as server:
        feeds.set_feed("koreaboo", koreaboo_feed(with_v_iu=False))
        for name in ("soompi", "scmp"):
            feeds.set_feed(name, outlet_feed(name, with_v_iu=False))
        guild = server.add_guild("K-pop Fans", channels=["general", "news", "kpop", "hot"])
        database = folder / "kpopnews.db"
        config = write_config(
            folder / "config.toml",
            server,
            database,
            sources=[
                SourceConfig("Koreaboo", feeds.url("/dyn/koreaboo")),
                SourceConfig("Soompi", feeds.url("/dyn/soompi")),
                SourceConfig("SCMP", feeds.url("/dyn/scmp")),
            ],
            interval_seconds=1,
        )
        async with bot_process(config) as process:
            await process.wait_for_log("ready:", timeout=40)
            await server.wait_for(lambda: feeds.hits["/dyn/koreaboo"] >= 1, 20, what="the first poll")
            yield World(server, feeds, guild, process, database)


# --- commands ----------------------------------------------------------------------------------------------


def synced(server: FakeDiscord, guild_id: int) -> dict[str, dict[str, Any]]:
    commands = list(server.commands) + list(server.guild_commands.get(guild_id, []))
    return {c["name"]: c for c in commands}


def shown_text(message: dict[str, Any]) -> str:
    """What a person reads in a message: its content and its embeds' text (not the ids around them)."""
    return json.dumps([message.get("content"), message.get("embeds")], ensure_ascii=False)


def option_names(command: dict[str, Any]) -> set[str]:
    return {o["name"] for o in command.get("options") or []}


async def test_commands_are_synced_with_the_contract_names_and_options(world: World) -> None:
    commands = await world.server.wait_for(
        lambda: (
            synced(world.server, world.guild.id) if "about" in synced(world.server, world.guild.id) else None
        ),
        10,
        what="the command sync",
    )
    for name, options in CONTRACT_COMMANDS.items():
        assert name in commands, sorted(commands)
        assert option_names(commands[name]) == options, (name, option_names(commands[name]))
    news = {o["name"]: o for o in commands["news"]["options"]}
    assert news["artist"].get("required") is True and news["artist"].get("autocomplete") is True
    assert news["count"]["type"] == 4 and not news["count"].get("required")
    subscribe = {o["name"]: o for o in commands["subscribe"]["options"]}
    assert subscribe["channel"]["type"] == 7 and subscribe["channel"].get("required") is True
    assert subscribe["only_trending"]["type"] == 5
    for admin_only in ("subscribe", "unsubscribe", "subscriptions"):
        needed = int(commands[admin_only].get("default_member_permissions") or 0)
        assert needed & Permission.MANAGE_GUILD, admin_only
    for anyone in ("news", "about"):
        assert commands[anyone].get("default_member_permissions") in (None, "0") or not int(
            commands[anyone]["default_member_permissions"]
        )


async def test_trending_command_is_synced(world: World) -> None:
    commands = synced(world.server, world.guild.id)
    assert option_names(commands["trending"]) == CONTRACT_COMMANDS["trending"]


async def test_about_answers(world: World) -> None:
    interaction = await world.server.invoke("about", channel_id=world.channel_id("general"))
    reply = await interaction.reply()
    text = json.dumps(reply, ensure_ascii=False)
    assert "Koreaboo" in text, text
    assert not interaction.late


async def test_a_member_without_manage_server_cannot_subscribe(world: World) -> None:
    server = world.server
    fan = server.member(world.guild.id, "fan")
    news = world.channel_id("kpop")
    with pytest.raises(InvocationRefused):  # Discord does not even show the command to them
        await server.invoke("subscribe", {"channel": news}, user_id=fan.id)
    # and if a server's settings hand the command to everyone, the bot itself still refuses
    interaction = await server.invoke(
        "subscribe", {"channel": news}, user_id=fan.id, respect_default_permissions=False
    )
    reply = await interaction.reply()
    assert interaction.ephemeral
    assert "Done" not in reply.get("content", ""), reply
    listing = await (await server.invoke("subscriptions", channel_id=news)).reply()
    assert f"<#{news}>" not in shown_text(listing), listing


async def subscribe(world: World, channel: str, **options: Any) -> tuple[Any, dict[str, Any]]:
    channel_id = world.channel_id(channel)
    interaction = await world.server.invoke(
        "subscribe", {"channel": channel_id, **options}, channel_id=channel_id
    )
    reply = await interaction.reply(timeout=10)
    assert interaction.ephemeral and not interaction.late, reply
    return interaction, reply


def bot_log(world: World) -> str:
    return "the bot's stderr:\n" + world.process.stderr_text()[-4000:]


async def test_a_feed_url_on_loopback_is_refused_from_discord(world: World) -> None:
    url = world.feeds.url("/dyn/koreaboo-copy")
    world.feeds.set_feed("koreaboo-copy", koreaboo_feed(with_v_iu=False))
    _, reply = await subscribe(world, "kpop", source=url)
    assert "Done" not in reply["content"], reply
    listing = await (await world.server.invoke("subscriptions")).reply()
    assert f"<#{world.channel_id('kpop')}>" not in shown_text(listing), listing


async def test_admin_subscribes_and_only_a_new_story_is_posted_once(world: World) -> None:
    server, feeds = world.server, world.feeds
    news, general, kpop = (world.channel_id(name) for name in ("news", "general", "kpop"))
    _, reply = await subscribe(world, "news")
    assert f"<#{news}>" in reply["content"], reply  # the channel is mentioned back
    _, reply = await subscribe(world, "news", artist="IU")  # a second match in the same channel
    assert f"<#{news}>" in reply["content"], reply
    await subscribe(world, "general", artist="Taehyung", source="Koreaboo")
    await subscribe(world, "kpop", artist="aespa")
    await subscribe(world, "hot", only_trending=True)
    listing = await (await server.invoke("subscriptions", channel_id=news)).reply()
    for channel in (news, general, kpop):
        assert f"<#{channel}>" in shown_text(listing), listing

    polls = feeds.hits["/dyn/koreaboo"]
    await server.wait_for(lambda: feeds.hits["/dyn/koreaboo"] >= polls + 2, 15, what="two polls")
    assert server.messages(news) == [], "the SEVENTEEN story was in the feed before the subscription"

    feeds.set_feed("koreaboo", koreaboo_feed(with_v_iu=True))
    try:
        [message] = await server.wait_for_messages(news, 1, timeout=30)
        await server.wait_for_messages(general, 1, timeout=10)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{bot_log(world)}") from None
    polls = feeds.hits["/dyn/koreaboo"]
    await server.wait_for(lambda: feeds.hits["/dyn/koreaboo"] >= polls + 3, 20, what="three more polls")
    await asyncio.sleep(0.5)
    assert len(server.messages(news)) == 1, "exactly once, whatever number of subscriptions match"
    assert len(server.messages(general)) == 1, "artist V from the Koreaboo source"
    assert server.messages(kpop) == [], "aespa is not in this story"
    assert server.messages(general)[0]["embeds"][0]["url"] == V_IU_LINK

    assert len(message["embeds"]) == 1
    embed = message["embeds"][0]
    assert embed["title"].startswith("BTS’s V Is Going Viral")
    assert embed["url"] == V_IU_LINK
    assert embed["image"]["url"] == V_IU_IMAGE
    assert embed.get("description")
    fields = json.dumps(embed.get("fields", []), ensure_ascii=False)
    assert "babiejieun" in fields and "so taehyung was really singing to iu" in fields
    payload = server.create_payload(int(message["id"]))
    allowed = payload.get("allowed_mentions")
    assert allowed is not None and allowed.get("parse") == [], allowed
    assert not allowed.get("users") and not allowed.get("roles") and not allowed.get("replied_user")


async def test_the_same_story_from_other_outlets_is_one_post_also_on(world: World) -> None:
    server, feeds = world.server, world.feeds
    news = world.channel_id("news")
    assert server.messages(world.channel_id("hot")) == [], "one outlet is no trend yet"
    for name in ("soompi", "scmp"):
        feeds.set_feed(name, outlet_feed(name, with_v_iu=True))
    try:
        await server.wait_for(
            lambda: (
                "SCMP" in json.dumps(server.messages(news)[0]["embeds"], ensure_ascii=False)
                and "Soompi" in json.dumps(server.messages(news)[0]["embeds"], ensure_ascii=False)
            ),
            30,
            what="the post edited with the other outlets (Also on: Soompi, SCMP)",
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{bot_log(world)}") from None
    polls = feeds.hits["/dyn/scmp"]
    await server.wait_for(lambda: feeds.hits["/dyn/scmp"] >= polls + 2, 15, what="two more polls")
    await asyncio.sleep(0.5)
    assert len(server.messages(news)) == 1, "Soompi's and SCMP's copies are the same story"
    assert "Also on" in json.dumps(server.messages(news)[0]["embeds"], ensure_ascii=False)
    assert len(server.messages(world.channel_id("general"))) == 1
    assert server.messages(world.channel_id("kpop")) == [], "aespa's Karina stories were there before"


async def test_a_trending_only_channel_gets_the_three_outlet_story_once(world: World) -> None:
    server, feeds = world.server, world.feeds
    hot = world.channel_id("hot")
    try:
        [trending] = await server.wait_for_messages(hot, 1, timeout=15)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{bot_log(world)}") from None
    polls = feeds.hits["/dyn/scmp"]
    await server.wait_for(lambda: feeds.hits["/dyn/scmp"] >= polls + 2, 15, what="two more polls")
    assert len(server.messages(hot)) == 1, "a trending-only channel gets the story once"
    assert len(trending["embeds"]) == 1
    assert "Love Wins All" in json.dumps(trending["embeds"], ensure_ascii=False) or "Viral" in trending[
        "embeds"
    ][0].get("title", "")


BURST = [
    (
        "twice-japan",
        "TWICE Add Three Japan Dome Shows",
        "TWICE add three dome shows in Japan for the spring.",
    ),
    (
        "ive-award",
        "IVE Win Song Of The Year At The Golden Disc Awards",
        "IVE took home the top prize in Jakarta.",
    ),
    ("ateez-mv", "ATEEZ Drop A Surprise Music Video At Midnight", "ATEEZ surprised fans with a new video."),
    (
        "newjeans-ad",
        "NewJeans Are The New Faces Of A Sneaker Brand",
        "NewJeans signed with a global sneaker label.",
    ),
    ("skz-chart", "Stray Kids Top The Billboard 200 Again", "Stray Kids scored another number one album."),
    (
        "lesserafim-doc",
        "LE SSERAFIM Announce A Documentary Series",
        "LE SSERAFIM will release a documentary.",
    ),
]


async def test_a_burst_of_new_stories_is_posted_once_each_oldest_first(world: World) -> None:
    server, feeds = world.server, world.feeds
    news = world.channel_id("news")
    before = len(server.messages(news))
    now = datetime.now(UTC)
    burst = [
        plain_item(slug, title, text, now - timedelta(minutes=20 - i), "https://www.koreaboo.com")
        for i, (slug, title, text) in enumerate(BURST)
    ]
    body = koreaboo_feed(with_v_iu=True).decode()
    more = rss(burst).decode()
    feeds.set_feed(
        "koreaboo",
        body.replace(
            "</channel>", "".join(re.findall(r"<item>.*?</item>", more, re.DOTALL)) + "</channel>"
        ).encode("utf-8"),
    )
    try:
        await server.wait_for_messages(news, before + len(BURST), timeout=40)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{bot_log(world)}") from None
    polls = feeds.hits["/dyn/koreaboo"]
    await server.wait_for(lambda: feeds.hits["/dyn/koreaboo"] >= polls + 2, 15, what="two more polls")
    await asyncio.sleep(0.5)
    posted = [m["embeds"][0]["title"] for m in server.messages(news)[before:]]
    assert posted == [title for _, title, _ in BURST], posted
    assert server.stats.invalid_requests == 0, "no 401/403/429: the bot paced itself"


async def test_news_by_any_name_answers_in_time_with_embeds(world: World) -> None:
    for name in ("V", "Taehyung", "뷔", "BTS", "bts-v"):
        interaction = await world.server.invoke(
            "news", {"artist": name}, channel_id=world.channel_id("general")
        )
        reply = await interaction.reply(timeout=5)
        assert not interaction.late, name
        embeds = reply.get("embeds") or []
        assert embeds, (name, reply)
        assert any(e.get("url") == V_IU_LINK for e in embeds), name
        assert len(embeds) <= 10
    counted = await world.server.invoke("news", {"artist": "IU", "count": 1})
    assert len((await counted.reply()).get("embeds") or []) == 1


async def test_news_for_nobody_is_a_friendly_answer(world: World) -> None:
    for text in ("zzqxj", '"(*', "🥹"):
        interaction = await world.server.invoke("news", {"artist": text})
        reply = await interaction.reply(timeout=5)
        assert reply.get("content"), (text, reply)
        assert not interaction.late


async def test_autocomplete_on_artist(world: World) -> None:
    for typed in ("V", "tae", "뷔", "b", ""):
        choices = await world.server.autocomplete("news", {"artist": typed}, focused="artist")
        assert len(choices) <= 25, typed
        for choice in choices:
            assert 1 <= len(choice["name"]) <= 100 and 1 <= len(str(choice["value"])) <= 100
    choices = await world.server.autocomplete("news", {"artist": "V"}, focused="artist")
    assert choices and choices[0]["name"] == "V (BTS)", choices[:5]
    assert "V (BTS)" in [
        c["name"] for c in await world.server.autocomplete("news", {"artist": "뷔"}, focused="artist")
    ]
    sub_choices = await world.server.autocomplete(
        "subscribe", {"channel": world.channel_id("kpop"), "artist": "Taeh"}, focused="artist"
    )
    assert len(sub_choices) <= 25 and any(c["name"] == "V (BTS)" for c in sub_choices), sub_choices


async def test_trending_answers(world: World) -> None:
    interaction = await world.server.invoke("trending", {"hours": 24})
    reply = await interaction.reply(timeout=5)
    assert not interaction.late
    assert "Love Wins All" in json.dumps(reply, ensure_ascii=False) or "Going Viral" in json.dumps(
        reply, ensure_ascii=False
    )


async def test_subscribe_refusals_say_why(world: World) -> None:
    server = world.server
    locked = server.add_channel(world.guild.id, "locked", bot_can_send=False)
    await server.wait_for(lambda: True, 0.5)
    interaction = await server.invoke(
        "subscribe", {"channel": locked.id}, channel_id=world.channel_id("general")
    )
    reply = await interaction.reply(timeout=10)
    assert interaction.ephemeral and "Done" not in reply["content"], reply
    assert "Send Messages" in reply["content"], reply
    _, reply = await subscribe(world, "kpop", artist="zzqxj nobody at all")
    assert "Done" not in reply["content"], reply
    listing = await (await server.invoke("subscriptions")).reply()
    assert f"<#{locked.id}>" not in shown_text(listing)


async def test_news_pages_with_buttons(world: World) -> None:
    server = world.server
    interaction = await server.invoke("news", {"artist": "BTS", "count": 1})
    reply = await interaction.reply(timeout=5)
    assert len(reply["embeds"]) == 1
    first_url = reply["embeds"][0]["url"]  # the reply is the live message: the click edits it
    buttons = [c for row in reply.get("components", []) for c in row.get("components", [])]
    assert buttons, "more stories than shown: Previous/Next buttons"
    following = [b for b in buttons if "next" in (b.get("label", "") + b.get("custom_id", "")).lower()]
    assert following, buttons
    click = await server.click(reply, following[0]["custom_id"])
    response = await click.response(timeout=5)
    assert not click.late
    page = (response.get("data") or {}) if response.get("type") == 7 else await click.reply(timeout=5)
    assert page.get("embeds") and page["embeds"][0]["url"] != first_url, page
    assert "2" in (page.get("content") or ""), page


async def test_trending_hours_option(world: World) -> None:
    for hours in (1, 48, 168):
        interaction = await world.server.invoke("trending", {"hours": hours})
        reply = await interaction.reply(timeout=5)
        assert not interaction.late and (reply.get("content") or reply.get("embeds")), (hours, reply)


async def test_unsubscribe(world: World) -> None:
    news = world.channel_id("news")
    interaction = await world.server.invoke("unsubscribe", {"channel": news}, channel_id=news)
    reply = await interaction.reply(timeout=5)
    assert interaction.ephemeral and reply.get("content")
    listing = await (await world.server.invoke("subscriptions", channel_id=news)).reply()
    assert f"<#{news}>" not in shown_text(listing), listing


async def test_sigterm_stops_cleanly(world: World) -> None:
    assert "Traceback" not in world.process.stderr_text(), world.process.stderr_text()
    assert await world.process.stop() == 0
    assert world.server.stats.late_interaction_callbacks == 0


# --- the token -------------------------------------------------------------------------------------------------


async def test_discord_token_from_the_environment_wins(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        server.add_guild("K-pop Fans")
        wrong_in_file = write_config(tmp_path / "a.toml", server, tmp_path / "a.db", token="not-the-token")
        async with bot_process(wrong_in_file, env={"DISCORD_TOKEN": server.token}) as process:
            await process.wait_for_log("ready:", timeout=40)
            assert await process.stop() == 0
            assert server.token not in process.stderr_text(), "the token is never logged"

        right_in_file = write_config(tmp_path / "b.toml", server, tmp_path / "b.db")
        async with bot_process(right_in_file, env={"DISCORD_TOKEN": "rejected.by.discord"}) as process:
            assert await process.wait(40) == 2
            lines = [line for line in process.lines if line.strip()]
            assert "Traceback" not in process.stderr_text()
            assert any("token" in line.lower() for line in lines), lines
            assert "rejected.by.discord" not in process.stderr_text()


# --- stopping while starting -------------------------------------------------------------------------------


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
async def test_a_stop_signal_during_start_up_is_a_clean_exit(tmp_path: Path, signal_name: str) -> None:
    # a supervisor may stop the bot at any moment, also while it opens the database and loads its cogs: the
    # process must still exit (0), not hang on a resource opened after the clean-up ran
    import signal

    async with FakeDiscord() as server, FeedServer() as feeds:
        server.add_guild("K-pop Fans")
        feeds.set_feed("koreaboo", koreaboo_feed(with_v_iu=False))
        config = write_config(
            tmp_path / "config.toml",
            server,
            tmp_path / "kpopnews.db",
            sources=[SourceConfig("Koreaboo", feeds.url("/dyn/koreaboo"))],
            interval_seconds=1,
        )
        async with bot_process(config) as process:
            await process.wait_for_log("applied migration", timeout=40)  # inside setup: the store is open
            assert await process.stop(getattr(signal, signal_name), timeout=20) == 0, process.stderr_text()
            assert "Traceback" not in process.stderr_text(), process.stderr_text()


async def test_a_restart_does_not_sync_unchanged_commands_again(tmp_path: Path) -> None:
    async with FakeDiscord() as server:
        server.add_guild("K-pop Fans")
        config = write_config(tmp_path / "config.toml", server, tmp_path / "kpopnews.db")
        for _ in range(2):
            async with bot_process(config) as process:
                await process.wait_for_log("ready:", timeout=40)
                interaction = await server.invoke("about")
                assert (await interaction.reply()).get("embeds")
                assert await process.stop() == 0
        assert server.stats.command_syncs == 1
        assert {c["name"] for c in server.commands} | {
            c["name"] for cs in server.guild_commands.values() for c in cs
        } >= set(CONTRACT_COMMANDS)
