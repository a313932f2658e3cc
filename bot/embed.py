"""Story -> the Discord embed exactly as it is sent (Discord's JSON field names), within every Discord limit.

Headline as title (linked), summary as description, lead image, the outlet as author, the fan quotes as fields
under "What fans are saying", "Also on: …" when other outlets carry the story, the artists in the footer and the
publication time as timestamp, one colour per outlet. Feed text is escaped (escape_discord) where Discord renders
markdown (title, description, field names and values); where it does not (author name, footer) only mentions are
defused, so no stray backslashes show. Limits (../shared/docs/discord-wire.md) are met by cutting text cleanly
(truncate), never by failing: title 256, description 4096, 25 fields, field name 256, value 1024, footer 2048,
author name 256, everything together 6000.

The fixed words ("What fans are saying", "Also on", "+3 more", "Untitled story", "on X") follow `locale`: a channel
post takes its server's preferred locale, a DM its member's, and the CLI English (the default); the story's own
text stays as the outlet wrote it.
"""

from __future__ import annotations

import colorsys
import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from bot.i18n import DEFAULT_LOCALE, text
from bot.images import absolute_http_url
from bot.models import Quote, Story
from bot.text import discord_len, escape_discord, one_line, truncate

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_NAME_LIMIT = 256
TOTAL_LIMIT = 6000
URL_LIMIT = 2048  # longer URLs are refused by Discord as "not well formed"

_URL_IN_TEXT = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)

QUOTES_HEADING = text("embed.quotes_heading", DEFAULT_LOCALE)  # as the CLI shows it
BLANK_NAME = "\u200b"  # Discord requires a field name; a zero-width space shows none
MAX_FOOTER_ARTISTS = 8
PLATFORM_NAMES = {
    "twitter": "Twitter",
    "x": "X",
    "bluesky": "Bluesky",
    "tiktok": "TikTok",
    "instagram": "Instagram",
    "threads": "Threads",
    "reddit": "Reddit",
}


def build_story_embed(
    story: Story, *, color: int | None = None, also_on: Sequence[str] = (), locale: object = DEFAULT_LOCALE
) -> dict[str, Any]:
    """The embed for one story (see the module docstring), its fixed words in `locale`. Never raises on hostile
    or absurd text."""
    embed: dict[str, Any] = {"type": "rich"}
    embed["title"] = truncate(escape_discord(one_line(story.title)), TITLE_LIMIT) or text(
        "embed.untitled", locale
    )
    url = safe_url(story.url)
    if url:
        embed["url"] = url
    description = escape_discord(story.summary or "")
    others = [
        one_line(name) for name in also_on if one_line(name) and one_line(name) != one_line(story.source)
    ]
    if others:
        outlets = escape_discord(text("list.separator", locale).join(dict.fromkeys(others)))
        also = "*" + text("embed.also_on", locale, outlets=outlets) + "*"
        description = f"{description}\n\n{also}" if description else also
    if description:
        embed["description"] = truncate(description, DESCRIPTION_LIMIT)
    embed["color"] = color if color is not None and 0 <= color <= 0xFFFFFF else source_color(story.source)
    source = _plain(story.source)
    if source:
        author: dict[str, Any] = {"name": truncate(source, AUTHOR_NAME_LIMIT)}
        home = _site_home(url)
        if home:
            author["url"] = home
        embed["author"] = author
    image = safe_url(story.image)
    if image:
        embed["image"] = {"url": image}
    fields = [
        quote_field(quote, first=i == 0, locale=locale) for i, quote in enumerate(story.quotes[:FIELDS_LIMIT])
    ]
    if fields:
        embed["fields"] = fields
    footer = _artists_line(story, locale)
    if footer:
        embed["footer"] = {"text": truncate(footer, FOOTER_LIMIT)}
    if story.published is not None:
        embed["timestamp"] = story.published.isoformat()
    return _fit_total(embed)


def quote_field(quote: Quote, *, first: bool, locale: object = DEFAULT_LOCALE) -> dict[str, Any]:
    """One fan quote as an embed field: “text” then — [Name (@handle)](link) on Platform."""
    who = _plain(quote.author) or _plain(quote.handle)
    handle = _plain(quote.handle)
    if handle and handle.lower() != who.lower():
        who = f"{who} (@{handle})"
    elif handle:
        who = f"@{handle}"
    # Inside a masked link's text: no URLs (Discord refuses links whose text looks like one) and no brackets.
    who = " ".join(_URL_IN_TEXT.sub("", who).replace("[", "(").replace("]", ")").split())
    who = escape_discord(truncate(who, 120)) or text("embed.a_fan", locale)
    link = safe_url(quote.url)
    credit = f"[{who}]({_link_target(link)})" if link else who
    platform = PLATFORM_NAMES.get(quote.platform, _plain(quote.platform).title())
    signature = "\n— " + (
        text("embed.quote_credit", locale, credit=credit, platform=platform) if platform else credit
    )
    room = FIELD_VALUE_LIMIT - discord_len(signature) - 2  # the two quotation marks
    said = truncate(escape_discord(quote.text), max(room, 20))
    value = truncate(f"“{said}”{signature}", FIELD_VALUE_LIMIT)
    heading = text("embed.quotes_heading", locale) if first else BLANK_NAME
    return {"name": heading, "value": value or "…", "inline": False}


def message_payload(embed: dict[str, Any]) -> dict[str, Any]:
    """The whole message body to POST: the embed, and no mention of anyone, whatever the text says."""
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


HEADLINES_COLOR = 0xE4007F
HEADLINE_LIMIT = 150  # a headline in a list of them: long ones are cut so that more stories fit


