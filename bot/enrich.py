"""FeedEntry -> Story: clean title and summary, lead image, top fan quotes, artists. The ONE enrichment path,
used by the poller and by `kpopnews preview` alike.

bot/article_pages.py fetches the article pages (only for excerpt-only items, with care for their sites);
`enrich_batch` then does the CPU work, in a worker thread (`enrich_entries`) or a worker process (the poller):
parsing HTML is CPU work and the event loop must stay free.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from bot.article_pages import fetch_article_pages
from bot.images import pick_lead_image
from bot.models import ArtistRef, FeedEntry, Quote, Story
from bot.quotes import posts_in_html, rank_quotes
from bot.text import HtmlTrees, article_body, html_to_text, one_line, parse_html, summarize, truncate
from bot.urls import canonical_url, story_key

if TYPE_CHECKING:  # the artist index is another stage; enrichment works without it
    from bot.artists import ArtistIndex

log = logging.getLogger(__name__)

SUMMARY_CHARS = 400  # a few sentences: what an embed shows above the quotes
MAX_TITLE_CHARS = 500  # stored; the embed cuts to Discord's 256
MAX_RAW_TITLE = 20_000  # hostile titles are cut before they are parsed
MAX_CONTENT_HTML = 256 * 1024  # kept per story for re-enrichment
MAX_HTML_IN = 2 * 1024 * 1024  # HTML read per field or page; beyond is no article's text
# an excerpt ending mid-sentence, or in "…"/"..." (how a feed's cut reads once html_to_text has its "[…]")
_UNFINISHED = re.compile(r"(?:[^.!?…”\"’')\]]|…|\.\.\.)\s*$")


def enrich_entry(
    entry: FeedEntry, *, source_name: str, artists: ArtistIndex | None, page_html: str | None = None
) -> Story:
    """One story, enriched from the feed item and (for excerpt feeds) its article page. Sync, CPU-bound.

    Each HTML (content, excerpt, page) is parsed at most once (`HtmlTrees`): the quotes and the image read
    the trees first, the text takes them last (reading the text changes a tree)."""
    content_html = (entry.content_html or "")[:MAX_HTML_IN]
    summary_html = (entry.summary_html or "")[:MAX_HTML_IN]
    page_html = page_html[:MAX_HTML_IN] if page_html else None
    trees = HtmlTrees()

    posts: list[Quote] = []
    for html in (content_html, summary_html if not content_html else ""):
        posts.extend(posts_in_html(html, trees=trees))
    if page_html:
        posts.extend(posts_in_html(page_html, page=True, trees=trees))
    image = pick_lead_image(entry, page_html=page_html, trees=trees)

    content_text = html_to_text(content_html, trees=trees) if content_html else ""
    # the excerpt's text is read only when the item has no content text (title, summary and tagging fall back)
    excerpt_text = html_to_text(summary_html, trees=trees) if summary_html and not content_text else ""
    page_text, page_body_html, page_text_is_body = (
        _page_article(page_html, trees) if page_html else ("", "", True)
    )

    title = one_line((entry.title or "")[:MAX_RAW_TITLE])
    if not title:  # an item without a title still deserves a headline: its first words
        title = truncate(" ".join((content_text or excerpt_text or page_text).split()), 120)
    title = truncate(title, MAX_TITLE_CHARS) or entry.link

    source = _summary_source(content_text, excerpt_text, page_text)
    # every source but a page's og:description (one_line) is html_to_text's: no need to strip it again
    summary = summarize(source, SUMMARY_CHARS, stripped=source is not page_text or page_text_is_body)
    plain_text = content_text or page_text or excerpt_text

    refs: list[ArtistRef] = []
    if artists is not None:
        try:
            refs = list(artists.tag(title, plain_text, list(entry.categories)))
        except Exception:  # one story's tagging problem must not cost the batch its stories
            log.exception("tagging artists of %s failed; stored without artists", entry.link)

    quotes = rank_quotes(posts, artist_names=_names(refs, artists)) if posts else []

    return Story(
        key=story_key(entry.guid, entry.link),
        title=title,
        url=entry.link,
        source=source_name,
        published=entry.published,
        summary=summary,
        image=image,
        quotes=quotes,
        artists=refs,
        categories=list(entry.categories),
        text=plain_text,
        canonical_url=canonical_url(entry.link),
    )


async def enrich_entries(
    entries: list[FeedEntry],
    *,
    source_name: str,
    artists: ArtistIndex | None,
    fetch_page: Callable[[str], Awaitable[str | None]] | None = None,
    page_concurrency: int = 4,
) -> list[Story]:
    """Stories for `entries`, in order: every article page they need (bot.article_pages.fetch_article_pages,
    no cap), then the CPU work in a worker thread."""
    if not entries:
        return []
    pages: dict[str, str | None] = {}
    if fetch_page:  # every page, `page_concurrency` at once whatever the host: the caller's own fetcher
        batch = await fetch_article_pages(
            entries, fetch_page, concurrency=page_concurrency, per_host=page_concurrency
        )
        pages = batch.pages
    return await asyncio.to_thread(
        enrich_batch, entries, source_name=source_name, artists=artists, pages=pages
    )


def enrich_batch(
    entries: list[FeedEntry],
    *,
    source_name: str,
    artists: ArtistIndex | None,
    pages: dict[str, str | None],
) -> list[Story]:
    """Stories for `entries`, in order, with the article pages already at hand ({canonical link: HTML}).
    Sync and CPU-bound: the one path behind enrich_entries and the poller's worker processes."""
    return [
        _enrich_safely(
            entry,
            source_name=source_name,
            artists=artists,
            page_html=pages.get(canonical_url(entry.link)) if pages else None,
        )
        for entry in entries
    ]


