"""`kpopnews preview SOURCE... [--json] [--limit N] [--html FILE]`: what the bot would post, without posting.

Each SOURCE (a feed URL or a local feed file) goes through the bot's own stages: fetch (bot/fetch.py), parse
(bot/parse.py), article pages (bot/article_pages.py: the newest `polling.article_pages_per_poll` excerpt items'
pages per source, within `polling.timeout_seconds`, a site that keeps failing skipped), enrich (bot/enrich.py)
and embed (bot/embed.py). Every story is shown; one whose page was not fetched is shown from its feed alone (a
line on stderr says how many). Nothing is written to the database. Exit 0, or 1 when some source could not be
read (one line on stderr each; the others still shown).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.article_pages import HostBreaker, PageBatch, fetch_article_pages
from bot.artists import load_artist_index
from bot.config import Config, SourceConfig
from bot.embed import PLATFORM_NAMES, build_story_embed
from bot.enrich import enrich_batch
from bot.models import Story
from bot.parse import FeedError, parse_feed
from bot.text import clean_text, one_line

log = logging.getLogger(__name__)

EXIT_OK, EXIT_INPUT, EXIT_USAGE = 0, 1, 2


@dataclass
class PreviewItem:
    story: Story
    embed: dict[str, Any]


async def run_preview(
    config: Config,
    sources: list[str],
    *,
    as_json: bool,
    limit: int | None,
    html_path: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """Print what would be posted for every story of every source; see the module docstring."""
    from bot.fetch import Fetcher, make_page_fetcher, make_session

    artists = await load_artist_index(err, without="stories shown without artists")
    failed = False
    shown: list[PreviewItem] = []
    session = make_session(config.polling)
    try:
        fetcher = Fetcher(session, config.polling)
        fetch_page = (
            make_page_fetcher(fetcher, allow_private=True) if config.polling.fetch_article_pages else None
        )
        breaker = HostBreaker()  # one for the run: sources often link to the same sites
        for source in sources:
            try:
                items, warning = await _preview_source(
                    source, config, fetcher, fetch_page, breaker, artists, limit, err
                )
            except _SourceFailed as exc:
                print(f"kpopnews: {exc}", file=err)
                failed = True
                continue
            except Exception as exc:  # a defect, but one source must not cost the others their preview
                log.debug("preview of %s failed", source, exc_info=True)
                print(f"kpopnews: {source}: could not be previewed ({type(exc).__name__}: {exc})", file=err)
                failed = True
                continue
            if warning:
                print(f"kpopnews: warning: {_safe(warning)}", file=err)
            for item in items:
                if as_json:
                    out.write(json.dumps(item.story.to_json(item.embed), ensure_ascii=False) + "\n")
                else:
                    out.write(format_story(item.story, width=_width()) + "\n")
            out.flush()
            shown.extend(items)
    finally:
        await session.close()
    if html_path:
        try:
            await asyncio.to_thread(Path(html_path).write_text, render_html(shown), encoding="utf-8")
        except OSError as exc:
            print(f"kpopnews: cannot write {html_path}: {exc.strerror or exc}", file=err)
            return EXIT_USAGE
        if not as_json:
            print(f"wrote {len(shown)} embed(s) to {html_path}", file=err)
    return EXIT_INPUT if failed else EXIT_OK


class _SourceFailed(Exception):
    """One source could not be read; the message names it and says why."""


async def _preview_source(
    source: str,
    config: Config,
    fetcher: Any,
    fetch_page: Any,
    breaker: HostBreaker,
    artists: Any,
    limit: int | None,
    err: TextIO,
) -> tuple[list[PreviewItem], str | None]:
    result = await fetcher.fetch(source, max_bytes=config.polling.max_feed_bytes, allow_private=True)
    if result.status != "ok" or result.body is None:
        raise _SourceFailed(f"{source}: {result.error or 'could not be read'}")
    try:
        parsed = await asyncio.to_thread(
            parse_feed, result.body, url=source, content_type=result.content_type
        )
    except FeedError as exc:
        raise _SourceFailed(str(exc)) from None
    configured = _configured(config, source)
    name = (configured.name if configured else "") or one_line(parsed.title) or _host(source) or source
    color = configured.color if configured else None
    entries = parsed.entries[:limit] if limit else parsed.entries
    batch = PageBatch()
    if fetch_page is not None and entries:
        # every story is shown, whatever its age: no max_age here, only the cap and the breaker
        batch = await fetch_article_pages(
            entries,
            fetch_page,
            limit=config.polling.article_pages_per_poll,
            breaker=breaker,
            per_host=config.polling.per_host_concurrency,
            deadline_seconds=config.polling.timeout_seconds,  # as long as one request may take
        )
    if batch.deferred:
        print(f"kpopnews: {_safe(source)}: {_pages_not_fetched(batch, config)}", file=err)
    stories = await asyncio.to_thread(
        enrich_batch, entries, source_name=name, artists=artists, pages=batch.pages
    )
    items = [PreviewItem(story, build_story_embed(story, color=color)) for story in stories]
    return items, parsed.warning


def _pages_not_fetched(batch: PageBatch, config: Config) -> str:
    """Why some stories are shown without what their article page would add, in one line."""
    n = len(batch.deferred)
    why = []
    if batch.over_cap:
        cap = config.polling.article_pages_per_poll
        why.append(f"{batch.over_cap} past the newest {cap} (polling.article_pages_per_poll)")
    if n > batch.over_cap:
        why.append(f"{n - batch.over_cap} whose site did not answer in time or was skipped after failing")
    return f"{n} stor{'y' if n == 1 else 'ies'} shown without their article page: {'; '.join(why)}"


def _configured(config: Config, source: str) -> SourceConfig | None:
    wanted = source.strip().rstrip("/")
    for candidate in config.sources:
        if candidate.url.strip().rstrip("/") == wanted:
            return candidate
    return None


def _host(source: str) -> str:
    match = re.match(r"^[a-z]+://(?:www\.)?([^/:?#]+)", source, re.IGNORECASE)
    return match.group(1) if match else ""


# --- terminal output ---------------------------------------------------------------------------------------


def _width() -> int:
    return max(60, min(110, shutil.get_terminal_size((100, 24)).columns))


def _safe(text: str | None) -> str:
    """One line with no control characters: feed text must not drive the terminal (ANSI escapes)."""
    return one_line(text or "")


def format_story(story: Story, *, width: int = 100) -> str:
    """A story as a person reads it in a terminal."""
    lines = [f"■ {_safe(story.title)}", f"  {_safe(story.url)}"]
    meta = [_safe(story.source)]
    if story.published:
        meta.append(story.published.strftime("%Y-%m-%d %H:%M UTC"))
    lines.append("  " + " · ".join(m for m in meta if m))
    artists = ", ".join(
        _safe(a.name) + (f" ({_safe(a.group)})" if a.group and a.group != a.name else "")
        for a in story.artists
    )
    lines.append(f"  artists: {artists or '—'}")
    lines.append(f"  image:   {_safe(story.image) or '—'}")
    if story.summary:
        lines.append("")
        summary = " ".join(clean_text(story.summary).split())
        lines.extend(textwrap.wrap(summary, width=width, initial_indent="  ", subsequent_indent="  "))
    if story.quotes:
        lines.append("")
        lines.append("  What fans are saying:")
        for quote in story.quotes:
            who = _safe(quote.author) or _safe(quote.handle)
            if quote.handle and quote.handle != quote.author:
                who += f" (@{_safe(quote.handle)})"
            platform = PLATFORM_NAMES.get(quote.platform, _safe(quote.platform))
            text = " ".join(clean_text(quote.text).split())
            lines.extend(
                textwrap.wrap(f"“{text}”", width=width, initial_indent="  • ", subsequent_indent="    ")
            )
            lines.append(f"    — {who} on {platform}: {_safe(quote.url)}")
    lines.append("")
    return "\n".join(lines)


# --- HTML page ---------------------------------------------------------------------------------------------

_MASKED_LINK = re.compile(r"(?<!\\)\[((?:\\.|[^\]\\])*)(?<!\\)\]\((https?://[^\s)]+)\)")
_ITALIC = re.compile(r"(?<![\\*])\*((?:\\.|[^*\\])+)\*")
_ESCAPE = re.compile(r"\\([^\w\s])")


def discord_markdown_to_html(text: str) -> str:
    """The little markdown this project's embeds use, as Discord shows it: our masked links and italics become
    HTML, backslash escapes are undone, everything else is escaped text. Feed text can inject nothing: its
    markdown was escaped by escape_discord, and what is left is HTML-escaped here."""
    out: list[str] = []
    last = 0
    for match in _MASKED_LINK.finditer(text):
        out.append(_inline(text[last : match.start()]))
        href = html.escape(match.group(2), quote=True)
        out.append(
            f'<a href="{href}" rel="noopener noreferrer nofollow" target="_blank">{_inline(match.group(1))}</a>'
        )
        last = match.end()
    out.append(_inline(text[last:]))
    return "".join(out).replace("\n", "<br>")


def _inline(text: str) -> str:
    parts: list[str] = []
    last = 0
    for match in _ITALIC.finditer(text):
        parts.append(html.escape(_ESCAPE.sub(r"\1", text[last : match.start()])))
        emphasised = html.escape(_ESCAPE.sub(r"\1", match.group(1)))
        parts.append(f"<em>{emphasised}</em>")
        last = match.end()
    parts.append(html.escape(_ESCAPE.sub(r"\1", text[last:])))
    return "".join(parts)


def render_embed_html(embed: dict[str, Any]) -> str:
    """One embed drawn like Discord's (dark theme): colour bar, author, linked title, text, fields, image, footer."""
    esc = html.escape
    color = f"#{int(embed.get('color') or 0):06x}"
    parts = [f'<article class="embed" style="border-left-color:{color}">']
    author = embed.get("author")
    if author:
        name = esc(author.get("name", ""))
        if author.get("url"):
            name = f'<a href="{esc(author["url"], quote=True)}" rel="noopener noreferrer nofollow">{name}</a>'
        parts.append(f'<div class="author">{name}</div>')
    title = discord_markdown_to_html(embed.get("title", ""))
    if embed.get("url"):
        title = f'<a href="{esc(embed["url"], quote=True)}" rel="noopener noreferrer nofollow" target="_blank">{title}</a>'
    parts.append(f'<div class="title">{title}</div>')
    if embed.get("description"):
        parts.append(f'<div class="description">{discord_markdown_to_html(embed["description"])}</div>')
    for field in embed.get("fields", []):
        name = field.get("name", "")
        name_html = "" if name == "\u200b" else discord_markdown_to_html(name)
        parts.append(
            f'<div class="field"><div class="field-name">{name_html}</div>'
            f'<div class="field-value">{discord_markdown_to_html(field.get("value", ""))}</div></div>'
        )
    if embed.get("image", {}).get("url"):
        parts.append(
            f'<img class="image" src="{esc(embed["image"]["url"], quote=True)}" alt="" loading="lazy">'
        )
    footer = [esc(embed.get("footer", {}).get("text", ""))]
    if embed.get("timestamp"):
        footer.append(esc(embed["timestamp"].replace("T", " ")[:16] + " UTC"))
    footer_text = " • ".join(f for f in footer if f)
    if footer_text:
        parts.append(f'<div class="footer">{footer_text}</div>')
    parts.append("</article>")
    return "".join(parts)


