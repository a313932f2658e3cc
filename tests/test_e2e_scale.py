"""Several processes, one bot, end to end: three real `kpopnews run` processes with two shards each (six in all)
on one PostgreSQL database, against FakeDiscord and a loopback feed server.

Every server's commands are answered (FakeDiscord sends a server's interactions only to the session of its
shard, so the process running that shard answers); the slash commands are synced once; each feed is fetched
once per interval in all; a story reaches the channels of every shard once. Then one process is killed (kill -9)
in the middle of a fan-out, and another in the middle of a polling pass: nothing is lost, nothing is posted
twice, and the feeds the dead process held are polled again by the others within two intervals."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.config import SourceConfig
from bot.timeutil import utcnow
from tests.support.bot_harness import BotProcess, bot_process, kill_9_tree, write_config
from tests.support.discord_server import FakeDiscord, FakeGuild
from tests.support.feed_server import FeedServer, wordpress_feed
from tests.support.world import FEED, v_iu_feed

pytestmark = pytest.mark.timeout(400)

SHARDS = 6
PROCESS_SHARDS = ([0, 1], [2, 3], [4, 5])
INTERVAL = 5.0  # seconds: short, so takeovers and intervals fit in a test
FEEDS = 8  # the other feeds polled, besides the one that carries the story


def process_config(
    path: Path, server: FakeDiscord, feeds: FeedServer, database_url: str, shard_ids: list[int]
) -> Path:
    """One process's configuration: the same token, feeds and database for all; its own shards."""
    sources = [SourceConfig("Koreaboo", feeds.url(f"/dyn/{FEED}"))]
    sources += [SourceConfig(f"Site {n}", feeds.url(f"/dyn/site{n}")) for n in range(FEEDS)]
    write_config(
        path,
        server,
        path.parent / "unused.db",
        sources=sources,
        interval_seconds=INTERVAL,
        fetch_article_pages=False,
    )
    text = path.read_text()
    text = text.replace("[storage]\n", f'[storage]\nurl = "{database_url}"\n').replace(
        "[discord]\n", f"[discord]\nshard_count = {SHARDS}\nshard_ids = {shard_ids}\n"
    )
    path.write_text(text)
    return path


def pid_of(owner: str) -> int:
    """A claim's owner is `host:pid:random`."""
    return int(owner.split(":")[-2])


