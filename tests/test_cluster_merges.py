"""Clusters that merge: when a new story links two clusters they become one, and what is kept by cluster id
follows: a channel keeps ONE post for the merged cluster (named "Also on" for the other outlets), the trending
crossing is one. A real SQLite store; the deliveries are queued by the real queue_deliveries."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot import delivery_queue
from bot.clustering import assign_clusters, cluster_unclustered
from bot.config import DeliveryConfig
from bot.delivery_queue import queue_deliveries, record_sent
from bot.models import Delivery, Story
from bot.store import Store
from bot.store.clusters import ALSO_ON_EDITS, ALSO_ON_LIMIT
from bot.subscriptions import add_subscription
from bot.timeutil import utcnow
from tests.support import sql
from tests.support.feed_server import rss
from tests.support.world import embed_of, rfc822, world
from tests.test_clustering import load_fixture

DELIVERY = DeliveryConfig(max_age_hours=24)


async def store_story(store: Store, story: Story, *, cluster: bool = True) -> Story:
    copy = replace(story, artists=list(story.artists), id=None, cluster_id=None)
    (result,) = await store.stories.add_many([copy], source_id=None)
    assert result.is_new
    if cluster:
        await assign_clusters(store, [copy])
    return copy


async def queue(store: Store, story: Story) -> int:
    assert story.id is not None and story.published is not None
    now = story.published + timedelta(hours=1)
    return await queue_deliveries(store, [story.id], config=DELIVERY, now=now, expand=lambda artist: [])


def retold(story: Story, key: str, *, hours: float) -> Story:
    """The same story under another link, `hours` later."""
    assert story.published is not None
    url = f"https://retold.example/{key}"
    return replace(
        story, key=key, url=url, canonical_url=url, published=story.published + timedelta(hours=hours)
    )


def the_post(deliveries: list[Delivery], channel_id: int) -> Delivery:
    """A channel's one live post (sent or pending): there must be exactly one."""
    live = [d for d in deliveries if d.channel_id == channel_id and d.status in ("sent", "pending")]
    assert len(live) == 1, live
    return live[0]


async def test_a_story_linking_two_clusters_merges_them_and_each_channel_keeps_one_post(store):
    stories, _, _ = load_fixture()
    for channel_id in (10, 20, 30):
        await add_subscription(store, guild_id=1, channel_id=channel_id)
    # Soompi's and Koreaboo's stories of Jin's discharge do not match each other: two clusters, two posts each
    soompi = await store_story(store, stories["jin-discharge-soompi"])
    assert await queue(store, soompi) == 3
    koreaboo = await store_story(store, stories["jin-discharge-koreaboo"])
    assert koreaboo.cluster_id == koreaboo.id != soompi.cluster_id
    assert await queue(store, koreaboo) == 3
    by = {(d.channel_id, d.story_id): d for d in await store.deliveries.list()}
    await record_sent(store, by[10, soompi.id], 111)  # channel 10 has Soompi's post already
    await record_sent(store, by[30, koreaboo.id], 333)  # channel 30 has Koreaboo's; 20 has nothing sent yet

    # SCMP's story is the same story as both: the clusters become one, named by the smaller id
    scmp = await store_story(store, stories["jin-discharge-scmp"])
    assert scmp.cluster_id == soompi.id
    clusters = await store.clusters.clusters_of([soompi.id, koreaboo.id, scmp.id])
    assert set(clusters.values()) == {soompi.id}
    assert (await store.stories.get(koreaboo.id)).cluster_id == soompi.id

    deliveries = await store.deliveries.list()
    sent = the_post(deliveries, 10)  # the sent post stays, Koreaboo's waiting one is dropped…
    assert (sent.story_id, sent.status, sent.cluster_id) == (soompi.id, "sent", soompi.id)
    assert sent.also_on == ["Koreaboo"] and sent.edit_pending  # …and named under it: the message is edited
    waiting = the_post(deliveries, 20)  # nothing sent: the older pending post stays, named "Also on"
    assert (waiting.story_id, waiting.status, waiting.also_on) == (soompi.id, "pending", ["Koreaboo"])
    other = the_post(deliveries, 30)  # Koreaboo's sent post stays, and now holds the merged cluster
    assert (other.story_id, other.message_id, other.cluster_id) == (koreaboo.id, 333, soompi.id)
    assert other.also_on == ["Soompi"] and other.edit_pending
    dropped = [d for d in deliveries if d.status == "dropped"]
    assert sorted((d.channel_id, d.story_id) for d in dropped) == [
        (10, koreaboo.id),
        (20, koreaboo.id),
        (30, soompi.id),
    ]
    assert all("merged into cluster" in (d.last_error or "") for d in dropped)

    # the linking story and any later one: no second post anywhere, only "Also on"
    assert await queue(store, scmp) == 0
    nme = await store_story(store, stories["jin-discharge-nme"])
    assert nme.cluster_id == soompi.id
    assert await queue(store, nme) == 0
    deliveries = await store.deliveries.list()
    assert the_post(deliveries, 10).also_on == ["Koreaboo", "SCMP", "NME K-pop"]
    assert the_post(deliveries, 30).also_on == ["Soompi", "SCMP", "NME K-pop"]
    assert len({d.cluster_id for d in deliveries if d.status != "dropped"}) == 1


