"""Previous/Next over the real wire, across a restart: the real bot (discord.py) against FakeDiscord answers
/news, is stopped, and a new `kpopnews run` process on the same database turns the pages of the OLD message,
its state read from the buttons' custom ids; a story arriving between two clicks shifts nothing. Buttons whose
custom ids cannot be read (hand-made, from an older version) are answered "expired", never with silence."""

from __future__ import annotations

from typing import Any

import discord

from bot.models import ArtistRef, Story
from bot.store import Store
from cogs.news import NewsButton
from tests.support.bot_harness import bot_config, bot_process, running_bot, write_config
from tests.support.discord_server import FakeDiscord
from tests.test_search import make_story
from tests.test_trending_cog import fill

V = ArtistRef("bts-v", "V", "BTS")


def story(n: int, hours: float) -> Story:
    return make_story(n, f"BTS's V story number {n}", [V], hours=hours)


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A message's buttons by label ("Previous", "Next")."""
    return {c["label"]: c for row in message.get("components", []) for c in row["components"]}


def story_numbers(message: dict[str, Any]) -> list[int]:
    return [int(e["url"].rstrip("/").rsplit("-", 1)[1]) for e in message["embeds"]]


async def turn(server: FakeDiscord, message_id: int, label: str) -> dict[str, Any]:
    """Click a button of the message as whoever ran the command; the message as it is then."""
    message = server.message(message_id)
    assert not buttons(message)[label].get("disabled"), f"{label} is disabled"
    click = await server.click(message, buttons(message)[label]["custom_id"])
    callback = await click.response(timeout=20)
    assert callback["type"] in (6, 7), callback  # the message itself is updated, nothing new is posted
    if callback["type"] == 6:
        await click.wait_for_edits(1, timeout=20)
    return server.message(message_id)


async def test_news_buttons_work_after_a_restart_and_a_new_story_shifts_nothing(tmp_path):
    async with FakeDiscord() as server:
        guild = server.add_guild("K-pop Fans", channels=("general", "news"))
        database = tmp_path / "kpopnews.db"
        async with running_bot(server, bot_config(server, database)) as bot:
            # seven stories about V, story 1 the newest
            await bot.store.stories.add_many([story(n, -n) for n in range(1, 8)], source_id=None)
            reply = await (await server.invoke("news", {"artist": "bts-v", "count": 2})).reply(timeout=10)
            assert "1–2 of 7" in reply["content"] and story_numbers(reply) == [1, 2]
            assert buttons(reply)["Previous"]["disabled"]
            message_id = int(reply["id"])
            shown = await turn(server, message_id, "Next")
            assert "3–4 of 7" in shown["content"] and story_numbers(shown) == [3, 4]

        # the bot is gone; a new process on the same database, which knows nothing of the message
        config = write_config(tmp_path / "config.toml", server, database)
        async with bot_process(config) as restarted:
            await restarted.wait_for_log("ready:", timeout=60)
            store = await Store.open(database)
            try:
                await store.stories.add_many([story(8, 0)], source_id=None)  # the newest of all, arriving now
            finally:
                await store.close()

            # someone else's click on the old message is refused, ephemerally, and changes nothing
            other = server.member(guild.id, "other fan")
            refused = await server.click(
                server.message(message_id), buttons(shown)["Next"]["custom_id"], user_id=other.id
            )
            answer = await refused.reply(timeout=20)
            assert refused.ephemeral and "belong to whoever asked" in answer["content"]
            assert server.message(message_id)["embeds"] == shown["embeds"]

            shown = await turn(server, message_id, "Next")  # the list as it was read: story 8 shifts nothing
            assert "5–6 of 8" in shown["content"] and story_numbers(shown) == [5, 6]
            shown = await turn(server, message_id, "Previous")
            assert "3–4 of 8" in shown["content"] and story_numbers(shown) == [3, 4]
            shown = await turn(server, message_id, "Previous")
            assert "1–2 of 8" in shown["content"] and story_numbers(shown) == [1, 2]
            assert not buttons(shown)["Previous"].get("disabled")  # story 8 is newer still
            shown = await turn(server, message_id, "Previous")
            assert "1 of 8" in shown["content"] and story_numbers(shown) == [8]
            assert buttons(shown)["Previous"]["disabled"] and not buttons(shown)["Next"].get("disabled")
            shown = await turn(server, message_id, "Next")
            assert "2–3 of 8" in shown["content"] and story_numbers(shown) == [1, 2]
            for _ in range(3):
                shown = await turn(server, message_id, "Next")
            assert "8 of 8" in shown["content"] and story_numbers(shown) == [7]
            assert buttons(shown)["Next"]["disabled"]  # nothing older
            assert all(len(b["custom_id"]) <= 100 for b in buttons(shown).values())
            assert await restarted.stop() == 0
        assert "Traceback" not in restarted.stderr_text()