async def rows(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


@contextlib.asynccontextmanager
async def three_processes(
    tmp_path: Path, server: FakeDiscord, feeds: FeedServer, database_url: str
) -> AsyncIterator[list[BotProcess]]:
    async with contextlib.AsyncExitStack() as stack:
        processes = []
        for n, shard_ids in enumerate(PROCESS_SHARDS):
            folder = tmp_path / f"p{n}"
            folder.mkdir()
            config = process_config(folder / "config.toml", server, feeds, database_url, shard_ids)
            processes.append(await stack.enter_async_context(bot_process(config)))
        for process in processes:
            await process.wait_for_log("ready:", timeout=90)
        yield processes


async def test_three_processes_with_two_shards_each_are_one_bot(tmp_path: Path, postgres_url: str) -> None:
    # three IDENTIFY buckets: shards 0 and 3 share one, so do 1 and 4, 2 and 5 (processes take turns)
    async with FeedServer() as feeds, FakeDiscord(max_concurrency=3) as server:
        feeds.set_feed(FEED, wordpress_feed(3, prefix="old", site="https://www.koreaboo.com"))
        for n in range(FEEDS):
            feeds.set_feed(f"site{n}", wordpress_feed(2, prefix=f"site{n}"))
        guilds: list[FakeGuild] = [
            server.add_guild(f"Fans on shard {shard}", shard=(shard, SHARDS), channels=["news", "fans"])
            for shard in range(SHARDS)
        ]
        async with three_processes(tmp_path, server, feeds, postgres_url) as processes:
            # six shards, each identified once, by three processes; the commands synced by one of them
            assert sorted(p["shard"] for p in server.identify_payloads) == [
                [s, SHARDS] for s in range(SHARDS)
            ]
            assert server.stats.command_syncs == 1
            # processes starting together took turns: never two IDENTIFYs of one bucket within 5 s
            assert server.stats.identify_too_soon == 0, server.identify_times
            paths = [f"/dyn/{FEED}"] + [f"/dyn/site{n}" for n in range(FEEDS)]
            await server.wait_for(
                lambda: all(feeds.hits[p] >= 1 for p in paths), 30, what="every feed polled"
            )

            # every server's commands are answered, each by the process running its shard
            for guild in guilds:
                for channel in guild.text_channels:
                    interaction = await server.invoke(
                        "subscribe", {"channel": channel.id}, guild_id=guild.id, channel_id=channel.id
                    )
                    assert "Done" in (await interaction.reply(timeout=15))["content"]
            channels = [c for g in guilds for c in g.text_channels]

            # a story, fanned out to the channels of every shard; half of them answer slowly, and the process
            # sending to them is killed while it waits: the messages were made, their answers never arrived
            slow = channels[::2]
            for channel in slow:
                server.inject(
                    "POST", rf"/channels/{channel.id}/messages", status=None, delay=60.0, after=True
                )
            feeds.set_feed(FEED, v_iu_feed(published=utcnow() - timedelta(minutes=2)))
            await server.wait_for(
                lambda: all(len(server.messages(c.id)) == 1 for c in channels), 30, what="every post made"
            )
            await asyncio.sleep(1.0)  # the fast channels' answers are recorded; the slow ones are in flight
            holders = {
                pid_of(r["claimed_by"])
                for r in await rows(
                    postgres_url,
                    "SELECT claimed_by FROM deliveries WHERE status = 'pending' AND claimed_by IS NOT NULL",
                )
            }
            assert holders, "no process holds a pending delivery"
            victim = next(p for p in processes if p.process.pid in holders)
            server.clear_injections()
            kill_9_tree(victim.process)
            assert await victim.wait() == -9
            alive = [p for p in processes if p is not victim]
            # its claims run out and another process sends them again, nonce and all: no second message
            await server.wait_for(
                lambda: server.stats.nonce_replays >= 1, 60, what="a resend answered with the message made"
            )
            async with asyncio.timeout(90):
                while await rows(postgres_url, "SELECT id FROM deliveries WHERE status <> 'sent'"):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            assert [len(server.messages(c.id)) for c in channels] == [1] * len(channels)
            recorded = {
                r["message_id"] for r in await rows(postgres_url, "SELECT message_id FROM deliveries")
            }
            assert recorded == {int(server.messages(c.id)[0]["id"]) for c in channels}

            # a polling pass cut short: feeds answer slowly, a process is killed while it holds some of them
            feeds.latency = 2.0
            async with asyncio.timeout(30):
                while True:
                    held = await rows(
                        postgres_url, "SELECT url, claimed_by FROM sources WHERE claimed_by IS NOT NULL"
                    )
                    mine = {
                        p.process.pid: [r["url"] for r in held if pid_of(r["claimed_by"]) == p.process.pid]
                        for p in alive
                    }
                    victim = next((p for p in alive if mine[p.process.pid]), None)
                    if victim is not None:
                        break
                    await asyncio.sleep(0.1)
            lost = [url.split("/dyn", 1)[1] for url in mine[victim.process.pid]]
            killed_at = time.time()
            kill_9_tree(victim.process)
            survivor = next(p for p in alive if p is not victim)
            await server.wait_for(
                lambda: all(any(t > killed_at for t in feeds.hit_times["/dyn" + path]) for path in lost),
                4 * INTERVAL,
                what="the dead process's feeds polled again",
            )
            retaken = [
                min(t for t in feeds.hit_times["/dyn" + path] if t > killed_at) - killed_at for path in lost
            ]
            assert max(retaken) <= 2 * INTERVAL, retaken
            feeds.latency = 0.0
            await asyncio.sleep(2 * INTERVAL)
            assert await survivor.stop() == 0

        # each feed fetched once per interval in all: never twice within half an interval, by any process
        for path in paths:
            assert min(gaps(feeds.hit_times[path]), default=INTERVAL) >= 0.5 * INTERVAL, (
                path,
                feeds.hit_times[path],
            )
        assert server.stats.ratelimited == 0
        assert [len(server.messages(c.id)) for c in channels] == [1] * len(channels)


async def dm_sender_pid(url: str) -> int | None:
    """The process holding the followers' DM lock (a session advisory lock), by its connection's name."""
    found = await rows(
        url,
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'kpopnews %'",
    )
    return int(found[0]["application_name"].split()[1]) if found else None


async def test_followers_dms_from_two_processes_are_sent_once_even_when_the_sender_is_killed(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two processes, one shard each: members of servers on both shards /follow V (each answered by its
    shard's process); one process sends every follower's DMs (it holds the store's lock). It is killed while
    Discord has made the DMs but not answered: the other takes over and resends them with the same nonces, so
    each follower has the story once."""
    async with FeedServer() as feeds, FakeDiscord() as server:
        feeds.set_feed(FEED, wordpress_feed(3, prefix="old", site="https://www.koreaboo.com"))
        guilds = [server.add_guild(f"Fans {s}", shard=(s, 2), channels=["general"]) for s in range(2)]
        members = [server.member(g.id, f"army{g.id % 1000}-{n}") for g in guilds for n in range(4)]
        async with contextlib.AsyncExitStack() as stack:
            processes = []
            for shard in range(2):
                folder = tmp_path / f"p{shard}"
                folder.mkdir()
                config = process_config(folder / "config.toml", server, feeds, postgres_url, [shard])
                text = config.read_text().replace(f"shard_count = {SHARDS}", "shard_count = 2")
                config.write_text(text)
                processes.append(await stack.enter_async_context(bot_process(config)))
            for process in processes:
                await process.wait_for_log("ready:", timeout=90)
            await server.wait_for(lambda: feeds.hits[f"/dyn/{FEED}"] >= 1, 30, what="the feed polled")
            for member in members:
                guild = next(g for g in guilds if member.id in g.members)
                interaction = await server.invoke(
                    "follow",
                    {"artist": "bts-v"},
                    guild_id=guild.id,
                    channel_id=guild.text_channels[0].id,
                    user_id=member.id,
                )
                assert "V (BTS)" in (await interaction.reply(timeout=15))["content"]
            assert server.stats.identify_too_soon == 0, server.identify_times  # one bucket: taken in turns
            sender = await dm_sender_pid(postgres_url)
            assert sender in {p.process.pid for p in processes}

            # Discord makes each DM but its answer never comes: the sender is killed while it waits
            server.inject("POST", r"/channels/\d+/messages", status=None, delay=60.0, after=True)
            feeds.set_feed(FEED, v_iu_feed(published=utcnow() - timedelta(minutes=2)))
            await server.wait_for(
                lambda: all(len(server.direct_messages(m.id)) == 1 for m in members), 30, what="every DM made"
            )
            victim = next(p for p in processes if p.process.pid == sender)
            server.clear_injections()
            kill_9_tree(victim.process)
            assert await victim.wait() == -9
            survivor = next(p for p in processes if p is not victim)
            async with asyncio.timeout(60):
                while await dm_sender_pid(postgres_url) != survivor.process.pid:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                while await rows(postgres_url, "SELECT id FROM dm_deliveries WHERE status = 'pending'"):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            assert server.stats.nonce_replays >= 1
            assert [len(server.direct_messages(m.id)) for m in members] == [1] * len(members)
            assert await survivor.stop() == 0
        assert server.stats.ratelimited == 0
