"""How a story is laid out in each kind of channel, as plain data: a forum post's name and tags, a discussion
thread's name, the role pings of a post, and the permissions the bot needs for each kind.

No Discord here (bot/delivery.py sends what these describe; cogs/subscriptions.py checks the permissions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from bot.models import CHANNEL_FORUM, ArtistRef
from bot.text import escape_discord, one_line, truncate

THREAD_NAME_LIMIT = 100  # Discord's limit on a thread's or a forum post's name
MAX_APPLIED_TAGS = 5  # Discord's limit on the tags of one forum post
DISCUSSION_ARCHIVE_MINUTES: Literal[1440] = (
    1440  # a discussion thread goes quiet after a day without messages
)
UNTITLED = "Untitled story"

# discord.Permissions attribute -> the name Discord's settings show
VIEW_CHANNEL = ("view_channel", "View Channel")
SEND_MESSAGES = ("send_messages", "Send Messages")
CREATE_POSTS = ("send_messages", "Create Posts")  # the same permission, as a forum's settings name it
EMBED_LINKS = ("embed_links", "Embed Links")
CREATE_PUBLIC_THREADS = ("create_public_threads", "Create Public Threads")
SEND_MESSAGES_IN_THREADS = ("send_messages_in_threads", "Send Messages in Threads")


class _Artist(Protocol):
    @property
    def id(self) -> str: ...


class ArtistNames(Protocol):
    """What tag matching needs of the artist index (bot.artists.ArtistIndex fits)."""

    def resolve_exact(self, query: str) -> Sequence[_Artist]: ...

    def expand(self, artist_id: str) -> list[str]: ...


def needed_permissions(kind: str, *, threads: bool = False) -> list[tuple[str, str]]:
    """What the bot needs in a channel of this kind to post there (and open discussion threads)."""
    if kind == CHANNEL_FORUM:
        return [VIEW_CHANNEL, CREATE_POSTS, SEND_MESSAGES_IN_THREADS, EMBED_LINKS]
    needed = [VIEW_CHANNEL, SEND_MESSAGES, EMBED_LINKS]  # publishing its own posts needs no more
    if threads:
        needed += [CREATE_PUBLIC_THREADS, SEND_MESSAGES_IN_THREADS]
    return needed


def permission_labels(kind: str, *, threads: bool = False) -> str:
    """ "View Channel, Send Messages and Embed Links": for the sentences that tell an admin what to grant."""
    labels = [label for _, label in needed_permissions(kind, threads=threads)]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def thread_name(title: str) -> str:
    """A forum post's or a discussion thread's name: the headline on one line, cut cleanly to 100 characters,
    mentions defused (Discord shows names verbatim)."""
    name = escape_discord(one_line(title or ""), markdown=False)
    return truncate(name, THREAD_NAME_LIMIT) or UNTITLED


def ping_content(role_ids: Iterable[int]) -> str | None:
    """The message content that mentions these roles (None: no ping). Only these ids ever go in content."""
    mentions = " ".join(f"<@&{int(role_id)}>" for role_id in dict.fromkeys(role_ids))
    return mentions or None


def artists_text(artists: Sequence[ArtistRef]) -> str:
    """The story's artists for a sentence: "V (BTS), IU", or "no artist" when it names none."""
    names = [f"{a.name} ({a.group})" if a.group else a.name for a in artists[:8]]
    return ", ".join(names) if names else "no artist"


class ForumTagMatcher:
    """The tags of a forum that fit a story: a tag fits when it is a name of one of the story's artists or of
    a group one of them is in (any name the artist index knows: stage name, Hangul, alias…). Tag names are
    resolved once each."""

    def __init__(self, artists: ArtistNames | None) -> None:
        self._artists = artists
        self._named: dict[str, frozenset[str]] = {}  # tag name -> the artist ids it is a name of, expanded

    def _covers(self, tag_name: str) -> frozenset[str]:
        found = self._named.get(tag_name)
        if found is None:
            ids: set[str] = set()
            if self._artists is not None:
                for artist in self._artists.resolve_exact(tag_name):
                    ids.update(self._artists.expand(artist.id) or [artist.id])
            found = self._named[tag_name] = frozenset(ids)
        return found

    def matching(self, tags: Iterable[tuple[int, str]], story_artists: Iterable[str]) -> list[int]:
        """The ids of the tags (id, name) that fit, in the forum's order, at most MAX_APPLIED_TAGS."""
        wanted = set(story_artists)
        if not wanted:
            return []
        return [tag_id for tag_id, name in tags if self._covers(name) & wanted][:MAX_APPLIED_TAGS]


def forum_requires_tag_error(artists: Sequence[ArtistRef]) -> str:
    """The health line of a forum that requires a tag when none of its tags fits the story."""
    return (
        f"this forum requires a tag and none matches {artists_text(artists)}: add a tag named after the"
        " artist (or its group) to the forum, or turn off “Require people to select tags when posting”"
    )
