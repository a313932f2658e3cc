"""Trend score with a fixed clock, trending clusters from a real store, trending-only subscriptions, the CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.artists import ArtistIndex
from bot.clustering import assign_clusters
from bot.config import DeliveryConfig
from bot.delivery_queue import offer_trending
from bot.models import ArtistRef, Quote, Story
from bot.store import Store
from bot.subscriptions import add_subscription
from bot.trending import (
    TRENDING_POINTS,
    ago,
    outlet_key,
    outlet_name,
    render_text,
    trend_points,
    trend_score,
    trending_clusters,
    trending_offers,
)
from tests.support.cli import run_kpopnews

NOW = datetime(2024, 1, 30, 12, 0, tzinfo=UTC)
V = ArtistRef("bts-v", "V", "BTS")
IU = ArtistRef("iu", "IU", None)
BTS = ArtistRef("bts", "BTS", None)
SVT = ArtistRef("seventeen", "SEVENTEEN", None)

V_IU = [  # (outlet, host, headline, summary, hours before NOW)
    (
        "Koreaboo",
        "www.koreaboo.com",
        "BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU — Making One Scene Even More Romantic",
        "BTS’s V is going viral for a behind-the-scenes clip with IU that makes one scene even more romantic."
        " Recently, IU and V wowed fans with the video for “Love Wins All.”",
        5.0,
    ),
    (
        "Soompi",
        "www.soompi.com",
        "Watch: BTS’s V Sings Along For Real On The Set Of IU’s “Love Wins All” MV",
        "BTS’s official YouTube channel released a behind-the-scenes video from the filming of IU’s “Love Wins"
        " All” music video, in which V starred as the male lead and sang along.",
        3.0,
    ),
    (
        "SCMP K-pop: BTS",
        "www.scmp.com",
        "How IU and BTS’ V turned Love Wins All into a dystopian love story – and why fans can’t stop watching",
        "The behind-the-scenes footage of IU’s new single, starring V of BTS, shows the singer serenading her"
        " during the wedding scene.",
        1.0,
    ),
]


def make_story(
    key: str,
    outlet: str,
    host: str,
    title: str,
    summary: str,
    hours_ago: float,
    artists: list[ArtistRef],
    *,
    now: datetime = NOW,
    quotes: list[Quote] | None = None,
) -> Story:
    url = f"https://{host}/news/{key}"
    return Story(
        key=key,
        title=title,
        url=url,
        canonical_url=url,
        source=outlet,
        published=now - timedelta(hours=hours_ago),
        summary=summary,
        artists=list(artists),
        quotes=list(quotes or []),
    )


def v_iu_stories(now: datetime = NOW, outlets: int = 3) -> list[Story]:
    return [
        make_story(f"v-iu-{i}", o, h, t, s, ago_, [BTS, V, IU], now=now)
        for i, (o, h, t, s, ago_) in enumerate(V_IU[:outlets])
    ]


def seventeen_story(now: datetime = NOW, hours_ago: float = 0.5) -> Story:
    return make_story(
        "svt-unesco",
        "Soompi",
        "www.soompi.com",
        "SEVENTEEN Appointed As UNESCO’s First Goodwill Ambassadors For Youth",
        "SEVENTEEN has been named UNESCO’s first-ever Goodwill Ambassador for Youth and will speak at the"
        " UNESCO Youth Forum in Paris.",
        hours_ago,
        [SVT],
        now=now,
    )


async def store_and_cluster(store: Store, stories: list[Story], source_id: int | None = None) -> list[Story]:
    await store.stories.add_many(stories, source_id=source_id)
    await assign_clusters(store, stories)
    return stories


@pytest.fixture
async def store(tmp_path):
    db = await Store.open(tmp_path / "k.db", artists=ArtistIndex.load())
    yield db
    await db.close()


# --- the score ---------------------------------------------------------------------------------------------


def test_score_with_a_fixed_clock():
    # 3 outlets, no fan posts, 2 hours old: 100 × 3 / (2 + 6) ** 1.2
    assert trend_score(3, 0, timedelta(hours=2)) == pytest.approx(300 / 8**1.2)
    assert trend_score(2, 1, timedelta(hours=4)) == pytest.approx(100 * 2.5 / 10**1.2)


def test_more_outlets_rank_higher_and_age_decays():
    age = timedelta(hours=3)
    assert trend_score(3, 0, age) > trend_score(2, 0, age) > trend_score(1, 0, age)
    assert (
        trend_score(2, 0, timedelta(hours=1))
        > trend_score(2, 0, timedelta(hours=5))
        > trend_score(2, 0, timedelta(hours=24))
    )
    # news moves in hours: spread beats a fresh single story for hours, not for a day
    assert trend_score(2, 0, timedelta(hours=4)) > trend_score(1, 0, timedelta(0))
    assert trend_score(3, 0, timedelta(hours=8)) > trend_score(1, 0, timedelta(0))
    assert trend_score(3, 0, timedelta(hours=24)) < trend_score(1, 0, timedelta(hours=2))
    # a date in the future is not a bonus
    assert trend_score(1, 0, timedelta(hours=-5)) == trend_score(1, 0, timedelta(0))


def test_fan_posts_count_but_are_capped():
    age = timedelta(hours=1)
    assert trend_score(1, 2, age) > trend_score(1, 0, age)
    assert trend_score(1, 6, age) == trend_score(1, 60, age)
    assert trend_score(1, 60, age) < trend_score(5, 0, age)  # one viral thread does not beat wide coverage
    assert trend_points(3, 0) == TRENDING_POINTS


def test_outlets_are_sites_not_feeds():
    assert outlet_name("SCMP K-pop: BTS") == "SCMP" and outlet_name("NME K-pop") == "NME"
    assert outlet_name("Koreaboo") == "Koreaboo"
    assert outlet_key("https://www.scmp.com/a", "SCMP K-pop: BTS") == outlet_key(
        "https://scmp.com/b", "SCMP K-pop: NCT"
    )
    assert outlet_key("not a url", "NME K-pop") == "nme"


def test_ago():
    assert ago(NOW - timedelta(seconds=20), NOW) == "just now"
    assert ago(NOW - timedelta(minutes=12), NOW) == "12 min ago"
    assert ago(NOW - timedelta(hours=2, minutes=40), NOW) == "2 h ago"
    assert ago(NOW - timedelta(days=3), NOW) == "3 d ago"


# --- clusters from the store -------------------------------------------------------------------------------


async def test_three_outlets_outrank_a_newer_single_story(store):
    await store_and_cluster(store, v_iu_stories())
    await store_and_cluster(store, [seventeen_story()])
    ranked = await trending_clusters(store, hours=24, now=NOW)
    assert [c.rank for c in ranked] == [1, 2]
    top, second = ranked
    assert top.outlets == ["Koreaboo", "Soompi", "SCMP"]  # in the order they ran it, feed names read as sites
    assert top.url == "https://www.koreaboo.com/news/v-iu-0" and top.title.startswith(
        "BTS’s V Is Going Viral"
    )
    assert top.first_seen == NOW - timedelta(hours=5)
    assert top.score == pytest.approx(trend_score(3, 0, timedelta(hours=5)))
    assert [a.id for a in top.artists] == ["bts", "bts-v", "iu"]
    assert second.outlets == ["Soompi"] and second.score < top.score
    data = top.to_json()
    assert set(data) == {"rank", "score", "title", "url", "artists", "outlets", "first_seen", "stories"}
    assert data["first_seen"] == "2024-01-30T07:00:00+00:00"
    assert data["artists"][1] == {"id": "bts-v", "name": "V", "group": "BTS"}
    assert [s["source"] for s in data["stories"]] == ["Koreaboo", "Soompi", "SCMP K-pop: BTS"]
    assert set(data["stories"][0]) == {"title", "url", "source", "published"}
    # the same clock, the same answer
    again = await trending_clusters(store, hours=24, now=NOW)
    assert [c.to_json() for c in again] == [c.to_json() for c in ranked]


async def test_time_passing_lets_a_fresh_story_overtake(store):
    await store_and_cluster(store, v_iu_stories())
    later = NOW + timedelta(hours=20)
    await store_and_cluster(store, [seventeen_story(now=later, hours_ago=0.5)])
    ranked = await trending_clusters(store, hours=48, now=later)
    assert ranked[0].outlets == ["Soompi"] and len(ranked[1].outlets) == 3


async def test_hours_limit_and_future_dates(store):
    await store_and_cluster(store, v_iu_stories())
    await store_and_cluster(store, [seventeen_story(hours_ago=30)])
    assert len(await trending_clusters(store, hours=24, now=NOW)) == 1
    assert len(await trending_clusters(store, hours=48, now=NOW)) == 2
    assert len(await trending_clusters(store, hours=48, limit=1, now=NOW)) == 1
    assert await trending_clusters(store, hours=2, now=NOW - timedelta(hours=10)) == []
    # a feed that dates its story tomorrow: it counts from when we first saw it, not from tomorrow
    future = make_story("f", "NME K-pop", "www.nme.com", "TWICE announce tour", "Dates.", -24, [], now=NOW)
    future.first_seen = NOW - timedelta(hours=1)
    await store_and_cluster(store, [future])
    ranked = await trending_clusters(store, hours=24, now=NOW)
    assert any(c.title == "TWICE announce tour" and c.first_seen == NOW - timedelta(hours=1) for c in ranked)


async def test_any_number_of_hours_looks_that_far_back(store):
    await store_and_cluster(store, v_iu_stories(now=NOW - timedelta(days=800)))
    await store_and_cluster(store, [seventeen_story(hours_ago=1)])
    assert len(await trending_clusters(store, hours=24, now=NOW)) == 1
    wide = await trending_clusters(store, hours=24 * 1000, now=NOW)  # old stories a feed still carries
    assert len(wide) == 2 and len(wide[1].outlets) == 3 and wide[1].score > 0
    assert len(await trending_clusters(store, hours=1e30, now=NOW)) == 2  # "everything", never an error


async def test_the_ranking_reads_the_read_connection_not_a_writers_transaction(store):
    """/trending neither waits for an ingest's transaction nor sees its uncommitted stories and clusters."""
    await store_and_cluster(store, v_iu_stories(outlets=2))
    written, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with store.transaction():
            await store_and_cluster(store, v_iu_stories()[2:])
            written.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(written.wait(), 5)
    try:
        (during,) = await asyncio.wait_for(trending_clusters(store, now=NOW), 5)
    finally:
        release.set()
        await task
    assert during.outlets == ["Koreaboo", "Soompi"]
    (after,) = await trending_clusters(store, now=NOW)
    assert after.outlets == ["Koreaboo", "Soompi", "SCMP"]


