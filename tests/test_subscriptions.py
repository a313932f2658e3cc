"""Subscriptions, the delivery queue and feed onboarding, on a real SQLite file (no Discord)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.config import DeliveryConfig, PollingConfig, SourceConfig
from bot.delivery_queue import (
    MAX_ALSO_ON_EDITS,
    MAX_FORBIDDEN_FAILURES,
    MAX_SEND_ATTEMPTS,
    delivery_nonce,
    due_deliveries,
    queue_deliveries,
    record_edited,
    record_failed,
    record_forbidden,
    record_sent,
    record_transient_failure,
)
from bot.models import STATUS_OK, STATUS_PAUSED, STATUS_UNHEALTHY, ArtistRef, Story
from bot.subscriptions import (
    SubscriptionError,
    add_subscription,
    remove_channel,
    remove_guild,
    remove_subscriptions,
)
from bot.timeutil import utcnow

GUILD, OTHER_GUILD = 1001, 2002
NEWS, FANS, MISC = 11, 12, 13
CONFIG = DeliveryConfig(max_age_hours=24.0)

# The artist groups the tests need, as the artist index expands them (a group includes its members).
GROUPS = {"bts": ["bts-v", "bts-jungkook", "bts-rm"], "iu": [], "bts-v": []}


def expand(artist_id: str) -> list[str]:
    return GROUPS.get(artist_id, [])


def make_story(n: int, *, artists=(), source="Koreaboo", published=None, cluster=None) -> Story:
    url = f"https://www.koreaboo.com/news/story-{n}/"
    return Story(
        key=url,
        title=f"Story {n}",
        url=url,
        canonical_url=url,
        source=source,
        summary="A summary.",
        published=published if published is not None else utcnow() - timedelta(minutes=5),
        artists=[ArtistRef(a, a, None) for a in artists],
        cluster_id=cluster,
    )


@pytest.fixture
async def sources(store):
    return await store.sources.sync_config(
        [
            SourceConfig("Koreaboo", "https://www.koreaboo.com/feed/"),
            SourceConfig("Soompi", "https://soompi/feed"),
        ]
    )


async def add(store, source, *stories, backfill=False) -> list[int]:
    results = await store.stories.add_many(list(stories), source_id=source.id, backfill=backfill)
    return [r.id for r in results]


async def queue(store, ids, **kw) -> int:
    return await queue_deliveries(store, ids, config=CONFIG, expand=expand, **kw)


async def unsubscribe(store, **kw):
    return await remove_subscriptions(store, guild_id=GUILD, expand=expand, **kw)


async def cluster(store, cluster_id: int, *story_ids: int) -> None:
    """Put stories in one cluster, as clustering would (no table method sets it by hand: a test's shortcut)."""
    async with store.transaction():
        await store._db.execute_in(
            "UPDATE stories SET cluster_id = ? WHERE id IN ({marks})", story_ids, (cluster_id,)
        )


async def pause(store, channel_id: int) -> None:
    await store.subscriptions.record_refusal(
        channel_id,
        status=STATUS_PAUSED,
        failures=MAX_FORBIDDEN_FAILURES,
        error="refused",
        at=utcnow(),
        retry_at=None,
    )


async def test_stories_stored_before_a_subscription_are_never_posted_to_it(store, sources):
    koreaboo = sources[0]
    old = await add(store, koreaboo, make_story(1))
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    new = await add(store, koreaboo, make_story(2))
    assert await queue(store, old + new) == 1
    [delivery] = await store.deliveries.list()
    assert delivery.story_id == new[0] and delivery.channel_id == NEWS and delivery.status == "pending"
    # queueing again (a second poll, a restart) adds nothing
    assert await queue(store, old + new) == 0


async def test_two_matching_subscriptions_in_one_channel_give_one_delivery(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts-v")
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    await add_subscription(store, guild_id=GUILD, channel_id=FANS, artist_id="iu")
    ids = await add(store, sources[0], make_story(1, artists=["bts-v", "iu"]))
    assert await queue(store, ids) == 2
    assert sorted(d.channel_id for d in await store.deliveries.list()) == [NEWS, FANS]


async def test_a_group_subscription_gets_its_members_stories_and_no_one_elses(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")
    about_v, about_iu, about_bts = await add(
        store,
        sources[0],
        make_story(1, artists=["bts-v"]),
        make_story(2, artists=["iu"]),
        make_story(3, artists=["bts"]),
    )
    assert await queue(store, [about_v, about_iu, about_bts]) == 2
    assert [d.story_id for d in await store.deliveries.list()] == [about_v, about_bts]


async def test_a_source_subscription_gets_stories_that_source_carried(store, sources):
    koreaboo, soompi = sources
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, source_id=soompi.id)
    [only_koreaboo] = await add(store, koreaboo, make_story(1))
    [both] = await add(store, koreaboo, make_story(2))
    await add(store, soompi, make_story(2))  # the same story, carried by Soompi too: one row, two sources
    assert await queue(store, [only_koreaboo, both]) == 1
    assert [d.story_id for d in await store.deliveries.list()] == [both]


async def test_a_switched_off_source_cannot_be_subscribed_to(store, sources):
    koreaboo = sources[0]
    koreaboo.disabled_reason = "410 Gone: the feed was removed"
    await store.sources.save_state(koreaboo)
    with pytest.raises(SubscriptionError, match="Koreaboo is switched off: 410 Gone"):
        await add_subscription(store, guild_id=GUILD, channel_id=NEWS, source_id=koreaboo.id)
    with pytest.raises(SubscriptionError, match="not there"):
        await add_subscription(store, guild_id=GUILD, channel_id=NEWS, source_id=9999)
    assert await store.subscriptions.list(guild_id=GUILD) == []


async def test_backfill_old_and_undated_stories(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    now = utcnow()
    [backfill] = await add(store, sources[0], make_story(1), backfill=True)
    [stale] = await add(store, sources[0], make_story(2, published=now - timedelta(hours=25)))
    [fresh] = await add(store, sources[0], make_story(3, published=now - timedelta(hours=23)))
    undated_story = make_story(4)
    undated_story.published = None  # no date in the feed: its first sighting counts
    [undated] = await add(store, sources[0], undated_story)
    assert await queue(store, [backfill, stale, fresh, undated], now=now) == 2
    assert [d.story_id for d in await store.deliveries.list()] == [fresh, undated]
    # a day later the undated one would be too old
    [late] = await add(store, sources[0], make_story(5, published=now))
    assert await queue(store, [late], now=now + timedelta(hours=25)) == 0


async def test_paused_and_trending_only_subscriptions(store, sources):
    plain = (await add_subscription(store, guild_id=GUILD, channel_id=NEWS)).subscription
    trending = (
        await add_subscription(store, guild_id=GUILD, channel_id=FANS, only_trending=True)
    ).subscription
    [story] = await add(store, sources[0], make_story(1))
    assert await queue(store, [story]) == 1  # the plain one only
    assert await queue(store, [story], trending=True) == 1  # the trending one, when the cluster trends
    assert {d.subscription_id for d in await store.deliveries.list()} == {plain.id, trending.id}
    await pause(store, NEWS)
    await pause(store, FANS)
    [later] = await add(store, sources[0], make_story(2))
    assert await queue(store, [later]) == 0


async def test_a_cluster_is_posted_once_per_channel_and_other_outlets_are_noted(store, sources):
    koreaboo, soompi = sources
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    [first] = await add(store, koreaboo, make_story(1))
    assert await queue(store, [first]) == 1
    [delivery] = await store.deliveries.list()
    assert delivery.cluster_id == first
    # the same event from Soompi, clustered with the first story while the post is still pending
    second_story = make_story(2, source="Soompi")
    [second] = await add(store, soompi, second_story)
    await cluster(store, first, first, second)
    assert await queue(store, [second]) == 0
    delivery = await store.deliveries.get(delivery.id)
    assert delivery.also_on == ["Soompi"] and not delivery.edit_pending
    # once sent, a third outlet asks for an edit of the message
    await record_sent(store, delivery, 555)
    [third] = await add(store, soompi, make_story(3, source="SCMP"))
    await cluster(store, first, third)
    assert await queue(store, [third]) == 0
    [edit] = await store.deliveries.pending_edits(limit=100)
    assert edit.id == delivery.id and edit.also_on == ["Soompi", "SCMP"] and edit.message_id == 555
    await record_edited(store, edit)
    assert await store.deliveries.pending_edits(limit=100) == []
    # the same outlet again changes nothing
    [fourth] = await add(store, soompi, make_story(4, source="SCMP"))
    await cluster(store, first, fourth)
    await queue(store, [fourth])
    assert await store.deliveries.pending_edits(limit=100) == []


async def test_also_on_edits_are_capped(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    [first] = await add(store, sources[0], make_story(1))
    await queue(store, [first])
    [delivery] = await store.deliveries.list()
    await record_sent(store, delivery, 1)
    for n in range(2, 2 + MAX_ALSO_ON_EDITS + 1):
        [other] = await add(store, sources[1], make_story(n, source=f"Outlet {n}"))
        await cluster(store, first, other)
        await queue(store, [other])
        for edit in await store.deliveries.pending_edits(limit=100):
            await record_edited(store, edit)
    assert (await store.deliveries.get(delivery.id)).edits == MAX_ALSO_ON_EDITS


def test_nonce_is_deterministic_short_and_distinct():
    a = delivery_nonce(NEWS, "https://x/1")
    assert a == delivery_nonce(NEWS, "https://x/1")
    assert len(a) <= 25
    assert a != delivery_nonce(FANS, "https://x/1") != delivery_nonce(NEWS, "https://x/2")


async def test_subscribing_twice_and_unsubscribing(store, sources):
    first = await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")
    again = await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")
    assert first.created and not again.created and not again.changed
    assert again.subscription.id == first.subscription.id
    changed = await add_subscription(
        store, guild_id=GUILD, channel_id=NEWS, artist_id="bts", only_trending=True
    )
    assert changed.changed and changed.subscription.only_trending
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, source_id=sources[1].id)
    await add_subscription(store, guild_id=GUILD, channel_id=FANS)
    listed = await store.subscriptions.list(guild_id=GUILD)
    assert [(s.channel_id, s.artist_id, s.source_name) for s in listed] == [
        (NEWS, "bts", None),
        (NEWS, None, "Soompi"),
        (FANS, None, None),
    ]
    removed = await unsubscribe(store, channel_id=NEWS, artist_id="bts")
    assert [s.artist_id for s in removed] == ["bts"]
    assert await unsubscribe(store, channel_id=NEWS, artist_id="iu") == []
    assert len(await unsubscribe(store, channel_id=NEWS)) == 1  # all the rest
    assert [s.channel_id for s in await store.subscriptions.list(guild_id=GUILD)] == [FANS]
    # another server cannot take over or remove this one
    assert await remove_subscriptions(store, guild_id=OTHER_GUILD, channel_id=FANS) == []


async def test_due_deliveries_are_oldest_first_and_a_waiting_channel_keeps_its_order(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    await add_subscription(store, guild_id=GUILD, channel_id=FANS)
    ids = await add(store, sources[0], make_story(1), make_story(2))
    await queue(store, ids)
    due = await due_deliveries(store)
    assert {c: [d.story_id for d in ds] for c, ds in due.items()} == {NEWS: ids, FANS: ids}
    first_news = due[NEWS][0]
    await store.deliveries.mark_attempt(first_news.id, at=utcnow())
    first_news = await store.deliveries.get(first_news.id)
    assert first_news.attempts == 1 and first_news.attempt_started_at is not None
    assert await record_transient_failure(store, first_news, "502 Bad Gateway", retry_after=60)
    due = await due_deliveries(store)
    assert list(due) == [FANS]  # NEWS waits: its second story does not overtake the first
    later = await due_deliveries(store, now=utcnow() + timedelta(seconds=61))
    assert [d.story_id for d in later[NEWS]] == ids


async def test_transient_failures_give_up_after_the_limit(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    ids = await add(store, sources[0], make_story(1))
    await queue(store, ids)
    [delivery] = await store.deliveries.list()
    for _ in range(MAX_SEND_ATTEMPTS):
        await store.deliveries.mark_attempt(delivery.id, at=utcnow())
        delivery = await store.deliveries.get(delivery.id)
        retried = await record_transient_failure(store, delivery, "503 Service Unavailable")
    assert not retried
    delivery = await store.deliveries.get(delivery.id)
    assert delivery.status == "failed" and "503" in delivery.last_error


async def test_forbidden_makes_unhealthy_then_paused_and_subscribe_resumes(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="iu")
    await add_subscription(store, guild_id=GUILD, channel_id=FANS)
    ids = await add(store, sources[0], make_story(1))
    await queue(store, ids)
    news = (await due_deliveries(store))[NEWS][0]
    sub = await record_forbidden(store, news, "403 Forbidden (error code: 50013): Missing Permissions")
    assert sub.status == STATUS_UNHEALTHY and sub.retry_at > utcnow()
    assert "Missing Permissions" in sub.last_error and "Send Messages" in sub.last_error
    assert list(await due_deliveries(store)) == [FANS]  # the other channel keeps receiving
    # a new story for the refused channel waits for its retry time too
    [later] = await add(store, sources[0], make_story(2))
    await queue(store, [later])
    assert list(await due_deliveries(store)) == [FANS]
    for _ in range(MAX_FORBIDDEN_FAILURES - 1):
        sub = await record_forbidden(store, news, "403 Forbidden (error code: 50013): Missing Permissions")
    assert sub.status == STATUS_PAUSED and "/subscribe" in sub.last_error
    assert all(s.status == STATUS_PAUSED for s in await store.subscriptions.list(channel_id=NEWS))
    assert {d.status for d in await store.deliveries.list() if d.channel_id == NEWS} == {"dropped"}
    [third] = await add(store, sources[0], make_story(3))
    assert await queue(store, [third]) == 1  # FANS only: paused subscriptions get nothing
    resumed = await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    assert resumed.changed and resumed.subscription.status == STATUS_OK
    [fourth] = await add(store, sources[0], make_story(4))
    assert await queue(store, [fourth]) == 2


async def test_a_successful_post_records_the_message_and_heals(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    ids = await add(store, sources[0], make_story(1), make_story(2))
    await queue(store, ids)
    first, second = (await due_deliveries(store))[NEWS]
    await record_forbidden(store, first, "403 Forbidden: Missing Permissions")
    await record_sent(store, first, 987654321)
    sent = await store.deliveries.get(first.id)
    assert sent.status == "sent" and sent.message_id == 987654321 and sent.sent_at is not None
    [sub] = await store.subscriptions.list(channel_id=NEWS)
    assert sub.status == STATUS_OK and sub.failures == 0 and sub.last_post_at is not None
    await record_failed(store, second, "400 Bad Request (error code: 50035): Invalid Form Body")
    assert (await store.deliveries.get(second.id)).status == "failed"
    [sub] = await store.subscriptions.list(channel_id=NEWS)
    assert "Invalid Form Body" in sub.last_error


async def test_channel_gone_and_guild_left(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    await add_subscription(store, guild_id=GUILD, channel_id=FANS)
    await add_subscription(store, guild_id=OTHER_GUILD, channel_id=MISC)
    owned = await store.sources.add("https://fan.example/feed", "Fan feed", owner_guild_id=GUILD)
    ids = await add(store, sources[0], make_story(1))
    await queue(store, ids)
    assert await remove_channel(store, NEWS, reason="404 Unknown Channel") == 1
    assert {(d.channel_id, d.status) for d in await store.deliveries.list()} == {
        (NEWS, "dropped"),
        (FANS, "pending"),
        (MISC, "pending"),
    }
    assert await remove_guild(store, GUILD) == 1
    assert [s.channel_id for s in await store.subscriptions.list()] == [MISC]
    assert (await store.sources.get(owned.id)).disabled_reason is not None
    assert (await store.sources.get(sources[0].id)).disabled_reason is None


# --- feeds added from Discord ------------------------------------------------------------------------------


@pytest.fixture
async def fetcher():
    from bot.fetch import Fetcher, make_session

    polling = PollingConfig(fetch_article_pages=False)
    async with make_session(polling) as session:
        yield Fetcher(session, polling)


def loopback_poller(store, fetcher, **kw):
    """The real poller. Sources are polled as the operator's: a server's feed on loopback would be refused
    (rightly), and these tests have no public internet to serve it from."""
    from dataclasses import replace

    from bot.config import Config
    from bot.poller import Poller

    poller = Poller(Config(polling=PollingConfig(fetch_article_pages=False)), store, fetcher, None, **kw)

    async def poll(source):
        report = await poller.poll_source(replace(source, owner_guild_id=None))
        assert not report.failed, report.error

    return poll


async def add_feed(store, fetcher, url, *, guild=GUILD, allow_private=True, config=CONFIG):
    from bot.onboarding import FeedOnboarding
    from bot.poller import shared_workers

    onboarding = FeedOnboarding(
        store,
        fetcher,
        shared_workers().parse,
        first_poll=loopback_poller(store, fetcher),
        max_guild_sources=config.max_guild_sources,
        max_feed_bytes=PollingConfig().max_feed_bytes,
        allow_private=allow_private,
    )
    return await onboarding.add_feed_source(url, guild_id=guild)


def fan_feed(*numbers: int) -> bytes:
    from tests.support.feed_server import rss

    now = utcnow().strftime("%a, %d %b %Y %H:%M:%S +0000")
    return rss(
        [
            {
                "title": f"Fan story {n}",
                "link": f"https://fans.example/{n}/",
                "guid": f"fan-{n}",
                "pubDate": now,
            }
            for n in numbers
        ],
        title="Fan Site",
    )


async def test_a_feed_url_becomes_the_servers_source_and_its_stories_are_not_posted(store, fetcher):
    from tests.support.feed_server import FeedServer

    async with FeedServer() as feeds:
        feeds.set_feed("fans", fan_feed(1, 2))
        source = await add_feed(store, fetcher, feeds.url("/dyn/fans"))
        assert source.owner_guild_id == GUILD and source.name == "Fan Site" and source.enabled
        stored = await store.stories.known_keys(["fan-1", "fan-2"], [])
        assert len(stored) == 2  # stored at once, as backfill
        await add_subscription(store, guild_id=GUILD, channel_id=NEWS, source_id=source.id)
        assert await queue(store, list(stored.values())) == 0
        # the same URL again is the same source, without fetching it again
        hits = feeds.hits["/dyn/fans"]
        assert (await add_feed(store, fetcher, feeds.url("/dyn/fans"))).id == source.id
        assert feeds.hits["/dyn/fans"] == hits
        # a story published later in that feed is posted
        feeds.set_feed("fans", fan_feed(1, 2, 3))
        new_ids: list[int] = []

        async def on_new(stories):
            new_ids.extend(s.id for s in stories)

        await loopback_poller(store, fetcher, on_new_stories=on_new)(await store.sources.get(source.id))
        assert len(new_ids) == 1 and await queue(store, new_ids) == 1


async def test_feed_urls_that_are_refused(store, fetcher):
    from tests.support.feed_server import FeedServer

    async with FeedServer() as feeds:
        feeds.set_feed("fans", fan_feed(1))
        with pytest.raises(SubscriptionError, match="loopback"):
            await add_feed(store, fetcher, feeds.url("/dyn/fans"), allow_private=False)
        with pytest.raises(SubscriptionError, match="loopback|private"):
            await add_feed(store, fetcher, "http://localhost:9/feed", allow_private=False)
        with pytest.raises(SubscriptionError, match="link-local"):
            await add_feed(store, fetcher, "http://169.254.169.254/latest/meta-data/", allow_private=False)
        with pytest.raises(SubscriptionError, match="not a feed URL"):
            await add_feed(store, fetcher, "file:///etc/passwd")
        with pytest.raises(SubscriptionError, match="feed I can read|could not be read"):
            await add_feed(store, fetcher, feeds.url("/html"))
        with pytest.raises(SubscriptionError, match="could not be read"):
            await add_feed(store, fetcher, feeds.url("/status/404"))
        assert [s for s in await store.sources.list() if s.owner_guild_id] == []  # nothing half-added


async def test_a_server_may_add_only_so_many_feeds(store, fetcher):
    from tests.support.feed_server import FeedServer

    small = DeliveryConfig(max_guild_sources=2)
    async with FeedServer() as feeds:
        for name in ("a", "b", "c", "d"):
            feeds.set_feed(name, fan_feed(ord(name)))
        one = await add_feed(store, fetcher, feeds.url("/dyn/a"), config=small)
        await add_feed(store, fetcher, feeds.url("/dyn/b"), config=small)
        with pytest.raises(SubscriptionError, match="already added 2 feeds"):
            await add_feed(store, fetcher, feeds.url("/dyn/c"), config=small)
        # another server has its own quota
        assert (await add_feed(store, fetcher, feeds.url("/dyn/c"), guild=OTHER_GUILD, config=small)).enabled
        # a feed no subscription uses any more frees its place
        await add_subscription(store, guild_id=GUILD, channel_id=NEWS, source_id=one.id)
        await unsubscribe(store, channel_id=NEWS)
        assert (await store.sources.get(one.id)).disabled_reason is not None
        fourth = await add_feed(store, fetcher, feeds.url("/dyn/d"), config=small)
        assert fourth.enabled and fourth.owner_guild_id == GUILD


# --- unsubscribing while a story waits ----------------------------------------------------------------------


async def test_unsubscribing_one_of_two_matching_subscriptions_keeps_the_waiting_story(store, sources):
    bts = (await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")).subscription
    every = (await add_subscription(store, guild_id=GUILD, channel_id=NEWS)).subscription  # matches too
    [story] = await add(store, sources[0], make_story(1, artists=["bts-v"]))
    assert await queue(store, [story]) == 1
    [waiting] = await store.deliveries.list()
    assert waiting.subscription_id == bts.id  # the oldest matching subscription speaks for the channel
    await unsubscribe(store, channel_id=NEWS, artist_id="bts")
    kept = await store.deliveries.get(waiting.id)
    assert kept.status == "pending" and kept.subscription_id == every.id
    assert list(await due_deliveries(store)) == [NEWS]
    # the last one that matches goes: now the story is dropped
    await unsubscribe(store, channel_id=NEWS)
    dropped = await store.deliveries.get(waiting.id)
    assert dropped.status == "dropped" and dropped.last_error == "unsubscribed"


async def test_unsubscribing_drops_a_waiting_story_no_remaining_subscription_matches(store, sources):
    koreaboo, soompi = sources
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="iu")  # another artist
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, source_id=soompi.id)  # another source
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, only_trending=True)  # not trending
    await add_subscription(store, guild_id=GUILD, channel_id=FANS)  # another channel
    [story] = await add(store, koreaboo, make_story(1, artists=["bts-v"]))
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts-v")  # after the story
    assert await queue(store, [story]) == 2
    await unsubscribe(store, channel_id=NEWS, artist_id="bts")
    assert {(d.channel_id, d.status) for d in await store.deliveries.list()} == {
        (NEWS, "dropped"),
        (FANS, "pending"),
    }


async def test_a_trending_only_subscription_keeps_a_waiting_story_of_a_trending_cluster(store, sources):
    from bot.delivery_queue import offer_trending
    from bot.models import TrendingOffer

    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")
    hot = (await add_subscription(store, guild_id=GUILD, channel_id=NEWS, only_trending=True)).subscription
    [story] = await add(store, sources[0], make_story(1, artists=["bts-v"]))
    assert await queue(store, [story]) == 1
    await unsubscribe(store, channel_id=NEWS, artist_id="bts")
    assert [d.status for d in await store.deliveries.list()] == ["dropped"]  # its cluster is not trending

    # the same again, with the cluster trending: the trending-only subscription takes the waiting story
    await add_subscription(store, guild_id=GUILD, channel_id=FANS, artist_id="bts")
    fans_hot = (
        await add_subscription(store, guild_id=GUILD, channel_id=FANS, only_trending=True)
    ).subscription
    [second] = await add(store, sources[0], make_story(2, artists=["bts-v"]))
    assert await queue(store, [second]) == 1
    offer = TrendingOffer(second, [second], second, 3.0)
    # it trends: NEWS's trending-only subscription gets it; FANS has it already
    assert await offer_trending(store, [offer], config=CONFIG, expand=expand) == 1
    await unsubscribe(store, channel_id=FANS, artist_id="bts")
    waiting = {
        d.channel_id: (d.status, d.subscription_id) for d in await store.deliveries.list(status="pending")
    }
    assert waiting == {FANS: ("pending", fans_hot.id), NEWS: ("pending", hot.id)}


# --- one transaction each: a failure half-way leaves nothing behind ------------------------------------------


class Boom(Exception):
    pass


def fail_on(monkeypatch, table, method: str, *, after: int = 0) -> None:
    """Make `table.method` raise on its call number `after` + 1 (the earlier calls go through)."""
    real = getattr(table, method)
    calls = {"n": 0}

    async def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise Boom(method)
        return await real(*args, **kwargs)

    monkeypatch.setattr(table, method, failing)


async def test_a_failed_unsubscribe_changes_nothing(store, sources, monkeypatch):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="bts")
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, artist_id="iu")
    owned = await store.sources.add("https://fan.example/feed", "Fan feed", owner_guild_id=GUILD)
    [story] = await add(store, sources[0], make_story(1, artists=["bts-v"]))
    await queue(store, [story])
    fail_on(monkeypatch, store.sources, "retire_unused")  # the last step
    with pytest.raises(Boom):
        await unsubscribe(store, channel_id=NEWS)
    assert len(await store.subscriptions.list(channel_id=NEWS)) == 2
    assert [d.status for d in await store.deliveries.list()] == ["pending"]
    assert (await store.sources.get(owned.id)).enabled


async def test_a_failed_queueing_queues_nothing(store, sources, monkeypatch):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    await add_subscription(store, guild_id=GUILD, channel_id=FANS)
    ids = await add(store, sources[0], make_story(1), make_story(2))
    fail_on(monkeypatch, store.deliveries, "set_also_on_many")  # after the deliveries were written
    with pytest.raises(Boom):
        await queue(store, ids)
    assert await store.deliveries.list() == []
    monkeypatch.undo()
    assert await queue(store, ids) == 4


async def test_a_failed_trending_offer_queues_nothing_and_records_nothing(store, sources, monkeypatch):
    from bot.delivery_queue import offer_trending
    from bot.models import TrendingOffer

    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, only_trending=True)
    [story] = await add(store, sources[0], make_story(1))
    offer = TrendingOffer(story, [story], story, 3.0)
    fail_on(monkeypatch, store.deliveries, "record_trending")
    with pytest.raises(Boom):
        await offer_trending(store, [offer], config=CONFIG, expand=expand)
    assert await store.deliveries.list() == [] and await store.deliveries.trending_crossings([story]) == {}
    monkeypatch.undo()
    assert await offer_trending(store, [offer], config=CONFIG, expand=expand) == 1
    assert await store.deliveries.trending_crossings([story]) == {story: story}


async def test_a_failed_refusal_record_leaves_the_channel_healthy(store, sources, monkeypatch):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    ids = await add(store, sources[0], make_story(1))
    await queue(store, ids)
    [delivery] = await store.deliveries.list()
    fail_on(monkeypatch, store.deliveries, "hold_channel")
    with pytest.raises(Boom):
        await record_forbidden(store, delivery, "403 Forbidden: Missing Permissions")
    [sub] = await store.subscriptions.list()
    assert sub.status == STATUS_OK and sub.failures == 0 and sub.last_error is None
    assert (await store.deliveries.get(delivery.id)).next_attempt_at is None


async def test_a_failed_send_record_leaves_the_delivery_pending(store, sources, monkeypatch):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    ids = await add(store, sources[0], make_story(1))
    await queue(store, ids)
    [delivery] = await store.deliveries.list()
    fail_on(monkeypatch, store.subscriptions, "record_post")
    with pytest.raises(Boom):
        await record_sent(store, delivery, 42)
    again = await store.deliveries.get(delivery.id)
    assert again.status == "pending" and again.message_id is None


async def test_subscribing_another_servers_channel_is_refused_and_changes_nothing(store, sources):
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS, only_trending=True)
    with pytest.raises(SubscriptionError, match="another server"):
        await add_subscription(store, guild_id=OTHER_GUILD, channel_id=NEWS)
    [sub] = await store.subscriptions.list()
    assert sub.guild_id == GUILD and sub.only_trending


# --- the tables ---------------------------------------------------------------------------------------------


async def test_the_delivery_table(store, sources):
    from bot.models import Delivery, HeldPost

    sub = (await add_subscription(store, guild_id=GUILD, channel_id=NEWS)).subscription
    [story] = await add(store, sources[0], make_story(1))
    now = utcnow()
    waiting = Delivery(
        story, story, GUILD, NEWS, sub.id, "kn-1", next_attempt_at=now + timedelta(hours=1), created_at=now
    )
    assert await store.deliveries.add(waiting)
    assert not await store.deliveries.add(waiting)  # the channel has this cluster: nothing written
    [stored] = await store.deliveries.list(status="pending")
    assert (stored.story_id, stored.nonce, stored.story_source) == (story, "kn-1", "Koreaboo")
    assert await store.deliveries.in_clusters([story]) == {  # FANS has none
        (NEWS, story): HeldPost(stored.id, NEWS, story, story, "Koreaboo", "pending", [], 0, False)
    }
    assert await store.deliveries.pending_of([sub.id]) == [stored]
    assert await store.deliveries.next_due_at() == stored.next_attempt_at
    await store.deliveries.release_channel(NEWS)
    assert await store.deliveries.next_due_at() is None
    await store.deliveries.set_also_on_many([(stored.id, ["Soompi"], True)])
    await store.deliveries.mark_sent(stored.id, 77, at=now)
    [edit] = await store.deliveries.pending_edits(limit=10)
    assert edit.also_on == ["Soompi"] and edit.message_id == 77 and edit.sent_at is not None
    await store.deliveries.mark_edited(edit.id)
    await store.deliveries.mark_edited(edit.id, edits=MAX_ALSO_ON_EDITS)
    done = await store.deliveries.get(edit.id)
    assert not done.edit_pending and done.edits == MAX_ALSO_ON_EDITS
    assert await store.deliveries.drop([done.id], reason="late") == 0  # sent: never dropped
    assert await store.deliveries.list(status="dropped") == []


async def test_the_subscription_table(store, sources):
    [before] = await add(store, sources[0], make_story(1))
    sub = await store.subscriptions.add(
        guild_id=GUILD,
        channel_id=NEWS,
        artist_id="bts",
        source_id=sources[1].id,
        only_trending=True,
        created_by=5,
        at=utcnow(),
    )
    assert sub.start_story_id == before and sub.source_name == "Soompi" and sub.status == STATUS_OK
    assert await store.subscriptions.find(channel_id=NEWS, artist_id="bts", source_id=sources[1].id) == sub
    assert await store.subscriptions.find(channel_id=NEWS, artist_id=None, source_id=None) is None
    assert await store.subscriptions.any_trending()
    assert await store.subscriptions.to_match(only_trending=True, below_story_id=before + 1) == [sub]
    assert await store.subscriptions.to_match(only_trending=True, below_story_id=before) == []
    assert await store.subscriptions.to_match(only_trending=False, below_story_id=before + 1) == []
    await pause(store, NEWS)
    assert not await store.subscriptions.any_trending()
    assert await store.subscriptions.channel_failures(NEWS) == MAX_FORBIDDEN_FAILURES
    resumed = await store.subscriptions.resume(sub.id, only_trending=False)
    assert resumed.status == STATUS_OK and resumed.failures == 0 and not resumed.only_trending
    assert await store.subscriptions.delete([sub.id]) == 1
    assert await store.subscriptions.get(sub.id) is None


async def test_a_post_another_process_queued_meanwhile_gets_this_outlets_name(postgres_url, monkeypatch):
    """Several processes on PostgreSQL: this one read the channel's posts of a cluster before another process
    wrote one; its own insert then finds the post taken, and names its outlet under that post instead."""
    from bot.store import Store

    store = await Store.open(postgres_url)
    try:
        koreaboo, soompi = await store.sources.sync_config(
            [
                SourceConfig("Koreaboo", "https://www.koreaboo.com/feed/"),
                SourceConfig("Soompi", "https://s/feed"),
            ]
        )
        await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
        [first] = await add(store, koreaboo, make_story(1))
        [second] = await add(store, soompi, make_story(2, source="Soompi"))
        await cluster(store, first, first, second)
        assert await queue(store, [first]) == 1  # the other process's post
        real = store.deliveries.in_clusters
        reads = []

        async def read_too_early(cluster_ids):
            reads.append(cluster_ids)
            return {} if len(reads) == 1 else await real(cluster_ids)

        monkeypatch.setattr(store.deliveries, "in_clusters", read_too_early)
        assert await queue(store, [second]) == 0
        [delivery] = await store.deliveries.list()
        assert (delivery.story_id, delivery.also_on) == (first, ["Soompi"])
    finally:
        await store.close()


# --- the subscriptions kept between feeds (SQLite) --------------------------------------------------------------


async def matched(store) -> list:
    """What queueing reads: the subscriptions to match, inside its transaction."""
    async with store.transaction():
        return await store.subscriptions.to_match(only_trending=False, below_story_id=10**9)


async def test_the_kept_subscriptions_follow_every_change_and_are_not_read_again_without_one(store, sources):
    first = (await add_subscription(store, guild_id=GUILD, channel_id=NEWS)).subscription
    kept = await matched(store)
    assert [s.id for s in kept] == [first.id]
    assert (await matched(store))[0] is kept[0]  # nothing changed: the list kept is given again
    # a post to a healthy channel changes nothing queueing reads
    await store.subscriptions.record_post(NEWS, at=utcnow())
    assert (await matched(store))[0] is kept[0]
    second = (await add_subscription(store, guild_id=GUILD, channel_id=FANS, artist_id="iu")).subscription
    assert [s.id for s in await matched(store)] == [first.id, second.id]
    retry_at = (utcnow() + timedelta(minutes=5)).replace(microsecond=0)
    await store.subscriptions.record_refusal(
        FANS, status=STATUS_UNHEALTHY, failures=1, error="502", at=utcnow(), retry_at=retry_at
    )
    assert [s.retry_at for s in await matched(store)] == [None, retry_at]
    await store.subscriptions.record_post(FANS, at=utcnow())  # healthy again: that is a change
    assert [(s.status, s.retry_at) for s in await matched(store)] == [(STATUS_OK, None)] * 2
    await pause(store, FANS)
    assert [s.id for s in await matched(store)] == [first.id]
    await store.subscriptions.resume(second.id, only_trending=False)
    assert [s.id for s in await matched(store)] == [first.id, second.id]
    await store.subscriptions.set_channel_kind(NEWS, "announcement")
    assert [s.kind for s in await matched(store)] == ["announcement", "text"]
    await store.subscriptions.delete_channel(NEWS)
    assert [s.id for s in await matched(store)] == [second.id]
    await store.subscriptions.delete_guild(GUILD)
    assert await matched(store) == []


async def test_the_kept_subscriptions_see_a_rollback_and_another_connections_commit(store, sources, tmp_path):
    from bot.store import Store

    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await add_subscription(store, guild_id=GUILD, channel_id=FANS)
            assert len(await store.subscriptions.to_match(only_trending=False, below_story_id=10**9)) == 2
            raise RuntimeError("the rest of the transaction failed")
    assert [s.channel_id for s in await matched(store)] == [NEWS]
    other = await Store.open(tmp_path / "k.db")  # another Store on the same file (a second connection)
    try:
        await add_subscription(other, guild_id=GUILD, channel_id=MISC)
    finally:
        await other.close()
    assert [s.channel_id for s in await matched(store)] == [NEWS, MISC]
    # and a story queued now goes to the channel the other connection subscribed
    [story] = await add(store, sources[0], make_story(1))
    assert await queue(store, [story]) == 2