_PAGE_STYLE = """
body{background:#313338;color:#dbdee1;font:16px/1.375 "gg sans","Noto Sans","Helvetica Neue",Helvetica,Arial,
sans-serif;margin:0;padding:24px}
h1{font-size:18px;color:#f2f3f5;margin:0 0 16px}
.message{display:flex;gap:16px;margin:0 0 24px;max-width:560px}
.avatar{width:40px;height:40px;border-radius:50%;background:#5865f2;flex:none}
.bot{color:#f2f3f5;font-weight:600;margin-bottom:4px}
.bot span{background:#5865f2;color:#fff;font-size:10px;border-radius:3px;padding:1px 4px;margin-left:4px}
.embed{background:#2b2d31;border-left:4px solid;border-radius:4px;padding:8px 16px 16px 12px;max-width:520px}
.author{font-size:14px;font-weight:600;margin-top:8px}
.author a,.author{color:#f2f3f5;text-decoration:none}
.title{font-weight:600;margin-top:8px}.title a{color:#00a8fc;text-decoration:none}
.description,.field-value{font-size:14px;white-space:normal;margin-top:8px}
.field-name{font-size:14px;font-weight:600;color:#f2f3f5;margin-top:8px}
a{color:#00a8fc}
.image{display:block;max-width:100%;max-height:300px;border-radius:4px;margin-top:16px}
.footer{font-size:12px;color:#b5bac1;margin-top:8px}
"""


def render_html(items: list[PreviewItem]) -> str:
    """A self-contained page showing every embed as Discord would (no scripts, every feed text escaped)."""
    messages = "\n".join(
        '<div class="message"><div class="avatar"></div><div><div class="bot">kpopnews<span>BOT</span></div>'
        f"{render_embed_html(item.embed)}</div></div>"
        for item in items
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src https: http:; '
        "style-src 'unsafe-inline'\">"
        f"<title>kpopnews preview</title><style>{_PAGE_STYLE}</style></head><body>"
        f"<h1>kpopnews preview: {len(items)} stor{'y' if len(items) == 1 else 'ies'}</h1>\n{messages}\n</body></html>\n"
    )