async def test_fan_posts_are_counted_once_per_post(store):
    quote = Quote(
        "so taehyung was really singing", "daph", "babiejieun", "twitter", "https://x.com/a/status/1"
    )
    other = Quote("crying", "b", "b", "bluesky", "https://bsky.app/profile/b/post/2")
    stories = v_iu_stories(outlets=2)
    stories[0].quotes = [quote]
    stories[1].quotes = [quote, other]  # the same tweet embedded by two outlets is one fan post
    await store_and_cluster(store, stories)
    (cluster,) = await trending_clusters(store, now=NOW)
    assert cluster.fan_posts == 2 and cluster.points == trend_points(2, 2)


async def test_unclustered_stories_are_their_own_clusters(store):
    await store.stories.add_many(v_iu_stories(), source_id=None)  # stored, not clustered
    ranked = await trending_clusters(store, now=NOW)
    assert len(ranked) == 3 and all(len(c.outlets) == 1 for c in ranked)


async def test_text_output_reads_like_a_list(store):
    await store_and_cluster(store, v_iu_stories())
    await store_and_cluster(store, [seventeen_story()])
    text = render_text(await trending_clusters(store, now=NOW), hours=24, now=NOW)
    lines = text.splitlines()
    assert lines[0] == "Trending in the last 24 h:"
    assert lines[1].startswith("1. BTS’s V Is Going Viral") and lines[1].endswith("— 3 outlets · 5 h ago")
    assert "V (BTS), IU" in lines[2] and "Koreaboo, Soompi, SCMP" in lines[2]
    assert (
        lines[4] == "   + Soompi: Watch: BTS’s V Sings Along For Real On The Set Of IU’s “Love Wins All” MV"
    )
    assert lines[5].startswith("   + SCMP: How IU and BTS’ V turned Love Wins All")
    assert lines[6].endswith("— 1 outlet · 30 min ago")
    assert "Nothing trending" in render_text([], hours=6, now=NOW)


