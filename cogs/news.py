"""/news artist:<text> [count]: the latest stories about an artist, by any of their names, with Previous/Next
buttons that page by the stories' time and keep working after a restart (their state is in their custom ids)."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import KpopNewsBot, UserFacingError
from bot.embed import build_story_embed, embed_length
from bot.i18n import text
from bot.search import SearchResult, artist_stories, search_stories
from bot.store.stories import StoryKey
from bot.text import escape_discord, truncate
from bot.timeutil import from_iso, to_iso
from cogs.common import (
    CUSTOM_ID_UNITS,
    PageButton,
    answer,
    answer_error,
    artist_choices,
    base36,
    cut_to_units,
    in_time,
    loaded_cog,
    page_view,
    show_page,
    utf16_units,
)
from cogs.translator import catalog_str

if TYPE_CHECKING:
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

MAX_COUNT = 10  # a message holds 10 embeds
DEFAULT_COUNT = 5
MESSAGE_EMBED_BUDGET = 6000  # Discord: all embeds of one message together
LIST_DESCRIPTION = 300  # a story in a list shows a short summary, so that several fit the budget


def list_embed(story: Any, locale: object = None) -> dict[str, Any]:
    """A story as one of several in a message: headline, link, image, source and time, a short summary."""
    embed = build_story_embed(story, locale=locale)
    embed.pop("fields", None)  # fan quotes are for the channel post; a list keeps to the essentials
    if embed.get("description"):
        embed["description"] = truncate(embed["description"], LIST_DESCRIPTION)
    return embed


def fit_embeds(embeds: list[dict[str, Any]], budget: int = MESSAGE_EMBED_BUDGET) -> list[dict[str, Any]]:
    """As many embeds, in order, as one message holds (10, and 6,000 characters together)."""
    kept: list[dict[str, Any]] = []
    used = 0
    for embed in embeds[:MAX_COUNT]:
        size = embed_length(embed)
        if kept and used + size > budget:
            break
        if size > budget:  # a single embed over the budget: its description goes first
            embed = dict(embed, description=truncate(embed.get("description") or "", 100))
            size = embed_length(embed)
        kept.append(embed)
        used += size
    return kept


def no_result_text(result: SearchResult, locale: object = None) -> str:
    query = escape_discord(truncate(result.query, 80))
    if result.artist is not None:
        reply = text("news.no_stories", locale, artist=escape_discord(result.artist.label))
    else:
        reply = text("news.nothing_found", locale, query=query)
    suggestions = [f"**{escape_discord(a.label)}**" for a in (result.suggestions or [])[:5]]
    if suggestions:
        names = text("list.separator", locale).join(suggestions)
        reply += " " + text("news.did_you_mean", locale, names=names)
    elif result.artist is None:
        reply += " " + text("news.try_names", locale)
    return reply


def header_text(result: SearchResult, position: int, shown: int, locale: object = None) -> str:
    """The line above the stories: "Latest stories about X" when they all fit, else "Stories about X: 6–10 of
    24"."""
    who = (
        escape_discord(result.artist.label)
        if result.artist
        else text("common.quoted", locale, text=escape_discord(truncate(result.query, 80)))
    )
    if result.total <= shown and position == 0 and not result.total_capped:
        return text("news.header", locale, who=who)
    # a story removed since the first page would leave "11–12 of 10"
    total = result.total_label if result.total_capped else str(max(result.total, position + shown))
    if shown > 1:
        shown_range = text("common.range", locale, first=position + 1, last=position + shown, total=total)
    else:
        shown_range = text("common.position", locale, first=position + 1, total=total)
    return text("news.header_page", locale, who=who, range=shown_range)


def clean_query(text: str) -> str:
    """What /news searches, and its buttons carry: the text without control characters, spaces single, cut
    at a word to what a custom id holds."""
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return cut_to_units(" ".join(text.split()), QUERY_UNITS)


# --- the buttons' custom ids --------------------------------------------------------------------------------

_NEWS_ID = re.compile(
    r"news:(?P<way>[np]):(?P<owner>[0-9a-z]{1,13}):(?P<count>[0-9a-z]{1,2}):(?P<position>[0-9a-z]{1,4})"
    r":(?P<time>-?[0-9a-z]{1,9}):(?P<story>[0-9a-z]{1,13}):(?P<kind>[at])(?P<query>.+)",
    re.DOTALL,
)
MAX_POSITION = 36**4 - 1  # four base-36 digits; deeper than any list a person pages through
QUERY_UNITS = 54  # what the longest other fields leave of 100 (tests/test_paging.py checks it)


