"""Personal follows (bot/follows.py) and their store tables, on a real SQLite file (no Discord)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import ConfigError, DeliveryConfig, parse_config
from bot.delivery_queue import MAX_SEND_ATTEMPTS
from bot.embed import DESCRIPTION_LIMIT, build_headlines_embed
from bot.follows import (
    MAX_FOLLOWS,
    TooManyFollows,
    day_end,
    dm_nonce,
    due_direct_messages,
    follow_artist,
    give_back_pause_notice,
    member_follows,
    queue_direct_messages,
    record_dm_sent,
    record_dm_transient_failure,
    record_dms_closed,
    story_dm_text,
    summary_dm,
    summary_nonce,
    take_pause_notice,
    unfollow_artist,
    utc_day,
)
from bot.models import DM_MESSAGE, DM_SUMMARY, DailySummary, DirectMessage, Story
from bot.store import load_migrations
from bot.text import discord_len
from tests.test_subscriptions import add, cluster, expand, make_story

ANNA, BORA, CHUL = 7001, 7002, 7003  # members
CONFIG = DeliveryConfig(max_age_hours=24.0, max_dms_per_day=3)
NOON = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def follow(store, user_id: int, *artists: str, locale: str | None = "en") -> None:
    for artist in artists:
        await follow_artist(store, user_id, artist, locale=locale, now=NOON - timedelta(hours=1))


async def queue(store, ids, *, now=NOON, config=CONFIG) -> int:
    return await queue_direct_messages(store, ids, config=config, expand=expand, now=now)


async def stories(store, koreaboo, *numbers: int, artists=("bts-v",), published=None) -> list[int]:
    moment = published or NOON - timedelta(minutes=30)
    return await add(store, koreaboo, *(make_story(n, artists=artists, published=moment) for n in numbers))


# --- who gets a DM --------------------------------------------------------------------------------------------


async def test_a_follower_gets_one_dm_for_a_new_story_about_their_artist(store, koreaboo):
    before = await stories(store, koreaboo, 1)
    await follow(store, ANNA, "bts-v")
    await follow(store, BORA, "iu")
    new = await stories(store, koreaboo, 2)
    assert await queue(store, before + new) == 1
    [dm] = await store.direct_messages.list()
    assert (dm.user_id, dm.story_id, dm.artist_id, dm.kind, dm.status) == (
        ANNA,
        new[0],
        "bts-v",
        DM_MESSAGE,
        "pending",
    )
    assert dm.day == "2026-12-06" and dm.nonce == dm_nonce(ANNA, "https://www.koreaboo.com/news/story-2/")
    assert 0 < len(dm.nonce) <= 25
    assert await queue(store, before + new) == 0  # a second poll, a restart: nothing more


async def test_two_follows_matching_one_story_give_one_dm_naming_the_artist_the_story_is_about(
    store, koreaboo
):
    await follow(store, ANNA, "bts", "bts-v")  # the group first: still V names the DM
    await follow(store, BORA, "bts")
    ids = await stories(store, koreaboo, 1, artists=("bts-v", "iu"))
    assert await queue(store, ids) == 2
    by_member = {dm.user_id: dm for dm in await store.direct_messages.list()}
    assert by_member[ANNA].artist_id == "bts-v" and by_member[BORA].artist_id == "bts"


async def test_backfill_old_and_same_cluster_stories_are_not_dmed(store, koreaboo):
    await follow(store, ANNA, "bts-v")
    backfill = await add(store, koreaboo, make_story(1, artists=["bts-v"]), backfill=True)
    old = await stories(store, koreaboo, 2, published=NOON - timedelta(hours=25))
    assert await queue(store, backfill + old) == 0
    [first] = await stories(store, koreaboo, 3)
    assert await queue(store, [first]) == 1
    [second] = await stories(store, koreaboo, 4)
    await cluster(store, first, first, second)  # the same event from another outlet
    assert await queue(store, [second]) == 0
    assert len(await store.direct_messages.list()) == 1


async def test_past_the_daily_cap_stories_go_into_one_summary_due_when_the_day_ends(store, koreaboo):
    await follow(store, ANNA, "bts-v")
    ids = await stories(store, koreaboo, *range(1, 6))
    assert await queue(store, ids) == 5
    queued = await store.direct_messages.list(user_id=ANNA)
    assert [dm.kind for dm in queued] == [DM_MESSAGE] * 3 + [DM_SUMMARY] * 2
    [summary] = await store.direct_messages.summaries()
    assert summary.day == "2026-12-06" and summary.next_attempt_at == datetime(2026, 12, 7, tzinfo=UTC)
    assert summary.nonce == summary_nonce(ANNA, "2026-12-06")
    # during the day: the three DMs are due, the summary is not
    due = await due_direct_messages(store, now=NOON)
    assert [item.id for item in due[ANNA]] == [dm.id for dm in queued[:3]]
    # one more story the same day joins the same summary
    [late] = await stories(store, koreaboo, 6)
    assert await queue(store, [late], now=NOON + timedelta(hours=11)) == 1
    assert len(await store.direct_messages.summaries()) == 1
    # the next day: the summary is due, and a new story is a DM of its own again
    tomorrow = NOON + timedelta(hours=12, minutes=1)
    [next_day] = await stories(store, koreaboo, 7, published=tomorrow - timedelta(minutes=1))
    assert await queue(store, [next_day], now=tomorrow) == 1
    due = await due_direct_messages(store, now=tomorrow)
    assert [type(item).__name__ for item in due[ANNA]] == ["DirectMessage"] * 4 + ["DailySummary"]
    [summary] = [item for item in due[ANNA] if isinstance(item, DailySummary)]
    assert [line.story_id for line in await store.direct_messages.summary_lines(ANNA, summary.day)] == [
        ids[3],
        ids[4],
        late,
    ]
    await record_dm_sent(store, summary, 9001, now=tomorrow)
    lines = [dm for dm in await store.direct_messages.list() if dm.kind == DM_SUMMARY]
    assert {(dm.status, dm.message_id) for dm in lines} == {("sent", 9001)}


async def test_a_cap_of_zero_sends_only_the_summary(store, koreaboo):
    await follow(store, ANNA, "bts-v")
    ids = await stories(store, koreaboo, 1)
    assert await queue(store, ids, config=DeliveryConfig(max_dms_per_day=0)) == 1
    [dm] = await store.direct_messages.list()
    assert dm.kind == DM_SUMMARY and len(await store.direct_messages.summaries()) == 1


# --- closed DMs -----------------------------------------------------------------------------------------------


async def test_closed_dms_pause_the_member_drop_what_waits_and_they_are_told_once(store, koreaboo):
    await follow(store, ANNA, "bts-v")
    await follow(store, BORA, "bts-v")
    ids = await stories(store, koreaboo, *range(1, 6))
    await queue(store, ids)
    assert await take_pause_notice(store, ANNA) is False  # not paused: nothing to tell
    assert await record_dms_closed(store, ANNA, "403 Forbidden (error code 50007)") is True
    assert await record_dms_closed(store, ANNA, "again") is False
    follower, _ = await member_follows(store, ANNA)
    assert follower is not None and follower.paused and "50007" in (follower.paused_reason or "")
    assert {dm.status for dm in await store.direct_messages.list(user_id=ANNA)} == {"dropped"}
    assert {s.status for s in await store.direct_messages.summaries(user_id=ANNA)} == {"dropped"}
    assert ANNA not in await due_direct_messages(store, now=NOON + timedelta(days=2))
    assert BORA in await due_direct_messages(store, now=NOON)
    # nothing new is queued for a paused member
    [new] = await stories(store, koreaboo, 6)
    assert await queue(store, [new]) == 1
    assert [dm.user_id for dm in await store.direct_messages.list() if dm.story_id == new] == [BORA]
    # told once; a failed telling is given back
    assert await take_pause_notice(store, ANNA) is True
    assert await take_pause_notice(store, ANNA) is False
    await give_back_pause_notice(store, ANNA)
    assert await take_pause_notice(store, ANNA) is True
    # /follow resumes them: the next story reaches them again
    result = await follow_artist(store, ANNA, "bts-v", locale="ko")
    assert result.resumed and not result.created
    follower, _ = await member_follows(store, ANNA)
    assert follower is not None and not follower.paused and follower.locale == "ko"
    tomorrow = NOON + timedelta(days=1)
    [later] = await stories(store, koreaboo, 7, published=tomorrow)
    assert await queue(store, [later], now=tomorrow) == 2


# --- following and unfollowing --------------------------------------------------------------------------------


async def test_following_twice_unfollowing_and_the_limit(store, koreaboo):
    first = await follow_artist(store, ANNA, "bts-v", locale="ja")
    again = await follow_artist(store, ANNA, "bts-v", locale=None)
    assert first.created and not again.created and not again.resumed
    follower, follows = await member_follows(store, ANNA)
    assert follower is not None and follower.locale == "ja"  # a missing locale keeps the known one
    assert [f.artist_id for f in follows] == ["bts-v"]
    assert await unfollow_artist(store, ANNA, "bts-v") is True
    assert await unfollow_artist(store, ANNA, "bts-v") is False
    for n in range(MAX_FOLLOWS):
        await follow_artist(store, BORA, f"artist-{n}", locale="en")
    with pytest.raises(TooManyFollows):
        await follow_artist(store, BORA, "one-too-many", locale="en")
    assert (await follow_artist(store, BORA, "artist-0", locale="en")).created is False  # an old one: fine
    assert await store.follows.count(BORA) == MAX_FOLLOWS


async def test_unfollowing_hands_a_waiting_dm_to_another_follow_or_drops_it(store, koreaboo):
    await follow(store, ANNA, "bts-v", "bts", "iu")
    [about_v, about_iu] = await stories(store, koreaboo, 1) + await stories(
        store, koreaboo, 2, artists=("iu",)
    )
    await queue(store, [about_v, about_iu])
    assert await unfollow_artist(store, ANNA, "bts-v", expand=expand)
    assert await unfollow_artist(store, ANNA, "iu", expand=expand)
    by_story = {dm.story_id: dm for dm in await store.direct_messages.list()}
    assert by_story[about_v].status == "pending" and by_story[about_v].artist_id == "bts"  # BTS still matches
    assert by_story[about_iu].status == "dropped" and by_story[about_iu].last_error == "unfollowed"


# --- sending outcomes -----------------------------------------------------------------------------------------


async def test_a_dm_is_retried_then_given_up_and_a_waiting_member_keeps_their_order(store, koreaboo):
    await follow(store, ANNA, "bts-v")
    ids = await stories(store, koreaboo, 1, 2)
    await queue(store, ids)
    first, second = await store.direct_messages.list()
    await store.direct_messages.mark_attempt(first, at=NOON)
    first = await store.direct_messages.get(first.id)
    assert first is not None and first.attempts == 1 and first.attempt_started_at == NOON
    assert await record_dm_transient_failure(store, first, "503", retry_after=60, now=NOON) is True
    assert ANNA not in await due_direct_messages(store, now=NOON)  # the second waits behind the first
    assert await store.direct_messages.next_due_at() == NOON + timedelta(seconds=60)
    assert [d.id for d in (await due_direct_messages(store, now=NOON + timedelta(minutes=2)))[ANNA]] == [
        first.id,
        second.id,
    ]
    first.attempts = MAX_SEND_ATTEMPTS
    assert await record_dm_transient_failure(store, first, "503", now=NOON) is False
    first = await store.direct_messages.get(first.id)
    assert first is not None and first.status == "failed" and "gave up" in (first.last_error or "")
    await record_dm_sent(store, second, 4242, now=NOON)
    second = await store.direct_messages.get(second.id)
    assert second is not None and (second.status, second.message_id, second.sent_at) == ("sent", 4242, NOON)


async def test_the_dm_channel_is_kept(store):
    await follow(store, ANNA, "iu")
    await store.follows.set_dm_channel(ANNA, 123456)
    follower, _ = await member_follows(store, ANNA)
    assert follower is not None and follower.dm_channel_id == 123456
    await store.follows.set_dm_channel(ANNA, None)
    follower, _ = await member_follows(store, ANNA)
    assert follower is not None and follower.dm_channel_id is None


# --- what a DM says -------------------------------------------------------------------------------------------


def test_the_dm_words_follow_the_members_locale_and_feed_text_stays_inert():
    assert story_dm_text("V (BTS)", "ko").startswith("**V (BTS)** 새 소식")
    assert story_dm_text("V (BTS)", None).startswith("New story about **V (BTS)**")
    assert "@\u200beveryone" in story_dm_text("@everyone", "en")
    content, embed = summary_dm([make_story(1)], "ja", most_per_day=10)
    assert "10" in content and embed["title"] == "今日のほかのニュース"


def test_the_summary_lists_headlines_with_links_within_discords_limit():
    hostile = Story(
        key="k",
        title="[click](https://evil.example) @everyone <@123> **bold** ]",
        url="https://www.koreaboo.com/news/a(b)/",
        source="Koreaboo",
    )
    many = [hostile] + [replace(make_story(n), title="A very long headline " * 20) for n in range(300)]
    embed = build_headlines_embed("Today's other stories", many, more=lambda n: f"… and {n} more")
    description = embed["description"]
    assert discord_len(description) <= DESCRIPTION_LIMIT
    first, *rest = description.split("\n")
    assert first.startswith("• [") and "](https://www.koreaboo.com/news/a%28b%29/) · Koreaboo" in first
    assert "https://evil" not in first and "@everyone" not in first and "<@1" not in first
    shown = len(rest) - 1
    assert rest[-1] == f"… and {len(many) - 1 - shown} more" and shown > 10


# --- configuration and schema ---------------------------------------------------------------------------------


def test_max_dms_per_day_is_configurable():
    assert DeliveryConfig().max_dms_per_day == 10
    assert parse_config({"delivery": {"max_dms_per_day": 3}}).delivery.max_dms_per_day == 3
    with pytest.raises(ConfigError, match="max_dms_per_day"):
        parse_config({"delivery": {"max_dms_per_day": -1}})


def test_the_follows_migration_is_portable_sql():
    [migration] = [m for m in load_migrations() if m.name == "follows"]
    assert 650 <= migration.version <= 699
    upper = migration.sql.upper()
    assert "WITHOUT ROWID" not in upper and "OR IGNORE" not in upper and "OR REPLACE" not in upper


def test_the_day_a_dm_counts_against_is_the_utc_day():
    morning_in_seoul = datetime(2026, 12, 7, 8, 30, tzinfo=ZoneInfo("Asia/Seoul"))  # 23:30 UTC the day before
    assert utc_day(morning_in_seoul) == "2026-12-06"
    assert day_end("2026-12-31") == datetime(2027, 1, 1, tzinfo=UTC)


async def test_direct_message_rows_round_trip(store, koreaboo):
    await follow(store, ANNA, "iu")
    [story_id] = await stories(store, koreaboo, 1, artists=("iu",))
    dm = DirectMessage(ANNA, story_id, story_id, "iu", "2026-12-06", DM_MESSAGE, "n1", created_at=NOON)
    assert await store.direct_messages.add(dm) is True
    assert await store.direct_messages.add(dm) is False  # (member, cluster) is unique
    [stored] = await store.direct_messages.list()
    assert (stored.user_id, stored.cluster_id, stored.nonce, stored.created_at) == (
        ANNA,
        story_id,
        "n1",
        NOON,
    )
    assert await store.direct_messages.messages_of_day([ANNA, BORA, CHUL], "2026-12-06") == {ANNA: 1}