async def post_buttons(bot: discord.Client, channel_id: int, *custom_ids: str) -> dict[str, Any]:
    """A message of the bot's with buttons of these custom ids, as a message from an older version has them."""
    view = discord.ui.View(timeout=None)
    for custom_id in custom_ids:
        view.add_item(discord.ui.Button(label=custom_id[:80], custom_id=custom_id))
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("an old answer", view=view)
    view.stop()  # only the cogs' dynamic items answer these clicks
    return {"id": message.id}


async def test_buttons_that_cannot_be_read_are_answered_expired(tmp_path):
    async with FakeDiscord() as server:
        guild = server.add_guild("K-pop Fans", channels=("general", "news"))
        channel = guild.channel("news")
        async with running_bot(server, bot_config(server, tmp_path / "kpopnews.db")) as bot:
            await bot.store.stories.add_many([story(n, -n) for n in range(1, 4)], source_id=None)
            cursor = ("2024-01-30T02:00:00+00:00", 1)
            gone_artist = NewsButton(True, guild.owner_id, 2, 0, cursor, "no-such-artist").custom_id()
            unreadable = [
                "news:next",  # the buttons of the version before this one
                "news:previous",
                "trending:next",
                "news:n:1:5:0:zzzzzzzzz:1:aV",  # a time no calendar holds
                "news:n:1:5:0:0:1:t" + "x" * 70,
                gone_artist,  # an artist the artist data no longer has
            ]
            message = await post_buttons(bot, channel.id, *unreadable[:5])
            extra = await post_buttons(bot, channel.id, gone_artist)
            for custom_id in unreadable:
                target = extra if custom_id == gone_artist else message
                click = await server.click(target, custom_id)
                answer = await click.reply(timeout=10)
                assert click.ephemeral and "expired" in answer["content"], (custom_id, answer)
                command = "/trending" if custom_id.startswith("trending") else "/news"
                assert command in answer["content"]

            # a hand-made cursor past every story: the newest page again, in place of the message
            past = NewsButton(True, guild.owner_id, 2, 0, ("2000-01-01T00:00:00+00:00", 1), "bts-v")
            old = await post_buttons(bot, channel.id, past.custom_id())
            click = await server.click(old, past.custom_id())
            await click.response(timeout=10)
            shown = server.message(int(old["id"]))
            assert story_numbers(shown) == [1, 2] and "1–2 of 3" in shown["content"]


async def test_trending_buttons_work_after_a_restart(tmp_path):
    async with FakeDiscord() as server:
        guild = server.add_guild("K-pop Fans", channels=("general", "news"))
        config = bot_config(server, tmp_path / "kpopnews.db")
        async with running_bot(server, config) as bot:
            await fill(bot.store)
            reply = await (await server.invoke("trending", {}, channel_id=guild.channel("news").id)).reply(10)
            assert reply["content"] == "**Trending in the last 24 h** · 1–5 of 7"
            message_id = int(reply["id"])
        async with running_bot(server, config):  # a new bot on the same database
            other = server.member(guild.id, "other fan")
            refused = await server.click(reply, buttons(reply)["Next"]["custom_id"], user_id=other.id)
            answer = await refused.reply(timeout=10)
            assert refused.ephemeral and "/trending" in answer["content"]
            shown = await turn(server, message_id, "Next")
            assert shown["content"] == "**Trending in the last 24 h** · 6–7 of 7"
            assert [e["title"].split(".")[0] for e in shown["embeds"]] == ["6", "7"]
            assert buttons(shown)["Next"]["disabled"] and not buttons(shown)["Previous"].get("disabled")
            shown = await turn(server, message_id, "Previous")
            assert [e["title"] for e in shown["embeds"]] == [e["title"] for e in reply["embeds"]]
            assert buttons(shown)["Previous"]["disabled"]