# --- trending-only subscriptions ---------------------------------------------------------------------------


async def offer(store: Store, delivery: DeliveryConfig, now: datetime) -> int:
    """What the pipeline does after clustering: find the trending offers, queue them for trending-only channels."""
    async with store.transaction():
        offers = await trending_offers(store, max_age_hours=delivery.max_age_hours, now=now)
        return await offer_trending(store, offers, config=delivery, expand=store.artists.expand, now=now)


async def test_trending_only_subscription_gets_a_cluster_once_when_it_crosses(store):
    delivery = DeliveryConfig(max_age_hours=24)
    source = await store.sources.add("https://www.soompi.com/feed", "Soompi", owner_guild_id=None)
    await add_subscription(store, guild_id=1, channel_id=10, only_trending=True)
    await add_subscription(store, guild_id=1, channel_id=20, artist_id="iu", only_trending=True)
    await add_subscription(
        store, guild_id=1, channel_id=30, only_trending=False
    )  # not this function's business
    first_two, third, fourth = v_iu_stories(outlets=2), v_iu_stories(outlets=3)[2:], []
    await store_and_cluster(store, first_two, source_id=source.id)
    assert await trending_offers(store, max_age_hours=24, now=NOW) == []  # two outlets: not yet
    assert await offer(store, delivery, NOW) == 0
    await store_and_cluster(store, third, source_id=source.id)
    [crossing] = await trending_offers(store, max_age_hours=24, now=NOW)
    everything = [s.id for s in first_two + third]
    assert crossing.cluster_id == first_two[0].id and crossing.story_ids == everything
    assert crossing.last_story_id == third[0].id and crossing.points >= TRENDING_POINTS
    assert await offer(store, delivery, NOW) == 2  # three outlets: both channels, once
    deliveries = await store.deliveries.list()
    assert sorted(d.channel_id for d in deliveries) == [10, 20]
    assert {d.story_id for d in deliveries} == {first_two[0].id}  # the first outlet's story is the post
    assert await trending_offers(store, max_age_hours=24, now=NOW) == []  # once
    assert await offer(store, delivery, NOW) == 0
    # a fourth outlet joins the trending cluster: no second post, it is named under the first
    fourth = [
        make_story(
            "v-iu-nme",
            "NME K-pop",
            "www.nme.com",
            "BTS’ V sang live to IU on the set of ‘Love Wins All’",
            V_IU[1][3],
            0.5,
            [BTS, V, IU],
        )
    ]
    await store_and_cluster(store, fourth, source_id=source.id)
    assert fourth[0].cluster_id == first_two[0].id
    [fresh] = await trending_offers(store, max_age_hours=24, now=NOW)
    assert fresh.story_ids == [fourth[0].id]  # only what is new since the crossing
    assert await offer(store, delivery, NOW) == 0
    # the post names the other outlets of its cluster, NME included once it joined
    [post] = [d for d in await store.deliveries.list() if d.channel_id == 10]
    assert post.also_on == ["Soompi", "SCMP K-pop: BTS", "NME K-pop"]
    every_cluster = everything + [fourth[0].id]  # a cluster's id is its first story's
    assert await store.deliveries.trending_crossings(every_cluster) == {first_two[0].id: fourth[0].id}