@dataclass(frozen=True)
class NewsButton:
    """What a /news Previous or Next button carries, all in its custom id (Discord: at most 100 characters):

        news:<n|p>:<owner>:<count>:<position>:<time>:<story>:<a artist id | t text>

    `n` (Next: the stories older than the cursor story) or `p` (Previous: the newer ones); who ran the command
    (only they turn the pages); the page size; the cursor story's place in the list as shown (0: the newest),
    for "6–10 of 24"; the cursor story's time (Unix seconds) and id. Numbers are in base 36. Last comes what is
    searched: the id of the artist the query resolved to, or the query's text (clean_query: no control
    characters, at most QUERY_UNITS units), taken as the rest of the custom id, so it needs no escaping.
    A custom id that does not read so (hand-made, or from an older version) is answered "expired"."""

    forward: bool
    owner_id: int
    count: int
    position: int
    cursor: StoryKey  # (time as the store keeps it, story id)
    artist_id: str | None  # the artist the query resolved to; None: `text` is searched
    text: str = ""

    def custom_id(self) -> str:
        moment = from_iso(self.cursor[0])
        assert moment is not None, self.cursor  # every stored story has a time (first seen at the least)
        head = ":".join(
            (
                "news",
                "n" if self.forward else "p",
                base36(self.owner_id),
                base36(self.count),
                base36(min(max(self.position, 0), MAX_POSITION)),
                base36(int(moment.timestamp())),
                base36(self.cursor[1]),
                "a" if self.artist_id else "t",
            )
        )
        if self.artist_id:
            return head + self.artist_id
        return head + cut_to_units(self.text, CUSTOM_ID_UNITS - utf16_units(head))

    @classmethod
    def read(cls, custom_id: str) -> NewsButton | None:
        """The button a custom id describes; None when it does not read as one."""
        found = _NEWS_ID.fullmatch(custom_id)
        if found is None:
            return None
        try:
            owner_id, count, position, seconds, story_id = (
                int(found[name], 36) for name in ("owner", "count", "position", "time", "story")
            )
            moment = datetime.fromtimestamp(seconds, UTC)
        except (ValueError, OverflowError, OSError):  # a time no calendar holds
            return None
        query = found["query"]
        if not (0 < owner_id < 2**64 and 1 <= count <= MAX_COUNT and story_id > 0):
            return None
        if query != clean_query(query):  # control characters, or longer than any button carries
            return None
        cursor = (to_iso(moment) or "", story_id)
        if found["kind"] == "a":
            return cls(found["way"] == "n", owner_id, count, position, cursor, artist_id=query)
        return cls(found["way"] == "n", owner_id, count, position, cursor, artist_id=None, text=query)


class NewsPageButton(PageButton, template=re.compile(r"news:.*", re.DOTALL)):
    """A /news Previous or Next button; its template takes every /news custom id (old formats too)."""

    command = "news"

    @classmethod
    def read(cls, custom_id: str) -> NewsButton | None:
        return NewsButton.read(custom_id)

    async def turn(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.state, NewsButton)  # PageButton.callback answers an unreadable one
        await loaded_cog(interaction, News).turn(interaction, self.state)


def news_message(
    result: SearchResult,
    *,
    owner_id: int,
    count: int,
    position: int,
    backward: bool,
    newer: bool,
    locale: object = None,
) -> dict[str, Any]:
    """The message for a page of `result`: header, embeds, and Previous/Next when there is more either way,
    its fixed words in `locale` (the member's).

    `position` is the place in the list of the first story of the page (backward: of the story just after
    it), `newer` whether there are stories before the page (backward: ignored, `result.has_more` says it)."""
    embeds = [list_embed(s, locale) for s in result.stories]
    if backward:  # a page of newer stories fills up from its oldest, next to where the reader was
        kept = fit_embeds(embeds[::-1])[::-1]
        keys = result.keys[len(embeds) - len(kept) :]
        newer = result.has_more or len(kept) < len(embeds)
        older = True
        position = max(0, position - len(kept)) if newer else 0
    else:
        kept = fit_embeds(embeds)
        keys = result.keys[: len(kept)]
        older = result.has_more or len(kept) < len(embeds)
    message: dict[str, Any] = {
        "content": header_text(result, position, len(kept), locale),
        "embeds": [discord.Embed.from_dict(e) for e in kept],
        "view": None,
    }
    if newer or older:
        artist_id = result.artist.id if result.artist else None
        query = "" if result.artist else result.query
        last = position + len(kept) - 1
        previous = NewsButton(False, owner_id, count, position, keys[0], artist_id, query)
        next_ = NewsButton(True, owner_id, count, last, keys[-1], artist_id, query)
        message["view"] = page_view(
            NewsPageButton(previous.custom_id(), disabled=not newer, locale=locale),
            NewsPageButton(next_.custom_id(), disabled=not older, locale=locale),
        )
    return message


