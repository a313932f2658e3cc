"""Follows end to end over the real wire: members /follow artists from Discord (real discord.py against
FakeDiscord), the bot polls a loopback feed, and each follower gets a story by direct message: once, in their
language, within the daily cap (then one summary), never to a member whose DMs are closed, and exactly once
across a kill -9."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot import delivery as delivery_module
from bot import follows as follows_module
from bot.config import DeliveryConfig
from bot.timeutil import utcnow
from tests.support.bot_harness import (
    bot_process,
    kill_9_tree,
    one_feed_bot_config,
    running_bot,
    started_and_polled,
)
from tests.support.discord_server import FakeDiscord, FakeMember
from tests.support.feed_server import FeedServer, rss, wordpress_feed
from tests.support.world import FEED, V_IU_LINK, World, embed_of, rfc822, v_iu_feed, world

V_TITLES = (
    "BTS’s V Releases His New Single “Winter Ahead” Ahead Of Schedule",
    "BTS’s V Named The New Global Ambassador Of A Luxury Jewellery House",
    "BTS’s V Surprises Fans With A Pop-Up Café Visit In Seongsu",
)
EPHEMERAL = 1 << 6


def v_item(n: int, *, minutes_ago: float = 5) -> dict[str, str]:
    """A feed item about V alone (rss() item dict): one event each, so that no two are one cluster."""
    title = V_TITLES[n % len(V_TITLES)]
    return {
        "title": title,
        "link": f"https://www.koreaboo.com/news/bts-v-story-{n}/",
        "guid": f"https://www.koreaboo.com/?p=8{n:05d}",
        "pubDate": rfc822(utcnow() - timedelta(minutes=minutes_ago)),
        "description": f"{title}. ARMY are already talking about it.",
        "categories": "News,BTS,V",
    }


def v_feed(*numbers: int, with_v_iu: bool = False) -> bytes:
    """Koreaboo's feed with these V items (and the V and IU story)."""
    items = [v_item(n) for n in numbers]
    if with_v_iu:
        return v_iu_feed(published=utcnow() - timedelta(minutes=10), extra_items=items)
    body = wordpress_feed(3, prefix="old", site="https://www.koreaboo.com").decode()
    extra = rss(items).decode()
    block = extra[extra.index("<item>") : extra.rindex("</item>") + len("</item>")]
    return body.replace("</channel>", block + "</channel>").encode()


async def follow(w: World, member: FakeMember, artist: str, **kw: Any) -> dict[str, Any]:
    return await w.command("follow", {"artist": artist}, user_id=member.id, **kw)


def dms(w: World, member: FakeMember) -> list[dict[str, Any]]:
    return w.server.direct_messages(member.id)


async def dms_settled(w: World) -> None:
    await w.settle()
    await w.bot.direct_messages.drain(within=30)


def opened_dm_channels(w: World) -> int:
    return sum(1 for r in w.server.requests if r.method == "POST" and r.path.endswith("/users/@me/channels"))


# --- /follow + a story: one DM --------------------------------------------------------------------------------


