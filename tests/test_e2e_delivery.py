"""End to end over the real wire: the real bot (discord.py over loopback sockets) against FakeDiscord, feeds served
by a loopback HTTP server, a real SQLite file. An admin subscribes from Discord, a story appears in the feed, the
bot polls, stores, clusters, queues and posts it: once, whatever Discord does in between."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.artists import ArtistIndex
from bot.timeutil import utcnow
from tests.support.discord_server import Permission
from tests.support.feed_server import rss
from tests.support.world import (
    V_IU_LINK,
    V_IU_TITLE,
    embed_of,
    eventually,
    news_item,
    rfc822,
    v_iu_feed,
    world,
)


async def _none(rows: Any) -> bool:
    return not await rows


async def _any_failed(store: Any) -> bool:
    return any(d.status == "failed" for d in await store.deliveries.list())


# --- the happy path ----------------------------------------------------------------------------------------


async def test_admin_subscribes_and_a_new_story_is_posted_once_with_headline_link_image_and_quote(tmp_path):
    async with world(tmp_path) as w:
        news, fans = w.channel("news"), w.channel("fans")
        admin = w.server.member(w.h.guild.id, "admin", permissions=Permission.MANAGE_GUILD)
        text = await w.subscribe(news, user_id=admin.id)
        assert "Done" in text and f"<#{news.id}>" in text
        # two subscriptions in one channel that both match the story: still one post there
        assert "Done" in await w.subscribe(fans, artist="V")
        assert "Done" in await w.subscribe(fans, artist="IU")
        await w.polled()
        assert w.server.messages(news.id) == [] and w.server.messages(fans.id) == []  # backfill stays quiet

        now = utcnow()
        w.publish(
            v_iu_feed(
                published=now - timedelta(minutes=10),
                extra_items=[
                    news_item(1, published=now - timedelta(hours=25))
                ],  # new to the feed, but too old
            )
        )
        [posted] = await w.server.wait_for_messages(news.id, 1, timeout=15)
        await w.polled()
        assert len(w.server.messages(news.id)) == 1
        assert len(w.server.messages(fans.id)) == 1
        embed = embed_of(posted)
        assert embed["title"].startswith(V_IU_TITLE.replace("’", "’"))
        assert embed["url"] == V_IU_LINK
        assert embed["image"]["url"].startswith("https://")
        quotes = [f for f in embed.get("fields", []) if "twitter.com" in f["value"] or "x.com" in f["value"]]
        assert quotes, embed.get("fields")
        payload = w.server.create_payload(int(posted["id"]))
        assert payload["allowed_mentions"] == {"parse": []} or payload["allowed_mentions"].get("parse") == []
        assert payload["enforce_nonce"] is True and 0 < len(payload["nonce"]) <= 25
        [sub] = await w.store.subscriptions.list(channel_id=news.id)
        assert sub.last_post_at is not None and sub.status == "ok"


async def test_stories_in_the_feed_when_subscribing_are_not_posted(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        now = utcnow()
        w.publish(v_iu_feed(published=now - timedelta(minutes=5)))  # fresh, but out before the subscription
        await w.polled()
        assert "Done" in await w.subscribe(news)
        w.publish(v_iu_feed(published=now - timedelta(minutes=5), extra_items=[news_item(2, published=now)]))
        [posted] = await w.server.wait_for_messages(news.id, 1, timeout=15)
        await w.polled()
        assert [embed_of(m)["url"] for m in w.server.messages(news.id)] == [
            "https://www.koreaboo.com/news/seventeen-tour-2/"
        ]
        assert posted


# --- Discord errs ------------------------------------------------------------------------------------------


async def test_a_429_and_a_502_on_posting_still_deliver_exactly_once(tmp_path):
    async with world(tmp_path) as w:
        news, fans = w.channel("news"), w.channel("fans")
        await w.subscribe(news)
        await w.subscribe(fans)
        path = rf"/channels/{news.id}/messages"
        w.server.inject(
            "POST", path, status=429, times=1, retry_after=0.3
        )  # with Via: discord.py waits, retries
        w.server.inject("POST", path, status=502, times=1)  # retried by discord.py with the same nonce
        # the message is made but the answer lost: the retry must not make a second one
        w.server.inject("POST", rf"/channels/{fans.id}/messages", status=502, times=1, after=True)
        w.publish(v_iu_feed(published=utcnow()))
        await w.server.wait_for_messages(news.id, 1, timeout=20)
        await w.server.wait_for_messages(fans.id, 1, timeout=20)
        await w.polled()
        assert len(w.server.messages(news.id)) == 1 and len(w.server.messages(fans.id)) == 1
        assert w.server.stats.injected[429] == 1 and w.server.stats.injected[502] == 2
        assert w.server.stats.nonce_replays >= 1
        assert {d.status for d in await w.store.deliveries.list()} == {"sent"}


async def test_a_429_without_via_and_a_503_are_retried_by_the_worker(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        await w.subscribe(news)
        path = rf"/channels/{news.id}/messages"
        w.server.inject("POST", path, status=429, times=1, retry_after=1.0, via=False)  # discord.py gives up
        w.server.inject("POST", path, status=503, times=1, retry_after=1.0)  # discord.py does not retry 503
        w.publish(v_iu_feed(published=utcnow()))
        await w.server.wait_for_messages(news.id, 1, timeout=20)
        await w.polled()
        assert len(w.server.messages(news.id)) == 1
        [delivery] = await w.store.deliveries.list()
        assert delivery.status == "sent" and delivery.attempts == 3


async def test_a_refused_channel_turns_unhealthy_while_others_keep_receiving(tmp_path):
    async with world(tmp_path) as w:
        news, fans = w.channel("news"), w.channel("fans")
        await w.subscribe(news)
        await w.subscribe(fans)
        w.server.set_bot_channel_permissions(news.id, view=True, send=False, embed=True)  # taken away later
        w.publish(v_iu_feed(published=utcnow()))
        await w.server.wait_for_messages(fans.id, 1, timeout=15)
        await w.server.wait_for(lambda: w.server.stats.responses[403] >= 1, 10, what="the refused post")
        await w.settle()
        assert w.server.messages(news.id) == []
        [sub] = await w.store.subscriptions.list(channel_id=news.id)
        assert sub.status == "unhealthy" and "Missing Permissions" in sub.last_error and sub.retry_at
        # the admin sees it, with what to do
        reply = await w.command("subscriptions")
        assert reply["_ephemeral"]
        text = " ".join(e.get("description", "") for e in reply["embeds"])
        assert "unhealthy" in text and "Missing Permissions" in text and "Send Messages" in text
        assert f"<#{fans.id}>" in text and "last post" in text
        # fixed by the admin, who says so with /subscribe: the waiting story goes out
        w.server.set_bot_channel_permissions(news.id, view=True, send=True, embed=True)
        assert "back on" in await w.subscribe(news)
        await w.server.wait_for_messages(news.id, 1, timeout=15)
        await w.settle()
        assert len(w.server.messages(news.id)) == 1


async def test_an_unknown_channel_loses_its_subscriptions(tmp_path):
    async with world(tmp_path, channels=("general", "news", "fans", "misc")) as w:
        news, fans, misc = w.channel("news"), w.channel("fans"), w.channel("misc")
        for channel in (news, fans, misc):
            await w.subscribe(channel)
        w.server.inject(
            "POST",
            rf"/channels/{news.id}/messages",
            status=404,
            times=1,
            body={"code": 10003, "message": "Unknown Channel"},
        )
        # a 404 that is not Discord's Unknown Channel (a wrong route, a proxy) removes nothing
        w.server.inject(
            "POST",
            rf"/channels/{misc.id}/messages",
            status=404,
            times=1,
            body={"code": 0, "message": "404: Not Found"},
        )
        w.publish(v_iu_feed(published=utcnow()))
        await w.server.wait_for_messages(fans.id, 1, timeout=15)
        await w.settle()
        assert await w.store.subscriptions.list(channel_id=news.id) == []
        assert len(await w.store.subscriptions.list(channel_id=fans.id)) == 1
        assert len(await w.store.subscriptions.list(channel_id=misc.id)) == 1
        # a deleted channel (CHANNEL_DELETE) goes the same way
        w.server.remove_channel(fans.id)
        await eventually(lambda: _none(w.store.subscriptions.list(channel_id=fans.id)))


async def test_a_400_is_recorded_and_never_retried(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        await w.subscribe(news)
        w.server.inject(
            "POST",
            rf"/channels/{news.id}/messages",
            status=400,
            times=5,
            body={"code": 50035, "message": "Invalid Form Body", "errors": {}},
        )
        w.publish(v_iu_feed(published=utcnow()))
        await eventually(lambda: _any_failed(w.store), within=15)
        await w.polled()
        posts = [
            r
            for r in w.server.requests
            if r.method == "POST" and r.path.endswith(f"/channels/{news.id}/messages")
        ]
        assert len(posts) == 1
        [sub] = await w.store.subscriptions.list(channel_id=news.id)
        assert "Invalid Form Body" in sub.last_error


async def test_leaving_a_server_removes_its_subscriptions(tmp_path):
    async with world(tmp_path) as w:
        await w.subscribe(w.channel("news"))
        assert await w.store.subscriptions.list(guild_id=w.h.guild.id)
        w.server.remove_guild(w.h.guild.id)
        await eventually(lambda: _none(w.store.subscriptions.list(guild_id=w.h.guild.id)))


async def test_gateway_reconnect_mid_run_still_delivers(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        await w.subscribe(news)
        await w.server.reconnect()
        w.publish(v_iu_feed(published=utcnow()))
        await w.server.drop_connections(
            code=4000
        )  # and once more, the hard way, while the story is on its way
        await w.server.wait_for_messages(news.id, 1, timeout=20)
        await w.server.wait_for(lambda: w.bot.is_ready() and not w.bot.is_closed(), 15)
        await w.polled()
        assert len(w.server.messages(news.id)) == 1
        # and commands still work after the reconnects
        assert "already" in await w.subscribe(news)


async def test_also_on_edit_when_another_outlet_carries_the_story(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        await w.subscribe(news)
        now = utcnow()
        w.publish(v_iu_feed(published=now - timedelta(minutes=30)))
        [posted] = await w.server.wait_for_messages(news.id, 1, timeout=15)
        # Soompi reports the same event: the operator adds it; its story joins the cluster, the post is edited
        soompi = rss(
            [
                {
                    "title": "BTS’s V Wows Fans By Singing Live On Set Of IU’s “Love Wins All” MV",
                    "link": "https://www.soompi.com/article/1639999wpp/bts-v-sings-live-iu-love-wins-all",
                    "guid": "https://www.soompi.com/?p=1639999",
                    "pubDate": rfc822(now - timedelta(minutes=5)),
                    "description": "BTS’s V sang live on the set of IU’s “Love Wins All” music video, a new "
                    "behind-the-scenes clip shows, and fans are swooning over the romantic scene.",
                    "categories": "BTS,IU,V",
                }
            ],
            title="Soompi",
        )
        w.feeds.set_feed("soompi", soompi)
        await w.store.sources.add(w.feeds.url("/dyn/soompi"), "Soompi", owner_guild_id=None)
        # the first poll of a source is backfill; make this one count as a later poll
        src = await w.store.sources.get_by_url(w.feeds.url("/dyn/soompi"))
        src.last_success_at = utcnow()
        await w.store.sources.save_state(src)
        w.bot.poller.wake()
        await w.server.wait_for(
            lambda: "Also on" in (embed_of(w.server.message(int(posted["id"]))).get("description") or ""),
            20,
            what="the Also on edit",
        )
        await w.settle()
        assert len(w.server.messages(news.id)) == 1
        assert "Soompi" in embed_of(w.server.messages(news.id)[0])["description"]


# --- without artist data -----------------------------------------------------------------------------------


def _artist_data_missing(folder: Path) -> Any:
    def load() -> Any:
        return json.loads((folder / "no-such-data" / "kpopnet.min.json").read_text(encoding="utf-8"))

    return load


def _artist_data_broken(folder: Path) -> Any:
    def load() -> Any:
        return ArtistIndex.from_data({"groups": [], "idols": []}, '[artist.bts-v]\nname = "V\n')

    return load


@pytest.mark.parametrize("unloadable", [_artist_data_missing, _artist_data_broken], ids=["missing", "broken"])
async def test_stories_are_delivered_when_the_artist_data_cannot_be_loaded(
    tmp_path, monkeypatch, capsys, caplog, unloadable
):
    # the bot runs in this process: its artist index is what ArtistIndex.load gives, here an error
    monkeypatch.setattr(ArtistIndex, "load", staticmethod(unloadable(tmp_path)))
    async with world(tmp_path) as w:
        assert w.bot.artists is None and w.store.artists is None
        news = w.channel("news")
        assert "Done" in await w.subscribe(news)
        w.publish(v_iu_feed(published=utcnow() - timedelta(minutes=10)))
        [posted] = await w.server.wait_for_messages(news.id, 1, timeout=15)
        await w.polled()
        assert len(w.server.messages(news.id)) == 1
        embed = embed_of(posted)
        assert embed["url"] == V_IU_LINK
        # no index to tag with: the story has no artists, so the card names none
        [delivery] = await w.store.deliveries.list(status="sent")
        story = await w.store.stories.get(delivery.story_id)
        assert story is not None and story.url == V_IU_LINK and story.artists == []
        assert "BTS" not in embed.get("footer", {}).get("text", "")
    warned = [line for line in capsys.readouterr().err.splitlines() if "artist data" in line]
    assert len(warned) == 1 and warned[0].startswith("kpopnews: warning: artist data cannot be loaded"), (
        warned
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