class News(commands.Cog):
    def __init__(self, bot: KpopNewsBot) -> None:
        self.bot: KpopNewsBot = bot

    @property
    def index(self) -> ArtistIndex | None:
        return self.bot.artists  # None when the artist data could not be loaded

    async def search(
        self,
        query: str,
        *,
        limit: int,
        artist_id: str | None = None,
        before: StoryKey | None = None,
        after: StoryKey | None = None,
        locale: object = None,
    ) -> SearchResult | None:
        """A page of stories for what was typed, or about the artist it resolved to when `artist_id` is given;
        None when that artist is no longer in the artist data."""
        index = self.index
        if index is None:
            raise UserFacingError(text("common.artists_loading", locale))
        if artist_id is None:
            return await search_stories(self.bot.store, index, query, limit=limit, before=before, after=after)
        artist = index.get(artist_id)
        if artist is None:
            return None
        return await artist_stories(self.bot.store, index, artist, limit=limit, before=before, after=after)

    async def turn(self, interaction: discord.Interaction, button: NewsButton) -> None:
        """A Previous or Next click: the page next to the button's cursor story, in place of the message's."""
        locale = interaction.locale  # the one who clicked, in their language
        if self.index is None:
            await answer_error(interaction, text("common.artists_loading", locale))
            return
        way = {"before": button.cursor} if button.forward else {"after": button.cursor}
        page = self.search(button.text, limit=button.count, artist_id=button.artist_id, **way)
        result = await in_time(interaction, page)
        position = button.position + 1 if button.forward else button.position
        backward, newer = not button.forward, True
        if result is not None and not result.stories:
            # nothing past the cursor (stories removed since, or a hand-made custom id): the newest again
            result = await self.search(button.text, limit=button.count, artist_id=button.artist_id)
            position, backward, newer = 0, False, False
        if result is None:
            await answer_error(interaction, NewsPageButton.expired_text(locale))
            return
        if not result.stories:
            await answer_error(interaction, no_result_text(result, locale))
            return
        message = news_message(
            result,
            owner_id=button.owner_id,
            count=button.count,
            position=position,
            backward=backward,
            newer=newer,
            locale=locale,
        )
        await show_page(interaction, **message)

    @app_commands.command(name="news", description="The latest K-pop stories about an artist or group")
    @app_commands.describe(
        artist="Stage name, real name, Hangul name or group, e.g. V, Taehyung, 뷔, BTS",
        count=catalog_str("cmd.news.count.description", max=MAX_COUNT, default=DEFAULT_COUNT),
    )
    async def news(
        self,
        interaction: discord.Interaction,
        artist: app_commands.Range[str, 1, 100],
        count: app_commands.Range[int, 1, MAX_COUNT] = DEFAULT_COUNT,
    ) -> None:
        locale = interaction.locale  # replies follow the member's language
        # a name as typed, or an artist id when picked from the autocomplete list
        result = await in_time(interaction, self.search(clean_query(artist), limit=count, locale=locale))
        assert result is not None  # only an artist id from a button can have left the artist data
        if not result.stories:
            await answer(interaction, content=no_result_text(result, locale), ephemeral=True)
            return
        message = news_message(
            result,
            owner_id=interaction.user.id,
            count=count,
            position=0,
            backward=False,
            newer=False,
            locale=locale,
        )
        await answer(interaction, **message)

    @news.autocomplete("artist")
    async def _artist_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return artist_choices(self.index, current)


async def setup(bot: KpopNewsBot) -> None:
    await bot.add_cog(News(bot))
    bot.add_dynamic_items(NewsPageButton)  # clicks on any /news message ever sent, across restarts


async def teardown(bot: KpopNewsBot) -> None:
    bot.remove_dynamic_items(NewsPageButton)