async def test_a_follower_gets_one_dm_per_story_in_their_language_with_the_channel_posts_embed(tmp_path):
    async with world(tmp_path) as w:
        guild = w.h.guild.id
        anna = w.server.member(guild, "anna", locale="ko")
        bora = w.server.member(guild, "bora", locale="en-US")
        chul = w.server.member(guild, "chul", locale="ja")
        choices = await w.server.autocomplete("follow", {"artist": "뷔"}, focused="artist", user_id=anna.id)
        assert "bts-v" in [c["value"] for c in choices]
        reply = await follow(w, anna, "bts-v")
        assert reply["_ephemeral"] and "**V (BTS)** 팔로우 완료" in reply["content"]
        # two follows matching one story: still one DM, naming the artist the story is about
        assert "Following **BTS**" in (await follow(w, bora, "BTS"))["content"]
        assert "Following **V (BTS)**" in (await follow(w, bora, "V"))["content"]
        assert "already follow" in (await follow(w, bora, "bts-v"))["content"]
        await follow(w, chul, "Jungkook")  # not in the story
        assert "Done" in await w.subscribe(w.channel("news"))  # a channel too, to compare the embed

        w.publish(v_iu_feed(published=utcnow() - timedelta(minutes=10)))
        await w.server.wait_for(lambda: dms(w, anna) and dms(w, bora), 15, what="the followers' DMs")
        await w.polled()
        await dms_settled(w)
        [to_anna], [to_bora] = dms(w, anna), dms(w, bora)
        assert dms(w, chul) == []
        assert to_anna["content"].startswith("**V (BTS)** 새 소식") and "/언팔로우" in to_anna["content"]
        assert to_bora["content"].startswith("New story about **V (BTS)**")
        [post] = w.server.messages(w.channel("news").id)
        # the channel post's embed, its fixed words in the member's language; the story's own text as written
        assert embed_of(to_bora) == embed_of(post) and embed_of(to_anna)["url"] == V_IU_LINK
        korean, english = embed_of(to_anna), embed_of(post)
        assert (
            korean["fields"][0]["name"] == "팬들의 반응"
            and english["fields"][0]["name"] == "What fans are saying"
        )
        assert korean["fields"][0]["value"].endswith(" · Twitter")
        assert {k: v for k, v in korean.items() if k != "fields"} == {
            k: v for k, v in english.items() if k != "fields"
        }
        for message in (to_anna, to_bora):
            payload = w.server.create_payload(int(message["id"]))
            assert payload["enforce_nonce"] is True and 0 < len(payload["nonce"]) <= 25
            assert payload["allowed_mentions"]["parse"] == []
        assert opened_dm_channels(w) == 2

        # the next story costs one request each: the DM channels are kept
        w.publish(v_feed(1, with_v_iu=True))
        await w.server.wait_for(lambda: len(dms(w, anna)) == 2 and len(dms(w, bora)) == 2, 15, what="DMs")
        assert opened_dm_channels(w) == 2
        assert embed_of(dms(w, anna)[1])["url"] == "https://www.koreaboo.com/news/bts-v-story-1/"


# --- the daily cap ----------------------------------------------------------------------------------------------


async def test_past_the_daily_cap_the_days_other_stories_come_in_one_summary(tmp_path, monkeypatch):
    # the day ends 3 s after its first summary line (waiting for midnight is no test)
    monkeypatch.setattr(follows_module, "day_end", lambda day: utcnow() + timedelta(seconds=3))
    async with world(tmp_path, delivery=DeliveryConfig(max_dms_per_day=1)) as w:
        anna = w.server.member(w.h.guild.id, "anna", locale="en-US")
        await follow(w, anna, "bts-v")
        w.publish(v_feed(0, 1, 2))
        await w.server.wait_for(lambda: len(dms(w, anna)) == 2, 20, what="one DM, then the summary")
        await w.polled()
        await dms_settled(w)
        story_dm, summary = dms(w, anna)
        assert story_dm["content"].startswith("New story about **V (BTS)**")
        assert "up to 1 direct messages a day" in summary["content"]
        [listing] = summary["embeds"]
        assert listing["title"] == "Today's other stories"
        links = {f"https://www.koreaboo.com/news/bts-v-story-{n}/" for n in range(3)}
        shown = {link for link in links if f"]({link})" in listing["description"]}
        assert shown == links - {embed_of(story_dm)["url"]} and len(listing["description"].split("\n")) == 2
        payload = w.server.create_payload(int(summary["id"]))
        assert payload["enforce_nonce"] is True and payload["allowed_mentions"]["parse"] == []
        lines = [dm for dm in await w.store.direct_messages.list() if dm.kind == "summary"]
        assert {(dm.status, dm.message_id) for dm in lines} == {("sent", int(summary["id"]))}


