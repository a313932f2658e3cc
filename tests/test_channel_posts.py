"""How a story is laid out per kind of channel: post names, forum tags by any name of an artist, pings,
the permissions each kind needs. Plain values in and out (no Discord)."""

from __future__ import annotations

import pytest

from bot.artists import ArtistIndex
from bot.channel_posts import (
    MAX_APPLIED_TAGS,
    THREAD_NAME_LIMIT,
    ForumTagMatcher,
    artists_text,
    forum_requires_tag_error,
    needed_permissions,
    permission_labels,
    ping_content,
    thread_name,
)
from bot.models import CHANNEL_ANNOUNCEMENT, CHANNEL_FORUM, CHANNEL_TEXT, ArtistRef
from bot.text import discord_len


@pytest.fixture(scope="module")
def index() -> ArtistIndex:
    return ArtistIndex.load()


def test_post_names_are_the_headline_cut_cleanly_to_100() -> None:
    title = "BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU " * 5 + "🧑🏽‍🤝‍🧑🏻"
    name = thread_name(title)
    assert discord_len(name) <= THREAD_NAME_LIMIT and name.endswith("…")
    assert name.startswith("BTS’s V Is Going Viral") and not name[:-1].endswith(" ")
    emoji = thread_name("x" * 97 + "🧑🏽‍🤝‍🧑🏻 tail")
    assert discord_len(emoji) <= THREAD_NAME_LIMIT and "\u200d" not in emoji[-3:]  # no half an emoji
    assert thread_name("  V   sings\n<b>live</b> ") == "V sings live"
    assert thread_name("") == thread_name("   ") == "Untitled story"
    assert thread_name("x" * 100) == "x" * 100


def test_post_names_defuse_mentions() -> None:
    name = thread_name("@everyone <@&123> <@456> @here leaks")
    assert "@everyone" not in name and "<@&123>" not in name and "<@456>" not in name and "@here" not in name


def test_pings_mention_only_the_given_roles_once() -> None:
    assert ping_content([]) is None
    assert ping_content([5, 7, 5]) == "<@&5> <@&7>"


def test_forum_tags_match_any_name_of_the_storys_artists_or_their_groups(index: ArtistIndex) -> None:
    tags = [
        (1, "News"),
        (2, "BTS"),
        (3, "뷔"),  # V in Hangul
        (4, "IU 💜"),
        (5, "BLACKPINK"),
        (6, "Kim Taehyung"),  # V's real name
        (7, "Comeback"),
    ]
    matcher = ForumTagMatcher(index)
    assert matcher.matching(tags, ["bts-v", "iu"]) == [2, 3, 4, 6]
    assert matcher.matching(tags, ["bts"]) == [2]  # a story about the group: not its members' tags
    assert matcher.matching(tags, ["blackpink-rose"]) == [5]
    assert matcher.matching(tags, []) == []
    assert ForumTagMatcher(None).matching(tags, ["bts-v"]) == []  # no artist index: no tags, still a post


def test_at_most_five_tags_in_the_forums_order(index: ArtistIndex) -> None:
    tags = [
        (i, name)
        for i, name in enumerate(["BTS", "V", "뷔", "Taehyung", "Kim Taehyung", "방탄소년단", "Bangtan"])
    ]
    assert ForumTagMatcher(index).matching(tags, ["bts-v"]) == [0, 1, 2, 3, 4][:MAX_APPLIED_TAGS]


def test_the_required_tag_error_names_the_artists() -> None:
    text = forum_requires_tag_error([ArtistRef("bts-v", "V", "BTS"), ArtistRef("iu", "IU", None)])
    assert text.startswith("this forum requires a tag and none matches V (BTS), IU")
    assert "no artist" in forum_requires_tag_error([])
    assert artists_text([ArtistRef(f"a{i}", f"A{i}", None) for i in range(20)]).count(",") == 7


def test_permissions_each_kind_needs() -> None:
    names = lambda kind, **kw: [label for _, label in needed_permissions(kind, **kw)]  # noqa: E731
    assert names(CHANNEL_TEXT) == ["View Channel", "Send Messages", "Embed Links"]
    assert names(CHANNEL_TEXT, threads=True)[-2:] == ["Create Public Threads", "Send Messages in Threads"]
    assert names(CHANNEL_ANNOUNCEMENT) == ["View Channel", "Send Messages", "Embed Links"]
    assert names(CHANNEL_FORUM) == ["View Channel", "Create Posts", "Send Messages in Threads", "Embed Links"]
    assert permission_labels(CHANNEL_TEXT) == "View Channel, Send Messages and Embed Links"