def build_headlines_embed(
    title: str, stories: Sequence[Story], *, more: Callable[[int], str], locale: object = DEFAULT_LOCALE
) -> dict[str, Any]:
    """Stories as one list embed (a follower's daily summary): a line each, "• [headline](link) · outlet", as many
    as the description holds, then `more(n)` for the n that did not fit."""
    lines: list[str] = []
    used = 0
    for i, story in enumerate(stories):
        # inside a masked link's text: no URLs (Discord refuses such links) and no brackets
        headline = " ".join(
            _URL_IN_TEXT.sub("", one_line(story.title)).replace("[", "(").replace("]", ")").split()
        )
        headline = escape_discord(truncate(headline, HEADLINE_LIMIT)) or text("embed.untitled", locale)
        link = safe_url(story.url)
        line = f"• [{headline}]({_link_target(link)})" if link else f"• {headline}"
        source = escape_discord(one_line(story.source))
        if source:
            line += f" · {source}"
        rest = len(stories) - i - 1
        tail = discord_len("\n" + more(rest)) if rest else 0
        if used + discord_len(line) + 1 + tail > DESCRIPTION_LIMIT:
            lines.append(more(len(stories) - i))
            break
        lines.append(line)
        used += discord_len(line) + 1
    return {
        "type": "rich",
        "title": truncate(escape_discord(one_line(title)), TITLE_LIMIT),
        "description": "\n".join(lines) or "…",
        "color": HEADLINES_COLOR,
    }


def embed_length(embed: dict[str, Any]) -> int:
    """What counts towards Discord's 6000 total: title, description, field names and values, footer, author."""
    total = discord_len(embed.get("title", "")) + discord_len(embed.get("description", ""))
    total += sum(
        discord_len(f.get("name", "")) + discord_len(f.get("value", "")) for f in embed.get("fields", [])
    )
    total += discord_len(embed.get("footer", {}).get("text", ""))
    total += discord_len(embed.get("author", {}).get("name", ""))
    return total


def source_color(name: str) -> int:
    """A stable, readable colour for an outlet: the hue comes from a hash of its name."""
    hue = (zlib.crc32(one_line(name).lower().encode("utf-8")) % 360) / 360
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.9)
    return (round(r * 255) << 16) | (round(g * 255) << 8) | round(b * 255)


def _fit_total(embed: dict[str, Any]) -> dict[str, Any]:
    """Cut until the whole embed is within TOTAL_LIMIT: description first, then the last quotes, then the
    footer, then the title. Each piece keeps a readable minimum while a later one can still give."""
    over = embed_length(embed) - TOTAL_LIMIT
    if over <= 0:
        return embed
    if "description" in embed:
        keep = max(200, discord_len(embed["description"]) - over)
        embed["description"] = truncate(embed["description"], keep)
        over = embed_length(embed) - TOTAL_LIMIT
    fields = embed.get("fields", [])
    while over > 0 and fields:
        last = fields[-1]
        shorter = _shrink_quote_value(last["value"], discord_len(last["value"]) - over)
        if shorter is not None:
            last["value"] = shorter
        else:
            fields.pop()
        over = embed_length(embed) - TOTAL_LIMIT
    if not fields:
        embed.pop("fields", None)
    if over > 0 and "footer" in embed:
        footer = embed["footer"]["text"]
        footer = truncate(footer, max(0, discord_len(footer) - over))
        if footer:
            embed["footer"]["text"] = footer
        else:
            embed.pop("footer")
        over = embed_length(embed) - TOTAL_LIMIT
    if over > 0 and "description" in embed:
        description = truncate(embed["description"], max(0, discord_len(embed["description"]) - over))
        if description:
            embed["description"] = description
        else:
            embed.pop("description")
        over = embed_length(embed) - TOTAL_LIMIT
    if over > 0:
        embed["title"] = truncate(embed["title"], max(1, discord_len(embed["title"]) - over))
    return embed


def _shrink_quote_value(value: str, target: int) -> str | None:
    """The quote's text cut so the value fits `target`, its attribution kept; None when too little would stay."""
    head, sep, signature = value.rpartition("\n— ")
    if not sep:
        head, signature = value, ""
    room = target - discord_len(sep + signature) - 1  # the closing quotation mark
    if room < 80:
        return None
    text = truncate(head.removesuffix("”"), room)
    return f"{text}”{sep}{signature}" if sep else text


def _artists_line(story: Story, locale: object) -> str:
    names: list[str] = []
    for ref in story.artists[:MAX_FOOTER_ARTISTS]:
        name = _plain(ref.name)
        group = _plain(ref.group or "")
        if name:
            names.append(f"{name} ({group})" if group and group.lower() != name.lower() else name)
    if len(story.artists) > MAX_FOOTER_ARTISTS:
        names.append(text("common.plus_more", locale, count=len(story.artists) - MAX_FOOTER_ARTISTS))
    return " · ".join(names)


def _plain(text: str | None) -> str:
    """Text for places Discord shows verbatim (author, footer): one line, mentions defused, no escapes."""
    return escape_discord(one_line(text or ""), markdown=False)


def safe_url(url: str | None) -> str | None:
    """An absolute http(s) URL Discord accepts in an embed (no spaces, not too long), else None."""
    absolute = absolute_http_url(url)
    if absolute is None or len(absolute) > URL_LIMIT or any(c.isspace() for c in absolute):
        return None
    return absolute


def _link_target(url: str) -> str:
    """A URL safe inside a markdown link's parentheses."""
    return url.replace("(", "%28").replace(")", "%29").replace(" ", "%20")


def _site_home(url: str | None) -> str | None:
    if not url:
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/" if host else None