async def test_a_story_delivered_before_it_was_clustered_follows_its_cluster(store):
    stories, _, _ = load_fixture()
    first = await store_story(
        store, stories["jin-discharge-scmp"]
    )  # stored before the subscription: not posted
    await add_subscription(store, guild_id=1, channel_id=10)
    late = await store_story(store, stories["jin-discharge-nme"], cluster=False)  # clustering failed for it
    assert await queue(store, late) == 1
    assert (await store.deliveries.list())[0].cluster_id == late.id  # held under its own id meanwhile
    assert await cluster_unclustered(store) == 1
    post = the_post(await store.deliveries.list(), 10)
    assert (post.story_id, post.cluster_id) == (late.id, first.id)
    again = await store_story(store, stories["jin-discharge-koreaboo"])
    assert again.cluster_id == first.id and await queue(store, again) == 0
    assert the_post(await store.deliveries.list(), 10).also_on == ["Koreaboo"]


async def test_trending_crossings_merge_into_one(store):
    stories, _, _ = load_fixture()
    soompi = await store_story(store, stories["jin-discharge-soompi"])
    koreaboo = await store_story(store, stories["jin-discharge-koreaboo"])
    # what notify_trending records when a cluster crosses (no store method writes it yet)
    await sql.write(
        store,
        "INSERT INTO trending_crossings(cluster_id, crossed_at, points, last_story_id) VALUES (?,?,?,?)",
        (koreaboo.id, "2024-06-12T04:00:00+00:00", 3.0, koreaboo.id),
    )
    scmp = await store_story(store, stories["jin-discharge-scmp"])
    assert scmp.cluster_id == soompi.id
    rows = await sql.records(store, "SELECT * FROM trending_crossings")
    # one crossing, for the merged cluster; Soompi's story, never offered to trending channels, will be
    assert rows == [
        {
            "cluster_id": soompi.id,
            "crossed_at": "2024-06-12T04:00:00+00:00",
            "points": 3.0,
            "last_story_id": soompi.id - 1,
        }
    ]


async def test_a_merge_never_stretches_a_cluster_beyond_the_window(store):
    stories, _, _ = load_fixture()
    base = stories["svt-unesco-soompi"]
    early = await store_story(store, base)
    late = await store_story(store, retold(base, "late", hours=47))
    assert late.cluster_id == early.id
    # the same story again 47 hours after the second: linked to it, but the whole would span 94 hours
    later = await store_story(store, retold(base, "later", hours=94))
    assert later.cluster_id == later.id
    spans = await store.clusters.spans_of([early.id, later.id])
    assert [(s.cluster_id, s.last_at - s.first_at) for s in spans] == [(early.id, 47 * 3600), (later.id, 0)]


async def test_the_cluster_time_is_its_earliest_story(store):
    stories, _, _ = load_fixture()
    later = await store_story(store, stories["svt-unesco-soompi"])
    earlier = await store_story(store, retold(stories["svt-unesco-soompi"], "earlier", hours=-5))
    assert earlier.cluster_id == later.id  # named by the smaller id, timed by the earlier story
    members = await store.clusters.members([later.id, earlier.id])
    at = {m.story_id: m.at for m in members}
    assert at[earlier.id] < at[later.id]
    assert {m.cluster_at for m in members} == {at[earlier.id]}


def feed_item(story: Story, hours_ago: float) -> dict[str, str]:
    return {
        "title": story.title,
        "link": story.url,
        "guid": story.url,
        "pubDate": rfc822(utcnow() - timedelta(hours=hours_ago)),
        "description": story.summary,
        "categories": "BTS,Jin",
    }


async def test_over_the_wire_the_channel_gets_one_post_and_an_also_on_edit(tmp_path):
    """The real bot against FakeDiscord: Soompi's story is posted; Koreaboo's (not the same story as Soompi's by
    itself) and SCMP's (the same as both) come in one poll of another feed: no second post, an "Also on"."""
    stories, _, _ = load_fixture()
    async with world(tmp_path) as w:
        news = w.channel("news")
        await w.subscribe(news)
        w.publish(rss([feed_item(stories["jin-discharge-soompi"], 3)], title="Soompi"))
        [posted] = await w.server.wait_for_messages(news.id, 1, timeout=15)
        both = [feed_item(stories["jin-discharge-koreaboo"], 2), feed_item(stories["jin-discharge-scmp"], 1)]
        w.feeds.set_feed("more", rss(both, title="More K-pop"))
        source = await w.store.sources.add(w.feeds.url("/dyn/more"), "More K-pop", owner_guild_id=None)
        source.last_success_at = utcnow()  # a source's first poll is backfill: make this one a later poll
        await w.store.sources.save_state(source)
        w.bot.poller.wake()
        await w.server.wait_for(
            lambda: "Also on" in (embed_of(w.server.message(int(posted["id"]))).get("description") or ""),
            20,
            what="the Also on edit",
        )
        await w.settle()
        assert len(w.server.messages(news.id)) == 1
        assert "More K-pop" in embed_of(w.server.messages(news.id)[0])["description"]
        deliveries = await w.store.deliveries.list()
        assert [(d.channel_id, d.status) for d in deliveries if d.channel_id == news.id] == [
            (news.id, "sent")
        ]
        links = [
            stories[key].url
            for key in ("jin-discharge-soompi", "jin-discharge-koreaboo", "jin-discharge-scmp")
        ]
        ids = await w.store.stories.known_keys([], links)
        clusters = await w.store.clusters.clusters_of(list(ids.values()))
        assert len(clusters) == 3 and len(set(clusters.values())) == 1


def test_the_store_keeps_the_also_on_limits_of_the_deliveries():
    assert ALSO_ON_LIMIT == delivery_queue.MAX_ALSO_ON
    assert ALSO_ON_EDITS == delivery_queue.MAX_ALSO_ON_EDITS
