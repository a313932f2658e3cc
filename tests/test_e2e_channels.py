"""End to end over the real wire, channels beyond text: forum posts with artist tags, announcement posts published
while the publish limit allows, discussion threads, role pings, keyword filters, and the checks /subscribe makes.
The real bot (discord.py over loopback) against FakeDiscord, a loopback feed, a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from typing import Any

from bot.channel_posts import thread_name
from bot.timeutil import utcnow
from tests.support.bot_harness import (
    bot_process,
    kill_9_tree,
    one_feed_bot_config,
    running_bot,
    started_and_polled,
)
from tests.support.discord_server import ChannelType, FakeDiscord, MessageFlag, Permission
from tests.support.feed_server import FeedServer, wordpress_feed
from tests.support.world import FEED, V_IU_TITLE, World, embed_of, eventually, news_item, v_iu_feed, world

FORUM_TAGS = ("News", ("BTS", "💜"), "IU", "BLACKPINK", "Comeback")


def subscriptions_text(reply: dict[str, Any]) -> str:
    return " ".join(e.get("description", "") for e in reply.get("embeds") or [])


def requests_to(w: World, method: str, pattern: str) -> list[Any]:
    return [r for r in w.server.requests if r.method == method and r.route == pattern]


TOPICS = [
    ("IVE win their first music show with “Rebel Heart”", "DIVE celebrate a triple crown on the charts."),
    ("aespa reveal the dates of a stadium run", "MY can buy tickets from Friday in Seoul."),
    ("NewJeans’ Hanni stars in a luxury campaign", "The brand shared photos shot in Sydney."),
    ("Stray Kids top the Billboard 200 again", "Their sixth number one album in a row."),
]


def distinct_items(now: Any, count: int) -> list[dict[str, str]]:
    """Feed items about unrelated events (clustering keeps them apart), a minute apart, oldest first."""
    items = []
    for n, (title, description) in enumerate(TOPICS[:count], start=1):
        item = news_item(n, published=now - timedelta(minutes=count + 1 - n), title=title)
        item["description"] = description
        item["categories"] = "News"
        items.append(item)
    return items


async def headline(store: Any) -> str:
    """The headline of the (one) story delivered, as stored."""
    story_ids = {d.story_id for d in await store.deliveries.list()}
    [story_id] = story_ids
    story = await store.stories.get(story_id)
    return story.title


async def statuses(w: World) -> dict[int, str]:
    return {d.channel_id: d.status for d in await w.store.deliveries.list()}


# --- forums -------------------------------------------------------------------------------------------------


async def test_a_forum_gets_one_post_per_story_named_and_tagged_after_its_artists(tmp_path):
    async with world(tmp_path) as w:
        forum = w.add_channel("k-news", type=ChannelType.FORUM, tags=FORUM_TAGS)
        plain = w.add_channel("no-artist-tags", type=ChannelType.FORUM, tags=("News", "Rumors"))
        text = await w.subscribe(forum)
        assert "Done" in text and "forum post" in text
        assert "Done" in await w.subscribe(plain)
        now = utcnow()
        long_one = news_item(1, published=now - timedelta(minutes=4))
        long_one["title"] = "SEVENTEEN " + "announce another stop of their record-breaking world tour " * 5
        w.publish(v_iu_feed(published=now - timedelta(minutes=5), extra_items=[long_one]))
        await w.server.wait_for(
            lambda: len(w.server.threads(forum.id)) == 2 and len(w.server.threads(plain.id)) == 2, 15
        )
        await w.polled()
        post, long_post = w.server.threads(forum.id)
        v_iu = next(d for d in await w.store.deliveries.list() if d.thread_id == post.id)
        title = (await w.store.stories.get(v_iu.story_id)).title
        assert title.startswith(V_IU_TITLE) and post.name == title  # 99 characters: whole
        assert long_post.name.endswith(" stop of their…") and len(long_post.name) <= 100  # at a word
        assert sorted(post.applied_tags) == sorted([forum.tag_id("BTS"), forum.tag_id("IU")])
        assert long_post.applied_tags == []  # no tag names SEVENTEEN: a post all the same
        [first] = w.server.messages(post.id)
        assert embed_of(first)["title"].startswith("BTS’s V Is Going Viral")
        assert first["content"] == ""  # no ping asked
        untagged = w.server.threads(plain.id)  # no tag fits: still posts, without tags
        assert [t.applied_tags for t in untagged] == [[], []]
        assert all(len(w.server.messages(t.id)) == 1 for t in untagged)
        assert w.server.messages(forum.id) == []  # nothing posted in the forum itself
        assert v_iu.status == "sent" and v_iu.message_id == int(first["id"])

        # another outlet's story joins the cluster: the post's first message gets "Also on"
        await add_soompi(w)
        await w.server.wait_for(
            lambda: "Also on" in (embed_of(w.server.message(int(first["id"]))).get("description") or ""),
            20,
            what="the Also on edit of the forum post",
        )
        assert len(w.server.threads(forum.id)) == 2 and len(w.server.messages(post.id)) == 1


async def add_soompi(w: World) -> None:
    """Soompi carries the V and IU story too; its first poll counts as a later one, so the story is new."""
    from tests.support.feed_server import rss
    from tests.support.world import rfc822

    w.feeds.set_feed(
        "soompi",
        rss(
            [
                {
                    "title": "BTS’s V Wows Fans By Singing Live On Set Of IU’s “Love Wins All” MV",
                    "link": "https://www.soompi.com/article/1639999wpp/bts-v-sings-live-iu-love-wins-all",
                    "guid": "https://www.soompi.com/?p=1639999",
                    "pubDate": rfc822(utcnow() - timedelta(minutes=2)),
                    "description": "BTS’s V sang live on the set of IU’s “Love Wins All” music video, a new "
                    "behind-the-scenes clip shows, and fans are swooning over the romantic scene.",
                    "categories": "BTS,IU,V",
                }
            ],
            title="Soompi",
        ),
    )
    await w.store.sources.add(w.feeds.url("/dyn/soompi"), "Soompi", owner_guild_id=None)
    source = await w.store.sources.get_by_url(w.feeds.url("/dyn/soompi"))
    source.last_success_at = utcnow()
    await w.store.sources.save_state(source)
    w.bot.poller.wake()


async def test_a_forum_requiring_a_tag_none_fits_gets_no_post_no_retries_and_a_clear_health(tmp_path):
    async with world(tmp_path) as w:
        strict = w.add_channel(
            "strict", type=ChannelType.FORUM, tags=("BLACKPINK", "TWICE"), require_tag=True
        )
        # Discord's own answer when the bot's view of the forum is out of date
        changed = w.add_channel("changed", type=ChannelType.FORUM, tags=("News",))
        await w.subscribe(strict)
        await w.subscribe(changed)
        w.server.inject(
            "POST",
            rf"/channels/{changed.id}/threads",
            status=400,
            times=5,
            body={"code": 40067, "message": "A tag is required to create a forum post in this channel"},
        )
        w.publish(v_iu_feed(published=utcnow()))
        await eventually(lambda: _both_failed(w, strict.id, changed.id), within=20)
        await w.polled(2)
        assert w.server.threads(strict.id) == [] and w.server.threads(changed.id) == []
        assert requests_to(w, "POST", "POST /channels/{channel_id}/threads") != []
        assert [r.status for r in w.server.requests if f"/channels/{strict.id}/threads" in r.path] == []
        assert [r.status for r in w.server.requests if f"/channels/{changed.id}/threads" in r.path] == [400]
        text = subscriptions_text(await w.command("subscriptions"))
        assert text.count("this forum requires a tag and none matches V (BTS), IU") == 2, text
        assert "(forum)" in text


async def _both_failed(w: World, *channel_ids: int) -> bool:
    found = await statuses(w)
    return all(found.get(c) == "failed" for c in channel_ids)


# --- announcement channels ----------------------------------------------------------------------------------


async def test_announcement_posts_are_published_until_the_limit_then_left_unpublished_and_said(tmp_path):
    async with world(tmp_path, publish_limit=(2, 3600.0)) as w:
        announce = w.add_channel("announcements", type=ChannelType.ANNOUNCEMENT)
        text = await w.subscribe(announce)
        assert "Done" in text and "published" in text
        now = utcnow()
        w.publish(v_iu_feed(published=now - timedelta(minutes=9), extra_items=distinct_items(now, 3)))
        posted = await w.server.wait_for_messages(announce.id, 4, timeout=20)
        await w.polled(2)
        assert len(w.server.messages(announce.id)) == 4  # every post went out, none waited for the limit
        published = [m for m in w.server.messages(announce.id) if int(m["flags"]) & MessageFlag.CROSSPOSTED]
        assert len(published) == 2 and w.server.stats.publishes == 2
        # one 429 from the limit, then no more asking: the rest are left as they are
        crossposts = requests_to(w, "POST", "POST /channels/{channel_id}/messages/{message_id}/crosspost")
        assert [r.status for r in crossposts] == [200, 200, 429]
        assert w.server.stats.route_ratelimited == 1
        states = sorted(d.publish_state for d in await w.store.deliveries.list())
        assert states == ["done", "done", "limited", "limited"]
        reply = await w.command("subscriptions")
        text = subscriptions_text(reply)
        assert "(announcement channel)" in text and "Publish limit reached at <t:" in text
        assert "2 posts left unpublished" in text and "publishing again <t:" in text
        assert posted


# --- discussion threads -------------------------------------------------------------------------------------


async def test_a_thread_is_opened_on_each_post_once_even_when_the_answer_is_lost(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        assert "discussion thread" in await w.subscribe(news, threads=True)
        route = rf"/channels/{news.id}/messages/\d+/threads"
        w.server.inject(
            "POST", route, status=None, delay=30.0, after=True
        )  # made; the answer never comes back
        w.publish(v_iu_feed(published=utcnow()))
        [posted] = await w.server.wait_for_messages(news.id, 1, timeout=15)
        await w.server.wait_for(lambda: w.server.threads(news.id), 15, what="the thread")
        await asyncio.sleep(0.3)
        await w.bot.close()  # the bot stops while the answer is on its way
        with sqlite3.connect(w.h.database) as db:
            assert db.execute("SELECT status, thread_state FROM deliveries").fetchall() == [
                ("sent", "attempted")
            ]
        w.server.clear_injections()
        async with running_bot(w.server, w.h.config) as again:
            await eventually(lambda: _thread_done(again), within=15)
            [delivery] = await again.store.deliveries.list()
            title = await headline(again.store)
        [thread] = w.server.threads(news.id)
        assert delivery.thread_id == thread.id == int(posted["id"])
        assert thread.name == thread_name(title) and thread.auto_archive_duration == 1440
        asks = [r for r in w.server.requests if r.method == "POST" and r.path.endswith("/threads")]
        assert [r.json["auto_archive_duration"] for r in asks] == [1440, 1440]
        assert asks[-1].status == 400  # Discord: a thread exists for the message already (160004): done


async def _thread_done(bot: Any) -> bool:
    return [d.thread_state for d in await bot.store.deliveries.list()] == ["done"]


# --- role pings ---------------------------------------------------------------------------------------------


async def test_a_role_ping_mentions_that_role_only_whatever_the_feed_says(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        guild = w.h.guild
        army = w.server.add_role(guild.id, "ARMY", mentionable=True)
        other = w.server.add_role(guild.id, "Mods", mentionable=True)
        forum = w.add_channel("k-news", type=ChannelType.FORUM, tags=FORUM_TAGS)
        await asyncio.sleep(0.2)  # the role and channel events reach the bot
        assert f"pings <@&{army.id}>" in await w.subscribe(news, ping=army.id)
        assert "Done" in await w.subscribe(forum, ping=army.id)
        now = utcnow()
        hostile = news_item(1, published=now)
        hostile["title"] = f"@everyone SEVENTEEN <@&{other.id}> news @here <@{guild.owner_id}>"
        hostile["description"] = f"@everyone <@&{other.id}> @here read this <@{guild.owner_id}>"
        w.publish(v_iu_feed(published=now - timedelta(minutes=5), extra_items=[hostile]))
        posts = await w.server.wait_for_messages(news.id, 2, timeout=15)
        await w.server.wait_for(lambda: len(w.server.threads(forum.id)) == 2, 15, what="the forum posts")
        await w.polled()
        firsts = [w.server.messages(t.id)[0] for t in w.server.threads(forum.id)]
        for message in [*posts, *firsts]:
            assert message["content"] == f"<@&{army.id}>"
            sent = w.server.create_payload(int(message["id"]))["allowed_mentions"]
            assert sent.get("parse") == [] and [int(r) for r in sent["roles"]] == [army.id]
            assert "users" not in sent or sent["users"] == []
        pings = [m for m in w.server.mentions if m.pinged]
        assert {(m.kind, m.target_id) for m in pings} == {("role", army.id)} and len(pings) == 4
        assert w.server.stats.everyone_pings == 0 and w.server.stats.role_pings == 4


async def test_a_role_the_bot_may_not_mention_is_refused_at_subscribe_time(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        guild = w.h.guild
        quiet = w.server.add_role(guild.id, "Quiet fans", mentionable=False)
        await asyncio.sleep(0.2)
        refused = await w.subscribe(news, ping=quiet.id)
        assert "cannot ping" in refused and "not mentionable" in refused and "Mention @everyone" in refused
        assert await w.store.subscriptions.list(channel_id=news.id) == []
        everyone = await w.subscribe(news, ping=guild.everyone_role_id)
        assert "never ping @everyone" in everyone
        # the bot may mention every role in that channel: accepted
        w.server.set_channel_overwrite(news.id, w.server.bot_user_id, allow=Permission.MENTION_EVERYONE)
        await asyncio.sleep(0.2)
        assert "Done" in await w.subscribe(news, ping=quiet.id)


# --- keyword filters ----------------------------------------------------------------------------------------


async def test_keywords_and_exclusions_choose_the_stories(tmp_path):
    async with world(tmp_path) as w:
        news, fans = w.channel("news"), w.channel("fans")
        text = await w.subscribe(news, keywords="World Tour, comeback", exclude="rumor")
        assert "Done" in text and "mentioning “World Tour” or “comeback”, not mentioning “rumor”" in text
        refused = await w.subscribe(fans, keywords="comeback, .*")
        assert "no letters or digits" in refused and "not patterns" in refused
        too_many = await w.subscribe(fans, keywords=",".join(f"w{i}" for i in range(11)))
        assert "at most 10" in too_many
        assert await w.store.subscriptions.list(channel_id=fans.id) == []
        now = utcnow()
        items = distinct_items(now, 4)
        items[0]["title"] = "SEVENTEEN confirm a world-tour for 2025"
        items[1]["title"] = "ENHYPEN World Tour rumor denied by their agency"
        items[2]["title"] = "NewJeans plan a Comeback in June"
        items[3]["title"] = "Stray Kids comebacks ranked by their fans"
        w.publish(v_iu_feed(published=now - timedelta(minutes=5), extra_items=items))
        await w.server.wait_for_messages(news.id, 2, timeout=15)
        await w.polled(2)
        titles = [embed_of(m)["title"] for m in w.server.messages(news.id)]
        assert titles == ["SEVENTEEN confirm a world-tour for 2025", "NewJeans plan a Comeback in June"]


# --- /subscribe checks and /subscriptions -------------------------------------------------------------------


async def test_subscribe_names_the_permissions_each_kind_of_channel_needs(tmp_path):
    async with world(tmp_path) as w:
        bot_id = w.server.bot_user_id
        forum = w.add_channel("k-news", type=ChannelType.FORUM, tags=FORUM_TAGS)
        w.server.set_channel_overwrite(forum.id, bot_id, deny=Permission.SEND_MESSAGES)
        threads_off = w.add_channel("talk")
        w.server.set_channel_overwrite(threads_off.id, bot_id, deny=Permission.CREATE_PUBLIC_THREADS)
        announce = w.add_channel("announcements", type=ChannelType.ANNOUNCEMENT)
        w.server.set_channel_overwrite(announce.id, bot_id, deny=Permission.EMBED_LINKS)
        open_forum = w.add_channel("open-forum", type=ChannelType.FORUM)
        media = w.add_channel("clips", type=ChannelType.MEDIA)
        await asyncio.sleep(0.3)
        assert "is a media channel" in await w.subscribe(media)
        assert "missing **Create Posts**" in await w.subscribe(forum)
        assert "missing **Create Public Threads**" in await w.subscribe(threads_off, threads=True)
        assert "Done" in await w.subscribe(threads_off)  # without threads it needs no more
        assert "missing **Embed Links**" in await w.subscribe(announce)
        assert "Leave `threads` off for it" in await w.subscribe(announce, threads=True)
        assert "Leave `threads` off for forums" in await w.subscribe(open_forum, threads=True)
        assert [s.channel_id for s in await w.store.subscriptions.list()] == [threads_off.id]


async def test_subscriptions_shows_where_what_ping_threads_and_health(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        forum = w.add_channel("k-news", type=ChannelType.FORUM, tags=FORUM_TAGS)
        army = w.server.add_role(w.h.guild.id, "ARMY", mentionable=True)
        await asyncio.sleep(0.2)
        await w.subscribe(news, artist="V", keywords="live, duet", exclude="rumor", threads=True)
        await w.subscribe(forum, ping=army.id, only_trending=True)
        text = subscriptions_text(await w.command("subscriptions"))
        assert (
            f"<#{news.id}> (text channel): new stories about **V (BTS)** mentioning “live” or “duet”" in text
        )
        assert ", not mentioning “rumor”" in text and "A discussion thread on each post" in text
        assert f"<#{forum.id}> (forum): every trending story from every source" in text
        assert f"Pings <@&{army.id}>" in text and "no post yet" in text
        # unsubscribing works for forums too
        reply = await w.command("unsubscribe", {"channel": forum.id})
        assert "Stopped" in reply["content"]


# --- exactly once across kill -9 ----------------------------------------------------------------------------


def delivery_rows(database: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT channel_id, status, publish_state, thread_id, message_id FROM deliveries ORDER BY id"
        ).fetchall()


async def test_kill_9_mid_forum_post_publish_and_ping_then_restart_does_each_exactly_once(tmp_path):
    async with FeedServer() as feeds, FakeDiscord() as server:
        feeds.set_feed(FEED, wordpress_feed(3, prefix="old", site="https://www.koreaboo.com"))
        guild = server.add_guild("K-pop Fans", channels=["general"])
        general = guild.channel("general")
        forums = [
            server.add_channel(guild.id, f"forum-{i}", type=ChannelType.FORUM, tags=FORUM_TAGS)
            for i in (1, 2)
        ]
        announces = [
            server.add_channel(guild.id, f"announce-{i}", type=ChannelType.ANNOUNCEMENT) for i in (1, 2)
        ]
        texts = [server.add_channel(guild.id, f"text-{i}") for i in (1, 2)]
        army = server.add_role(guild.id, "ARMY", mentionable=True)
        config, database = one_feed_bot_config(tmp_path, server, feeds, FEED)
        async with bot_process(config) as first:
            await started_and_polled(first, server, feeds, FEED)
            for channel in [*forums, *announces, *texts]:
                interaction = await server.invoke(
                    "subscribe", {"channel": channel.id, "ping": army.id}, channel_id=general.id
                )
                assert "Done" in (await interaction.reply(timeout=10))["content"]
            # each is made on Discord, and its answer takes 90 s: the bot dies waiting for it (longer than the wait
            # below, which a loaded CI machine once needed more than 20 s of: a slow answer must not come first)
            server.inject("POST", rf"/channels/{forums[0].id}/threads", status=None, delay=90.0, after=True)
            server.inject(
                "POST",
                rf"/channels/{announces[0].id}/messages/\d+/crosspost",
                status=None,
                delay=90.0,
                after=True,
            )
            server.inject("POST", rf"/channels/{texts[0].id}/messages", status=None, delay=90.0, after=True)
            feeds.set_feed(FEED, v_iu_feed(published=utcnow() - timedelta(minutes=2)))

            def all_made() -> bool:
                published = [
                    m
                    for c in announces
                    for m in server.messages(c.id)
                    if int(m["flags"]) & MessageFlag.CROSSPOSTED
                ]
                return (
                    all(len(server.threads(c.id)) == 1 for c in forums)
                    and len(published) == 2
                    and all(len(server.messages(c.id)) == 1 for c in texts)
                )

            await server.wait_for(all_made, 45, what="every post, publish and ping made")
            await asyncio.sleep(0.5)  # the fast answers are recorded; the slow ones are in flight
            kill_9_tree(first.process)
            assert await first.wait() == -9
        rows = {row[0]: row for row in delivery_rows(database)}
        assert rows[forums[0].id][1] == "pending" and rows[texts[0].id][1] == "pending"
        assert rows[announces[0].id][1:3] == ("sent", "attempted")
        assert rows[forums[1].id][1] == rows[announces[1].id][1] == rows[texts[1].id][1] == "sent"

        server.clear_injections()
        async with bot_process(config) as second:
            await second.wait_for_log("ready:")
            async with asyncio.timeout(30):
                while any(r[1] != "sent" or r[2] == "attempted" for r in delivery_rows(database)):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            polls = feeds.hits[f"/dyn/{FEED}"]
            # 30 s like the wait above: on a loaded 2-core CI machine the restarted bot's worker processes and the
            # dead process's feed claim (its lease) can hold the first polls back for several seconds
            await server.wait_for(lambda: feeds.hits[f"/dyn/{FEED}"] >= polls + 2, 30, what="two more polls")
            assert await second.stop() == 0
        # one post per forum, found again after the restart instead of posted twice
        assert [len(server.threads(c.id)) for c in forums] == [1, 1]
        forum_posts = [
            r
            for r in server.requests
            if r.method == "POST" and r.route == "POST /channels/{channel_id}/threads"
        ]
        assert len(forum_posts) == 2
        rows = {row[0]: row for row in delivery_rows(database)}
        for forum in forums:
            [post] = server.threads(forum.id)
            assert rows[forum.id][3] == rows[forum.id][4] == post.id
        # each announcement published once: the second ask after the restart is answered "already" and not counted
        assert server.stats.publishes == 2
        assert [rows[c.id][2] for c in announces] == ["done", "done"]
        for channel, answers in zip(announces, ([0, 400], [200]), strict=True):  # 0: never answered (killed)
            assert [
                r.status
                for r in server.requests
                if f"/channels/{channel.id}/" in r.path and "crosspost" in r.path
            ] == answers
        # each message once, each ping once
        assert [len(server.messages(c.id)) for c in [*announces, *texts]] == [1, 1, 1, 1]
        assert server.stats.nonce_replays == 1
        assert server.stats.role_pings == 6 and server.stats.everyone_pings == 0