async def test_old_clusters_never_trend(store):
    await add_subscription(store, guild_id=1, channel_id=10, only_trending=True)
    stories = await store_and_cluster(store, v_iu_stories())
    later = NOW + timedelta(hours=30)
    assert await trending_offers(store, max_age_hours=24, now=later) == []
    assert await offer(store, DeliveryConfig(max_age_hours=24), later) == 0
    assert await store.deliveries.trending_crossings([s.id for s in stories]) == {}


# --- the command line --------------------------------------------------------------------------------------


async def test_cli_trending_json_and_text(tmp_path):
    (tmp_path / "config.toml").write_text('sources = []\n[storage]\ndatabase = "k.db"\n', encoding="utf-8")
    now = datetime.now(UTC)
    db = await Store.open(tmp_path / "k.db")
    try:
        await store_and_cluster(db, v_iu_stories(now=now))
        await store_and_cluster(db, [seventeen_story(now=now, hours_ago=0.25)])
        old = make_story("old", "NME K-pop", "www.nme.com", "TWICE tour", "Dates.", 40, [], now=now)
        await store_and_cluster(db, [old])
    finally:
        await db.close()

    done = run_kpopnews("trending", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    clusters = [json.loads(line) for line in done.stdout.splitlines()]
    assert [c["rank"] for c in clusters] == [1, 2]
    assert [len(c["outlets"]) for c in clusters] == [3, 1]
    for cluster in clusters:
        assert set(cluster) == {
            "rank",
            "score",
            "title",
            "url",
            "artists",
            "outlets",
            "first_seen",
            "stories",
        }
        assert datetime.fromisoformat(cluster["first_seen"]).utcoffset() == timedelta(0)
    assert clusters[0]["score"] >= clusters[1]["score"]
    assert clusters[0]["outlets"] == ["Koreaboo", "Soompi", "SCMP"]
    assert {"id": "iu", "name": "IU", "group": None} in clusters[0]["artists"]

    wide = run_kpopnews("trending", "--json", "--hours", "72", "--limit", "5", cwd=tmp_path)
    assert [c["title"] for c in map(json.loads, wide.stdout.splitlines())][-1] == "TWICE tour"

    text = run_kpopnews("trending", cwd=tmp_path)
    assert text.returncode == 0
    assert "1. BTS’s V Is Going Viral" in text.stdout and "— 3 outlets · 5 h ago" in text.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.toml").write_text('sources = []\n[storage]\ndatabase = "e.db"\n', encoding="utf-8")
    nothing = run_kpopnews("trending", "--json", cwd=empty)
    assert nothing.returncode == 0 and nothing.stdout == ""
