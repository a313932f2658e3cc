"""after_store: new stories are clustered, then queued for the channels that want them (the bot's path)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bot.artists import ArtistIndex
from bot.config import DeliveryConfig, SourceConfig
from bot.delivery_queue import record_sent
from bot.models import ArtistRef, Story
from bot.pipeline import after_store
from bot.store import Store
from bot.subscriptions import add_subscription
from bot.timeutil import utcnow

PAIRS = json.loads((Path(__file__).parent / "fixtures" / "story_pairs.json").read_text(encoding="utf-8"))
CONFIG = DeliveryConfig()
GUILD, NEWS, FANS = 1, 11, 12


def event_stories(event: str) -> list[Story]:
    """The fixture's stories of one real-world event, as stored stories published in the last hour."""
    found = [s for s in PAIRS["stories"] if s["event"] == event]
    now = utcnow()
    return [
        Story(
            key=s["key"],
            title=s["title"],
            url=s["url"],
            canonical_url=s["url"],
            source=s["source"],
            summary=s["summary"],
            published=now - timedelta(minutes=60 - i),
            artists=[ArtistRef(a["id"], a["name"], a["group"]) for a in s["artists"]],
        )
        for i, s in enumerate(found)
    ]


@pytest.fixture
async def store(tmp_path):
    db = await Store.open(tmp_path / "k.db")
    await db.sources.sync_config(
        [SourceConfig("Koreaboo", "https://k/feed"), SourceConfig("Soompi", "https://s/feed")]
    )
    yield db
    await db.close()


async def test_one_event_from_two_outlets_is_one_post_and_an_also_on(store):
    first, second, *_ = event_stories("v-iu-lwa-bts")
    assert first.source != second.source
    [koreaboo, soompi] = await store.sources.list()
    await add_subscription(
        store, guild_id=GUILD, channel_id=NEWS, artist_id="bts"
    )  # a group: its members too
    await add_subscription(store, guild_id=GUILD, channel_id=FANS, artist_id="iu")
    woken: list[int] = []
    expand = ArtistIndex.load().expand

    await store.stories.add_many([first], source_id=koreaboo.id)
    queued = await after_store(store, [first], config=CONFIG, wake=lambda: woken.append(1), expand=expand)
    assert queued == 2 and woken
    deliveries = await store.deliveries.list()
    assert {d.channel_id for d in deliveries} == {NEWS, FANS}
    for delivery in deliveries:
        await record_sent(store, delivery, 1000 + delivery.channel_id)

    await store.stories.add_many([second], source_id=soompi.id)
    assert (
        await after_store(store, [second], config=CONFIG, expand=expand) == 0
    )  # the same event: no new post
    assert second.cluster_id == first.id
    edits = await store.deliveries.pending_edits(limit=100)
    assert {(e.channel_id, tuple(e.also_on)) for e in edits} == {
        (NEWS, (second.source,)),
        (FANS, (second.source,)),
    }


async def test_poll_once_stores_and_clusters_but_queues_nothing(store):
    first, second, *_ = event_stories("v-iu-lwa-bts")
    [koreaboo, soompi] = await store.sources.list()
    await add_subscription(store, guild_id=GUILD, channel_id=NEWS)
    await store.stories.add_many([first], source_id=koreaboo.id)
    await store.stories.add_many([second], source_id=soompi.id)
    assert await after_store(store, [first, second], config=CONFIG, deliver=False) == 0
    assert second.cluster_id == first.id
    assert await store.deliveries.list() == []


async def test_a_trending_only_channel_gets_the_cluster_when_a_third_outlet_makes_it_trend(store):
    stories = event_stories("v-iu-lwa-bts")[:3]  # Koreaboo, Soompi, allkpop: three outlets
    [koreaboo, soompi] = await store.sources.list()
    await add_subscription(store, guild_id=GUILD, channel_id=FANS, only_trending=True)
    expand = ArtistIndex.load().expand
    for story, source in zip(stories[:2], (koreaboo, soompi), strict=True):
        await store.stories.add_many([story], source_id=source.id)
        assert await after_store(store, [story], config=CONFIG, expand=expand) == 0  # not trending yet
    await store.stories.add_many([stories[2]], source_id=soompi.id)
    assert await after_store(store, [stories[2]], config=CONFIG, expand=expand) == 1
    [delivery] = await store.deliveries.list()
    assert (
        delivery.channel_id == FANS and delivery.story_id == stories[0].id
    )  # the first outlet's story leads
    later = event_stories("v-iu-lwa-bts")[3:]  # SCMP joins: named under the post, not posted again
    await store.stories.add_many(later, source_id=soompi.id)
    assert await after_store(store, later, config=CONFIG, expand=expand) == 0
    assert len(await store.deliveries.list()) == 1
