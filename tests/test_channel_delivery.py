"""Subscription options and their delivery bookkeeping on a real SQLite file (no Discord): channel kinds,
role pings and threads merged per channel, keyword filters in queueing and unsubscribe hand-over, publishing
and threads recorded once, the publish limit, and the 0600 migration on an existing database."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from bot.config import DeliveryConfig, SourceConfig
from bot.delivery_queue import (
    due_deliveries,
    publish_blocked_until,
    queue_deliveries,
    record_follow_up_failed,
    record_left_unpublished,
    record_publish_attempt,
    record_publish_limited,
    record_published,
    record_sent,
    record_thread_attempt,
    record_thread_opened,
)
from bot.models import (
    CHANNEL_ANNOUNCEMENT,
    CHANNEL_FORUM,
    CHANNEL_TEXT,
    FOLLOW_UP_ATTEMPTED,
    FOLLOW_UP_DONE,
    FOLLOW_UP_FAILED,
    FOLLOW_UP_PENDING,
    PUBLISH_LIMITED,
    ArtistRef,
    PostOptions,
    Story,
)
from bot.store import Store, load_migrations
from bot.store import database as database_module
from bot.subscriptions import add_subscription, remove_subscriptions
from bot.timeutil import utcnow

GUILD = 1001
NEWS, FORUM, ANNOUNCE = 11, 12, 13
ARMY, UAENA, ALERTS = 501, 502, 503  # role ids
GROUPS = {"bts": ["bts-v", "bts-jungkook"], "iu": [], "bts-v": []}


def expand(artist_id: str) -> list[str]:
    return GROUPS.get(artist_id, [])


def make_story(n: int, *, artists=(), title: str | None = None, summary: str = "A summary.") -> Story:
    url = f"https://www.koreaboo.com/news/story-{n}/"
    return Story(
        key=url,
        title=title or f"Story {n}",
        url=url,
        canonical_url=url,
        source="Koreaboo",
        summary=summary,
        published=utcnow() - timedelta(minutes=5),
        artists=[ArtistRef(a, a, None) for a in artists],
    )


async def add(store, source, *stories) -> list[int]:
    return [r.id for r in await store.stories.add_many(list(stories), source_id=source.id)]


async def queue(store, ids) -> int:
    return await queue_deliveries(store, ids, config=DeliveryConfig(max_age_hours=24.0), expand=expand)


async def subscribe(store, channel_id: int, *, artist_id: str | None = None, **options):
    return await add_subscription(
        store, guild_id=GUILD, channel_id=channel_id, artist_id=artist_id, options=PostOptions(**options)
    )


async def test_options_are_stored_and_subscribing_again_sets_them_anew(store):
    first = await subscribe(
        store,
        NEWS,
        artist_id="bts",
        ping_role_id=ARMY,
        keywords=("comeback",),
        exclude=("rumor",),
        threads=True,
    )
    sub = first.subscription
    assert (sub.kind, sub.ping_role_id, sub.keywords, sub.exclude, sub.threads) == (
        CHANNEL_TEXT,
        ARMY,
        ["comeback"],
        ["rumor"],
        True,
    )
    same = await subscribe(
        store,
        NEWS,
        artist_id="bts",
        ping_role_id=ARMY,
        keywords=("comeback",),
        exclude=("rumor",),
        threads=True,
    )
    assert not same.created and not same.changed
    other = await subscribe(store, NEWS, artist_id="bts", keywords=("tour", "comeback"))
    assert other.changed and other.subscription.id == sub.id
    assert (other.subscription.ping_role_id, other.subscription.keywords, other.subscription.threads) == (
        None,
        ["tour", "comeback"],
        False,
    )
    # the channel became an announcement channel: every subscription of it says so
    await subscribe(store, NEWS, artist_id="iu", kind=CHANNEL_ANNOUNCEMENT)
    assert {s.kind for s in await store.subscriptions.list(channel_id=NEWS)} == {CHANNEL_ANNOUNCEMENT}
    with pytest.raises(ValueError, match="unknown channel kind"):
        await subscribe(store, NEWS, kind="voice")


async def test_keywords_and_exclusions_decide_which_stories_are_queued(store, koreaboo):
    await subscribe(store, NEWS, keywords=("comeback", "world tour"), exclude=("rumor",))
    ids = await add(
        store,
        koreaboo,
        make_story(1, title="NewJeans confirm a COMEBACK in June"),
        make_story(2, title="SEVENTEEN news", summary="Dates of their World Tour are out."),
        make_story(3, title="Comeback rumor denied"),
        make_story(4, title="Comebacks of the month"),  # not the word "comeback"
        make_story(5, title="A tour of the world"),
    )
    assert await queue(store, ids) == 2
    assert [d.story_id for d in await store.deliveries.list()] == ids[:2]


async def test_one_post_per_channel_pings_every_matching_subscriptions_role(store, koreaboo):
    await subscribe(store, NEWS, artist_id="bts", ping_role_id=ARMY)
    await subscribe(store, NEWS, artist_id="iu", ping_role_id=UAENA, threads=True)
    await subscribe(store, NEWS, ping_role_id=ARMY)  # the same role twice: one mention
    both, only_iu, neither = await add(
        store,
        koreaboo,
        make_story(1, artists=["bts-v", "iu"]),
        make_story(2, artists=["iu"]),
        make_story(3, artists=["blackpink"]),
    )
    assert await queue(store, [both, only_iu, neither]) == 3
    by_story = {d.story_id: d for d in await store.deliveries.list()}
    assert by_story[both].ping_role_ids == [ARMY, UAENA] and by_story[both].thread_state == FOLLOW_UP_PENDING
    assert (
        by_story[only_iu].ping_role_ids == [UAENA, ARMY]
        and by_story[only_iu].thread_state == FOLLOW_UP_PENDING
    )
    assert by_story[neither].ping_role_ids == [ARMY] and by_story[neither].thread_state is None
    assert {d.kind for d in by_story.values()} == {CHANNEL_TEXT}
    assert {d.publish_state for d in by_story.values()} == {None}


async def test_forum_and_announcement_deliveries_know_their_kind(store, koreaboo):
    await subscribe(store, FORUM, kind=CHANNEL_FORUM, threads=True)  # a forum post is a thread already
    await subscribe(store, ANNOUNCE, kind=CHANNEL_ANNOUNCEMENT, ping_role_id=ALERTS)
    ids = await add(store, koreaboo, make_story(1))
    assert await queue(store, ids) == 2
    forum, announcement = sorted(await store.deliveries.list(), key=lambda d: d.channel_id)
    assert (forum.kind, forum.thread_state, forum.publish_state) == (CHANNEL_FORUM, None, None)
    assert (announcement.kind, announcement.publish_state) == (CHANNEL_ANNOUNCEMENT, FOLLOW_UP_PENDING)
    assert announcement.ping_role_ids == [ALERTS]


async def test_unsubscribing_hands_a_waiting_story_over_with_the_heirs_pings_and_filters(store, koreaboo):
    await subscribe(store, NEWS, artist_id="bts", ping_role_id=ARMY, threads=True)
    await subscribe(store, NEWS, artist_id="iu", ping_role_id=UAENA, keywords=("duet",))
    await subscribe(store, NEWS, ping_role_id=ALERTS, exclude=("duet",))
    duet, solo = await add(
        store,
        koreaboo,
        make_story(1, artists=["bts-v", "iu"], title="V and IU release a duet"),
        make_story(2, artists=["bts-v", "iu"], title="V and IU at the awards"),
    )
    assert await queue(store, [duet, solo]) == 2
    by_story = {d.story_id: d for d in await store.deliveries.list()}
    assert by_story[duet].ping_role_ids == [ARMY, UAENA]
    assert by_story[solo].ping_role_ids == [ARMY, ALERTS]
    await remove_subscriptions(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts", expand=expand)
    after = {d.story_id: d for d in await store.deliveries.list()}
    assert after[duet].status == "pending" and after[duet].ping_role_ids == [UAENA]
    assert after[duet].thread_state is None  # the one that asked for threads is gone
    assert after[solo].status == "pending" and after[solo].ping_role_ids == [ALERTS]
    await remove_subscriptions(store, guild_id=GUILD, channel_id=NEWS, artist_id="iu", expand=expand)
    after = {d.story_id: d for d in await store.deliveries.list()}
    # the duet is what the remaining subscription excludes: dropped, not handed over
    assert after[duet].status == "dropped" and after[solo].status == "pending"


async def test_publishing_is_recorded_once_and_the_limit_leaves_posts_unpublished(store, koreaboo):
    await subscribe(store, ANNOUNCE, kind=CHANNEL_ANNOUNCEMENT)
    ids = await add(store, koreaboo, make_story(1), make_story(2), make_story(3))
    await queue(store, ids)
    first, second, third = (await due_deliveries(store))[ANNOUNCE]
    await record_sent(store, first, 9001)
    assert await store.deliveries.follow_up_channels() == [ANNOUNCE]
    [todo] = await store.deliveries.follow_ups(ANNOUNCE)
    assert todo.id == first.id and todo.publish_state == FOLLOW_UP_PENDING and todo.message_id == 9001
    await record_publish_attempt(store, first)
    assert (await store.deliveries.get(first.id)).publish_state == FOLLOW_UP_ATTEMPTED
    assert [d.id for d in await store.deliveries.follow_ups(ANNOUNCE)] == [first.id]  # a crash: asked again
    assert await record_published(store, first) is True
    assert await record_published(store, first) is False  # a second answer is not a second publish
    assert await store.deliveries.follow_ups(ANNOUNCE) == []
    # the limit: the second post stays unpublished, the channel publishes nothing for the hour
    now = utcnow().replace(microsecond=0)  # as stored
    await record_sent(store, second, 9002, now=now)
    await record_publish_limited(store, second, retry_after=3500.0, now=now)
    resumes = await publish_blocked_until(store, ANNOUNCE, now=now)
    assert resumes is not None and timedelta(seconds=3499) < resumes - now <= timedelta(seconds=3500)
    await record_sent(store, third, 9003, now=now + timedelta(minutes=1))
    await record_left_unpublished(store, third)
    [sub] = await store.subscriptions.list(channel_id=ANNOUNCE)
    assert sub.publish_limited_at == now and sub.publish_resumes_at == resumes
    assert await store.deliveries.unpublished_since(ANNOUNCE, sub.publish_limited_at) == 2
    assert (await store.deliveries.get(third.id)).publish_state == PUBLISH_LIMITED
    assert await store.deliveries.follow_up_channels() == []  # never retried
    assert await publish_blocked_until(store, ANNOUNCE, now=now + timedelta(hours=1)) is None


async def test_threads_are_recorded_and_a_refusal_shows_on_the_subscription(store, koreaboo):
    await subscribe(store, NEWS, threads=True)
    ids = await add(store, koreaboo, make_story(1), make_story(2))
    await queue(store, ids)
    first, second = (await due_deliveries(store))[NEWS]
    await record_sent(store, first, 7001)
    await record_thread_attempt(store, first)
    await record_thread_opened(store, first, 7001)
    done = await store.deliveries.get(first.id)
    assert (done.thread_state, done.thread_id) == (FOLLOW_UP_DONE, 7001)
    await record_sent(store, second, 7002)
    await record_follow_up_failed(store, second, thread=True, error="a discussion thread could not be opened")
    assert (await store.deliveries.get(second.id)).thread_state == FOLLOW_UP_FAILED
    [sub] = await store.subscriptions.list(channel_id=NEWS)
    assert sub.last_error == "a discussion thread could not be opened"
    assert await store.deliveries.follow_up_channels() == []


async def test_a_forum_post_records_its_post(store, koreaboo):
    await subscribe(store, FORUM, kind=CHANNEL_FORUM)
    await queue(store, await add(store, koreaboo, make_story(1)))
    [[delivery]] = (await due_deliveries(store)).values()
    await record_sent(store, delivery, 4242, thread_id=4242)
    sent = await store.deliveries.get(delivery.id)
    assert (sent.status, sent.message_id, sent.thread_id) == ("sent", 4242, 4242)


async def test_the_migration_gives_existing_rows_the_plain_defaults(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    # a database migrated by a version without 0600 (later migrations may be there: each is applied once)
    older = [m for m in load_migrations() if m.version != 600]
    monkeypatch.setattr(database_module, "load_migrations", lambda *a, **k: older)
    old = await Store.open(path)
    [source] = await old.sources.sync_config([SourceConfig("Koreaboo", "https://www.koreaboo.com/feed/")])
    await old.stories.add_many([make_story(1)], source_id=source.id)
    await old.close()
    with sqlite3.connect(path) as db:  # a subscription and a delivery written by the previous version
        db.execute(
            "INSERT INTO subscriptions(guild_id, channel_id, created_at) VALUES (?, ?, ?)",
            (GUILD, NEWS, "2026-01-01T00:00:00+00:00"),
        )
        db.execute(
            "INSERT INTO deliveries(story_id, cluster_id, guild_id, channel_id, nonce, created_at)"
            " VALUES (1, 1, ?, ?, 'kn1', '2026-01-01T00:00:00+00:00')",
            (GUILD, NEWS),
        )
    monkeypatch.undo()
    store = await Store.open(path)
    try:
        [sub] = await store.subscriptions.list()
        assert (sub.kind, sub.ping_role_id, sub.keywords, sub.exclude, sub.threads) == (
            CHANNEL_TEXT,
            None,
            [],
            [],
            False,
        )
        [delivery] = await store.deliveries.list()
        assert (delivery.kind, delivery.ping_role_ids, delivery.thread_state, delivery.publish_state) == (
            CHANNEL_TEXT,
            [],
            None,
            None,
        )
    finally:
        await store.close()


def test_the_migration_is_portable_sql() -> None:
    [migration] = [m for m in load_migrations() if m.name == "channel_kinds"]
    assert 600 <= migration.version < 700
    sql = migration.sql.upper()
    assert "WITHOUT ROWID" not in sql and "INSERT OR" not in sql and "AUTOINCREMENT" not in sql
    statements = [s.strip() for s in migration.sql.split(";") if s.strip()]
    code = [
        " ".join(line for line in s.splitlines() if not line.strip().startswith("--")).strip()
        for s in statements
    ]
    assert all(c.startswith(("ALTER TABLE", "CREATE INDEX", "CREATE TABLE")) for c in code if c), code