# --- closed DMs -------------------------------------------------------------------------------------------------


async def test_closed_dms_pause_the_follower_who_is_told_once_and_follow_resumes(tmp_path):
    async with world(tmp_path) as w:
        anna = w.server.member(w.h.guild.id, "anna", locale="es-419")
        anna.user.dms_open = False
        assert "Ahora sigues a **V (BTS)**" in (await follow(w, anna, "bts-v"))["content"]
        w.publish(v_feed(0))
        await w.polled()
        await dms_settled(w)

        async def paused() -> bool:
            follower = await w.store.follows.follower(anna.id)
            return follower is not None and follower.paused

        async with asyncio.timeout(10):
            while not await paused():  # noqa: ASYNC110 - the worker writes it
                await asyncio.sleep(0.05)
        refused = [r for r in w.server.requests if r.status == 403]
        assert len(refused) == 1 and dms(w, anna) == []

        # told once, after their next command, in their language, only to them
        interaction = await w.server.invoke("news", {"artist": "V"}, user_id=anna.id)
        await interaction.reply(timeout=10)
        [notice] = await interaction.wait_for_followups(1, timeout=10)
        assert "tus MD están cerrados" in notice["content"] and notice["flags"] & EPHEMERAL
        again = await w.server.invoke("about", user_id=anna.id)
        await again.reply(timeout=10)
        await asyncio.sleep(0.5)
        assert again.followups == []

        # no retry, and nothing new for a paused member
        w.publish(v_feed(0, 1))
        await w.polled()
        await dms_settled(w)
        assert [r for r in w.server.requests if r.status == 403] == refused
        listing = await w.command("following", user_id=anna.id)
        assert "en pausa" in listing["content"] and "V (BTS)" in listing["content"]

        # /follow again resumes: the next story arrives
        anna.user.dms_open = True
        reply = (await follow(w, anna, "bts-v"))["content"]
        assert "Ya sigues a **V (BTS)**" in reply and "activos otra vez" in reply
        w.publish(v_feed(0, 1, 2))
        await w.server.wait_for(lambda: len(dms(w, anna)) == 1, 15, what="the DM after resuming")
        await w.polled()
        await dms_settled(w)
        [dm] = dms(w, anna)
        assert embed_of(dm)["url"] == "https://www.koreaboo.com/news/bts-v-story-2/"


# --- /unfollow, /following ------------------------------------------------------------------------------------


async def test_unfollow_and_following(tmp_path):
    async with world(tmp_path) as w:
        anna = w.server.member(w.h.guild.id, "anna", locale="en-US")
        assert "You don't follow any artist yet" in (await w.command("following", user_id=anna.id))["content"]
        await follow(w, anna, "bts-v")
        await follow(w, anna, "아이유")  # IU, by her Hangul name
        listing = await w.command("following", user_id=anna.id)
        assert listing["_ephemeral"]
        assert "• V (BTS)" in listing["content"] and "• IU" in listing["content"]
        assert "You follow 2 artists." in listing["content"]
        choices = await w.server.autocomplete("unfollow", {"artist": ""}, focused="artist", user_id=anna.id)
        assert sorted(c["value"] for c in choices) == ["bts-v", "iu"]
        reply = await w.command("unfollow", {"artist": "bts-v"}, user_id=anna.id)
        assert reply["_ephemeral"] and "Unfollowed **V (BTS)**" in reply["content"]
        reply = await w.command("unfollow", {"artist": "bts-v"}, user_id=anna.id)
        assert reply["_ephemeral"] and "You don't follow **V (BTS)**" in reply["content"]
        assert "You follow 1 artist." in (await w.command("following", user_id=anna.id))["content"]
        w.publish(v_feed(0))
        await w.polled()
        await dms_settled(w)
        assert dms(w, anna) == []


# --- exactly once across kill -9 --------------------------------------------------------------------------------