def _enrich_safely(
    entry: FeedEntry, *, source_name: str, artists: ArtistIndex | None, page_html: str | None
) -> Story:
    try:
        return enrich_entry(entry, source_name=source_name, artists=artists, page_html=page_html)
    except Exception:  # never lose a story to an enrichment bug: keep it plain
        log.exception("enriching %s failed; kept with its title and link only", entry.link)
        return Story(
            key=story_key(entry.guid, entry.link),
            title=truncate(one_line(entry.title[:MAX_RAW_TITLE]), MAX_TITLE_CHARS) or entry.link,
            url=entry.link,
            source=source_name,
            published=entry.published,
            categories=list(entry.categories),
            canonical_url=canonical_url(entry.link),
        )


def _page_article(page_html: str, trees: HtmlTrees | None = None) -> tuple[str, str, bool]:
    """(plain text, HTML, whether the text is the body's) of an article page's body; the og:description when
    the body has no text. Takes the page's tree from `trees` (reading the text changes it)."""
    tree = trees.take(page_html) if trees is not None else parse_html(page_html)
    body = article_body(tree)
    body_html = body.html or "" if body is not None else ""
    text = html_to_text("", node=body) if body is not None else ""
    if not text and tree.head is not None:
        meta = tree.head.css_first('meta[property="og:description"]') or tree.head.css_first(
            'meta[name="description"]'
        )
        if meta is not None:
            return one_line(meta.attributes.get("content") or ""), body_html, False
    return text, body_html, True


def _summary_source(content_text: str, excerpt_text: str, page_text: str) -> str:
    """The feed's full content first; an excerpt unless it was cut mid-sentence and the page has the text."""
    if content_text:
        return content_text
    if excerpt_text and not (page_text and _UNFINISHED.search(excerpt_text)):
        return excerpt_text
    return page_text or excerpt_text


def _names(refs: Iterable[ArtistRef], artists: ArtistIndex | None) -> list[str]:
    """Every name fans may use for the story's artists (stage name, group, real name, given name, Hangul,
    aliases), so a quote saying "taehyung" counts as naming V."""
    names: list[str] = []
    lookup = getattr(artists, "get", None)
    for ref in refs:
        names.append(ref.name)
        if ref.group:
            names.append(ref.group)
        artist = lookup(ref.id) if callable(lookup) else None
        if artist is None:
            continue
        real = getattr(artist, "real_name", None) or ""
        names.extend(real.split()[1:2] if len(real.split()) == 2 else [])  # "Kim Taehyung" -> "Taehyung"
        for attr in ("real_name", "hangul", "real_name_hangul"):
            value = getattr(artist, attr, None)
            if isinstance(value, str):
                names.append(value)
        names.extend(a for a in getattr(artist, "aliases", ()) or () if isinstance(a, str))
    return [n for n in dict.fromkeys(n.strip() for n in names) if n]
