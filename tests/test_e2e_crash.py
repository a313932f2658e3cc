"""kill -9 in the middle of delivery, then a restart: every channel gets the story exactly once.

The real `kpopnews run` process, configured by a file pointing at FakeDiscord, polls a loopback feed. Some
channels answer slowly: their messages are made but the answers have not reached the bot when it is killed.
On restart those deliveries are still pending; they are sent again with the same nonce, and Discord (the fake
keeps its rule) answers with the message it already made."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from bot import delivery as delivery_module
from bot.timeutil import utcnow
from tests.support.bot_harness import (
    bot_process,
    kill_9_tree,
    one_feed_bot_config,
    running_bot,
    started_and_polled,
)
from tests.support.discord_server import FakeDiscord
from tests.support.feed_server import FeedServer, wordpress_feed
from tests.support.world import FEED, v_iu_feed, world


def statuses(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())


async def test_kill_9_during_delivery_then_restart_posts_exactly_once(tmp_path):
    async with FeedServer() as feeds, FakeDiscord() as server:
        feeds.set_feed(FEED, wordpress_feed(3, prefix="old", site="https://www.koreaboo.com"))
        guild = server.add_guild("K-pop Fans", channels=[f"news-{i}" for i in range(6)])
        channels = guild.text_channels
        config, database = one_feed_bot_config(tmp_path, server, feeds, FEED)
        async with bot_process(config) as first:
            await started_and_polled(first, server, feeds, FEED)
            for channel in channels:
                interaction = await server.invoke("subscribe", {"channel": channel.id}, channel_id=channel.id)
                assert "Done" in (await interaction.reply(timeout=10))["content"]
            slow = channels[3:]
            for channel in slow:  # the message is made, the answer takes 90 s: the bot dies waiting for it
                server.inject(
                    "POST", rf"/channels/{channel.id}/messages", status=None, delay=90.0, after=True
                )
            feeds.set_feed(FEED, v_iu_feed(published=utcnow() - timedelta(minutes=2)))
            await server.wait_for(
                # 45 s: a loaded CI machine once needed more than 20 s for the like wait in test_e2e_channels
                lambda: all(len(server.messages(c.id)) == 1 for c in channels),
                45,
                what="every post made",
            )
            await asyncio.sleep(0.5)  # the fast channels' answers are recorded; the slow ones are in flight
            kill_9_tree(first.process)
            assert await first.wait() == -9
        done = statuses(database)
        assert done.get("sent", 0) == 3 and done.get("pending", 0) == 3, done

        server.clear_injections()
        async with bot_process(config) as second:
            await second.wait_for_log("ready:")
            async with asyncio.timeout(20):
                while statuses(database).get("sent", 0) < 6:  # noqa: ASYNC110 - another process writes it
                    await asyncio.sleep(0.1)
            polls = feeds.hits[f"/dyn/{FEED}"]
            await server.wait_for(lambda: feeds.hits[f"/dyn/{FEED}"] >= polls + 2, 30, what="two more polls")
            assert await second.stop() == 0  # SIGTERM: a clean stop
        assert [len(server.messages(c.id)) for c in channels] == [1] * 6
        assert server.stats.nonce_replays == 3  # the in-doubt posts were resent and recognised
        assert statuses(database) == {"sent": 6}
        with sqlite3.connect(database) as db:
            recorded = {row[0] for row in db.execute("SELECT message_id FROM deliveries")}
        assert recorded == {int(server.messages(c.id)[0]["id"]) for c in channels}


async def test_a_send_in_doubt_for_longer_than_discord_remembers_nonces_is_found_in_the_channel(
    tmp_path, monkeypatch
):
    # Discord forgets a nonce after a few minutes; the worker then looks in the channel before sending again.
    # Here the fake forgets at once and the worker looks at once (waiting minutes is not a unit test).
    monkeypatch.setattr(delivery_module, "NONCE_TRUST", timedelta(0))
    async with world(tmp_path, nonce_window=0.0) as w:
        news = w.channel("news")
        await w.subscribe(news)
        w.server.inject("POST", rf"/channels/{news.id}/messages", status=None, delay=30.0, after=True)
        w.publish(v_iu_feed(published=utcnow()))
        [posted] = await w.server.wait_for_messages(news.id, 1, timeout=15)
        await w.bot.close()  # the process stops while the answer is still on its way
        assert statuses(w.h.database) == {"pending": 1}
        w.server.clear_injections()
        before = len(w.server.requests)
        async with running_bot(w.server, w.h.config) as again:
            async with asyncio.timeout(15):
                while (await again.store.deliveries.list())[0].status != "sent":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            [delivery] = await again.store.deliveries.list()
        assert delivery.message_id == int(posted["id"])
        assert len(w.server.messages(news.id)) == 1
        resent = [
            r for r in w.server.requests[before:] if r.method == "POST" and f"/channels/{news.id}/" in r.path
        ]
        assert resent == []