def dm_statuses(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT status, count(*) FROM dm_deliveries GROUP BY status").fetchall())


async def test_kill_9_while_dms_are_sent_then_restart_dms_each_follower_exactly_once(tmp_path):
    async with FeedServer() as feeds, FakeDiscord() as server:
        feeds.set_feed(FEED, wordpress_feed(3, prefix="old", site="https://www.koreaboo.com"))
        guild = server.add_guild("K-pop Fans", channels=["general"])
        members = [server.member(guild.id, f"fan-{i}") for i in range(4)]
        config, database = one_feed_bot_config(tmp_path, server, feeds, FEED)
        async with bot_process(config) as first:
            await started_and_polled(first, server, feeds, FEED)
            for member in members:
                interaction = await server.invoke("follow", {"artist": "bts-v"}, user_id=member.id)
                assert "Following" in (await interaction.reply(timeout=10))["content"]
            # the first two DMs are made, but their answers take 30 s: the bot dies waiting for them
            server.inject("POST", r"/channels/\d+/messages", status=None, delay=30.0, after=True, times=2)
            feeds.set_feed(FEED, v_iu_feed(published=utcnow() - timedelta(minutes=2)))
            await server.wait_for(
                lambda: all(len(server.direct_messages(m.id)) == 1 for m in members), 20, what="every DM made"
            )
            await asyncio.sleep(0.5)  # the fast answers are recorded; the slow ones are in flight
            kill_9_tree(first.process)
            assert await first.wait() == -9
        assert dm_statuses(database) == {"sent": 2, "pending": 2}

        server.clear_injections()
        async with bot_process(config) as second:
            await second.wait_for_log("ready:")
            async with asyncio.timeout(20):
                while dm_statuses(database).get("sent", 0) < 4:  # noqa: ASYNC110 - another process writes it
                    await asyncio.sleep(0.1)
            polls = feeds.hits[f"/dyn/{FEED}"]
            await server.wait_for(lambda: feeds.hits[f"/dyn/{FEED}"] >= polls + 2, 15, what="two more polls")
            assert await second.stop() == 0
        assert [len(server.direct_messages(m.id)) for m in members] == [1] * 4
        assert server.stats.nonce_replays == 2  # the in-doubt DMs were sent again and recognised
        with sqlite3.connect(database) as db:
            recorded = {row[0] for row in db.execute("SELECT message_id FROM dm_deliveries")}
        assert recorded == {int(server.direct_messages(m.id)[0]["id"]) for m in members}


async def test_a_dm_in_doubt_for_longer_than_discord_remembers_nonces_is_found_in_the_dm_channel(
    tmp_path, monkeypatch
):
    # Discord forgets a nonce after a few minutes; the worker then looks in the DM channel before sending again.
    # Here the fake forgets at once and the worker looks at once (waiting minutes is not a unit test).
    monkeypatch.setattr(delivery_module, "NONCE_TRUST", timedelta(0))
    async with world(tmp_path, nonce_window=0.0) as w:
        anna = w.server.member(w.h.guild.id, "anna")
        await follow(w, anna, "bts-v")
        w.server.inject("POST", r"/channels/\d+/messages", status=None, delay=30.0, after=True)
        w.publish(v_feed(0))
        await w.server.wait_for(lambda: len(dms(w, anna)) == 1, 15, what="the DM made")
        await w.bot.close()  # the process stops while the answer is still on its way
        with sqlite3.connect(w.h.database) as db:
            assert db.execute("SELECT status, attempts FROM dm_deliveries").fetchall() == [("pending", 1)]
        w.server.clear_injections()
        before = len(w.server.requests)
        async with running_bot(w.server, w.h.config) as again:
            async with asyncio.timeout(15):
                while (await again.store.direct_messages.list())[0].status != "sent":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            [dm] = await again.store.direct_messages.list()
        [made] = dms(w, anna)
        assert dm.message_id == int(made["id"])
        resent = [r for r in w.server.requests[before:] if r.method == "POST" and "/messages" in r.path]
        assert resent == []
