"""Feed bytes -> FeedEntry records (RSS 0.9x/1.0/2.0 and Atom, via feedparser). Pure and synchronous: callers run
`parse_feed` in a worker thread (asyncio.to_thread) so the event loop stays free.

Hostile input is expected: malformed (bozo) feeds keep whatever entries could be read; a wrong or missing
declared encoding is repaired (bytes that are not UTF-8 in a "UTF-8" feed are read as windows-1252, byte by
byte, so one stray byte does not turn the whole feed into mojibake); entity declarations are removed before
feedparser sees them (its own guard lets a "quadratic blowup" entity through: a 200 KB entity referenced
20,000 times ran for minutes); emoji written as two UTF-16 surrogate references are joined (feedparser crashed
on them); the bytes are handed to feedparser as a stream, never as a string it might take
for a file name or URL. HTML fields come out as the feed wrote them (raw, hostile): see bot/text.py for reading
them. When nothing can be read, FeedError says why in words an operator can act on.
"""

from __future__ import annotations

import calendar
import codecs
import io
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
from yarl import URL

from bot.models import FeedEntry, Story
from bot.parse_rss import read_rss
from bot.text import repair_surrogate_refs_in_bytes
from bot.urls import canonical_url, story_key

MAX_CATEGORIES = 50
MAX_CATEGORY_CHARS = 200
FUTURE_TOLERANCE = timedelta(days=1)  # a pubDate further ahead than this is a broken clock, not a date

_SNIFF_BYTES = 4096
_XML_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?\?>", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(
    rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""", re.IGNORECASE
)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY_DECL = re.compile(rb"<!ENTITY\b[^>]*>", re.IGNORECASE)
_HTML_START = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.I | re.S
)
_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)[\s>]", re.IGNORECASE)
_ALTERNATE_FEED = re.compile(
    rb"""<link\b[^>]*\btype\s*=\s*["']application/(?:rss|atom)\+xml["'][^>]*>""", re.IGNORECASE
)
_HREF = re.compile(rb"""\bhref\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)(?:$|[?#])", re.IGNORECASE)
_MEDIA_NS_PREFIX = re.compile(
    rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*["'](?:https?://search\.yahoo\.com/mrss/?|https?://www\.rssboard\.org/media-rss/?)["']"""
)
_UTF8_NAMES = {"utf-8", "utf8", "unicode-1-1-utf-8"}


class FeedError(Exception):
    """Nothing could be read from a feed; the message names the feed and says why."""


@dataclass
class ParsedFeed:
    title: str
    entries: list[FeedEntry] = field(default_factory=list)
    warning: str | None = None  # the feed was malformed or mis-encoded but stories could still be read


def _windows_1252_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode the bytes UTF-8 rejects as windows-1252 (the usual culprit), Latin-1 where 1252 has a hole."""
    if not isinstance(error, UnicodeDecodeError):  # registered for decoding only
        raise error
    bad = error.object[error.start : error.end]
    return bad.decode("cp1252", errors="replace").replace("\ufffd", "") or bad.decode("latin-1"), error.end


codecs.register_error("kpopnews-cp1252", _windows_1252_fallback)


def parse_feed(
    data: bytes, *, url: str = "", content_type: str | None = None, use_fast_path: bool = True
) -> ParsedFeed:
    """Parse one feed document. Raises FeedError when it holds no readable story. `use_fast_path=False` reads
    plain RSS 2.0 with feedparser too (the differential tests compare the two)."""
    name = url or "the feed"
    if not data or not data.strip():
        raise FeedError(f"{name} is empty: the server sent no feed document")
    head = data[:_SNIFF_BYTES]
    if _HTML_START.match(head.lstrip(b"\xef\xbb\xbf")) and not _FEED_ROOT.search(data[: _SNIFF_BYTES * 4]):
        raise FeedError(_html_message(name, data))
    notes: list[str] = []
    data, note = _defuse_entities(data)
    if note:
        notes.append(note)
    data, note = _normalise_encoding(data, content_type)
    if note:
        notes.append(note)
    data = _drop_media_text(data)
    # "&#55357;&#56877;" (😭 as UTF-16 halves) crashes feedparser's fallback parser: the whole feed was lost
    data = repair_surrogate_refs_in_bytes(data)

    fast = read_rss(data) if use_fast_path else None
    if fast is not None:  # plain RSS 2.0, read as feedparser reads it (bot/parse_rss.py), ten times faster
        feed_title, feed_link, raw_entries = fast.title, fast.link, fast.items
        version: str = "rss20"
        bozo: BaseException | None = None
    else:
        # A stream, never bytes/str: feedparser opens a str or bytes that names a file or URL. Its HTML sanitizer
        # and relative-URI pass (sgmllib) cost three quarters of the parse and protect nothing here: feed HTML is
        # never rendered, every stage reads it through selectolax (bot/text.py drops scripts, styles, iframes),
        # relative URLs are resolved against the article link (bot/images.py), and text is escaped for Discord.
        try:
            parsed = feedparser.parse(io.BytesIO(data), sanitize_html=False, resolve_relative_uris=False)
        except (
            Exception
        ) as exc:  # feedparser's decoders can raise on hostile bytes; that is this feed's error
            raise FeedError(
                f"{name} could not be parsed as a feed ({type(exc).__name__}: {exc})"[:300]
            ) from None
        feed = parsed.get("feed") or {}
        feed_title, feed_link = str(feed.get("title") or ""), str(feed.get("link") or "")
        raw_entries = parsed.get("entries", [])
        version = parsed.get("version") or ""
        bozo = parsed.get("bozo_exception") if parsed.get("bozo") else None
    base = url if url.startswith(("http://", "https://")) else feed_link
    entries: list[FeedEntry] = []
    skipped = 0
    for raw in raw_entries:
        entry = _entry(raw, base)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    if skipped:
        notes.append(f"{skipped} item(s) without a link were skipped")

    if bozo is not None and not isinstance(
        bozo, feedparser.CharacterEncodingOverride | feedparser.NonXMLContentType
    ):
        notes.insert(0, f"malformed feed ({_describe(bozo)})")
    if not entries:
        if not version and bozo is not None:
            if _HTML_START.match(head) or b"<html" in head.lower():
                raise FeedError(_html_message(name, data))
            raise FeedError(f"{name} is not valid XML and no story could be read ({_describe(bozo)})")
        if not version:
            raise FeedError(f"{name} is not an RSS or Atom feed (no <rss>, <feed> or <rdf:RDF> root)")
        if skipped:
            raise FeedError(f"{name} has items but none with a link to the story")
        raise FeedError(f"{name} has no items")
    title = feed_title.strip()
    warning = (
        f"{name}: "
        + "; ".join(notes)
        + f"; kept {len(entries)} {'story' if len(entries) == 1 else 'stories'}"
        if notes
        else None
    )
    return ParsedFeed(title=title, entries=entries, warning=warning)


@dataclass
class DistinctEntry:
    """A feed item with its story identity: the key (guid or canonical link) and the canonical link."""

    entry: FeedEntry
    key: str
    canonical: str

    def identify(self, story: Story) -> None:
        """Give the story enriched from this item the item's identity where enrichment left it none."""
        story.key = story.key or self.key
        story.canonical_url = story.canonical_url or self.canonical or story.key


def distinct_entries(entries: list[FeedEntry]) -> list[DistinctEntry]:
    """The feed's items with an identity, each story once (a feed listing one story twice, by guid or by link,
    gives it once), in feed order."""
    distinct: list[DistinctEntry] = []
    seen: set[str] = set()
    for entry in entries:
        if not (entry.link or entry.guid):
            continue
        key = story_key(entry.guid, entry.link)
        canon = canonical_url(entry.link) if entry.link else ""
        if not key or key in seen or (canon and canon in seen):
            continue
        seen.update(filter(None, (key, canon)))
        distinct.append(DistinctEntry(entry, key, canon))
    return distinct


def _entry(raw: Any, base: str) -> FeedEntry | None:
    guid = _text(raw.get("id")) or None
    link = _text(raw.get("link"))
    if not link:
        for candidate in raw.get("links", []) or []:
            if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
                link = _text(candidate["href"])
                break
    if not link and guid and guid.lower().startswith(("http://", "https://")):
        link = guid  # an RSS guid that is a permalink is the link when <link> is missing
    link = _absolute(link, base)
    canonical: dict[str, str | None] = {}  # each value canonicalised once (yarl is most of this function)
    if not link or _canonical(link, canonical) is None:
        return None
    if guid and _canonical(guid, canonical) is None:
        guid = None  # a URL-like guid yarl cannot rebuild: the link identifies the story
    guid_is_permalink = bool(
        guid
        and guid.lower().startswith(("http://", "https://"))
        and (raw.get("guidislink") or canonical[guid] == canonical[link])
    )
    content_html = ""
    contents = [c for c in raw.get("content", []) or [] if c.get("value")]
    if contents:
        html_parts = [c for c in contents if "html" in (c.get("type") or "")] or contents
        content_html = max((c["value"] for c in html_parts), key=len)
    summary_html = _text(raw.get("summary"))
    if summary_html and summary_html == content_html:  # feedparser copies content into an absent summary
        summary_html = ""
    return FeedEntry(
        title=_text(raw.get("title")),
        link=link,
        guid=guid,
        guid_is_permalink=guid_is_permalink,
        published=_published(raw),
        summary_html=summary_html,
        content_html=content_html,
        categories=_categories(raw),
        media_images=_media_images(raw, link),
        enclosure_images=_enclosure_images(raw, link),
        author=_text(raw.get("author")) or None,
    )


def _published(raw: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = dict.get(
            raw, key
        )  # plain dict access: feedparser's own maps updated to published, with a warning
        if isinstance(value, time.struct_time):
            try:
                moment = datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, OSError):
                continue
            if moment > datetime.now(UTC) + FUTURE_TOLERANCE:
                return None
            return moment
    return None


def _categories(raw: Any) -> list[str]:
    seen: dict[str, None] = {}
    for tag in raw.get("tags", []) or []:
        term = _text(tag.get("label") or tag.get("term"))
        term = " ".join(term.split())[:MAX_CATEGORY_CHARS]
        if term and term.lower() not in {t.lower() for t in seen}:
            seen[term] = None
        if len(seen) >= MAX_CATEGORIES:
            break
    return list(seen)


def _media_images(raw: Any, link: str) -> list[str]:
    """media:content images first, then media:thumbnail, whatever the namespace URI or prefix says.

    feedparser names elements of unknown namespaces by their prefix (SCMP's non-standard URI still gives
    `media_content`; another prefix gives `<prefix>_content`), so every `*_content`/`*_thumbnail` is read."""
    contents: list[dict[str, Any]] = []
    thumbnails: list[dict[str, Any]] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            continue
        items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        if key.endswith("_content") and key != "content":
            contents.extend(i for i in items if isinstance(i, dict))
        elif key.endswith("_thumbnail"):
            thumbnails.extend(i for i in items if isinstance(i, dict))
    urls: list[str] = []
    for item in contents:
        url = _text(item.get("url"))
        medium = (_text(item.get("medium")) or "").lower()
        mime = (_text(item.get("type")) or "").lower()
        is_image = (
            medium == "image"
            or mime.startswith("image/")
            or (not medium and not mime and bool(_IMAGE_EXT.search(url)))
        )
        if url and is_image:
            urls.append(url)
    urls.extend(_text(item.get("url")) for item in thumbnails if item.get("url"))
    return _unique(_absolute(u, link) for u in urls)


def _enclosure_images(raw: Any, link: str) -> list[str]:
    urls = []
    for candidate in raw.get("links", []) or []:
        if candidate.get("rel") != "enclosure":
            continue
        href = _text(candidate.get("href"))
        mime = (_text(candidate.get("type")) or "").lower()
        if href and (mime.startswith("image/") or (not mime and _IMAGE_EXT.search(href))):
            urls.append(href)
    return _unique(_absolute(u, link) for u in urls)


def _defuse_entities(data: bytes) -> tuple[bytes, str | None]:
    """Remove the DOCTYPE's internal subset and every entity declaration: feeds never need them, and they are
    how entity bombs (billion laughs, quadratic blowup) get in. References to them then stay as text."""
    match = _DOCTYPE.search(data, 0, 65536)
    if match is None and b"<!ENTITY" not in data[:65536].upper():
        return data, None
    if match is not None:
        end = _doctype_end(data, match.start())
        data = data[: match.start()] + data[end:]
    data = _ENTITY_DECL.sub(b"", data)
    return data, "its DOCTYPE and entity declarations were ignored"


def _drop_media_text(data: bytes) -> bytes:
    """Remove media:title / media:description: feedparser files them as the item's own title and description
    (SCMP's image caption became the story's content). Any prefix bound to a Media RSS URI counts, and "media"
    always does (feedparser reads that prefix as Media RSS whatever URI it is bound to)."""
    prefixes = {b"media"} | {m.group(1) for m in _MEDIA_NS_PREFIX.finditer(data, 0, 65536)}
    if not any(p + b":title" in data or p + b":description" in data for p in prefixes):
        return data
    alternatives = b"|".join(re.escape(p) for p in sorted(prefixes))
    pattern = re.compile(
        rb"<(" + alternatives + rb"):(title|description)\b[^>]*?(?:/>|>.*?</\1:\2\s*>)", re.DOTALL
    )
    return pattern.sub(b"", data)


def _doctype_end(data: bytes, start: int) -> int:
    """Index just past the DOCTYPE that starts at `start`, internal subset ("[ … ]") included."""
    depth_bracket = False
    quote: int | None = None
    i = start + len(b"<!DOCTYPE")
    while i < len(data):
        ch = data[i]
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in (0x22, 0x27):  # " or '
            quote = ch
        elif ch == 0x5B:  # [
            depth_bracket = True
        elif ch == 0x5D:  # ]
            depth_bracket = False
        elif ch == 0x3E and not depth_bracket:  # >
            return i + 1
        i += 1
    return len(data)


def _normalise_encoding(data: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """Hand feedparser UTF-8 that says it is UTF-8, when the document is meant to be UTF-8 (or says nothing).

    Bytes that are valid UTF-8 are read as UTF-8 whatever is declared (a declared Latin-1 feed full of valid
    UTF-8 sequences is UTF-8 in practice); others declared in an encoding Python knows are left to feedparser."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return data, None
    if data[:256].count(0) > 64:  # UTF-16/32 without a BOM (every other byte zero): feedparser detects those
        return data, None
    if b"\x00" in data:  # stray NULs: never valid in XML, and feedparser's decoder chokes on them
        data = data.replace(b"\x00", b"")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    declared = _declared_encoding(data, content_type)
    try:
        data.decode("utf-8")
        return _declare_utf8(data), None
    except UnicodeDecodeError:
        pass
    if declared and declared not in _UTF8_NAMES:
        try:
            codecs.lookup(declared)
            return data, None
        except LookupError:
            pass
    text = data.decode("utf-8", errors="kpopnews-cp1252")
    said = f"declared {declared}" if declared else "declared no encoding"
    return _declare_utf8(text.encode("utf-8")), f"{said} but is not UTF-8: read as windows-1252"


def _declared_encoding(data: bytes, content_type: str | None) -> str | None:
    if content_type:
        match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
        if match:
            return match.group(1).lower()
    declared = _DECLARED_ENCODING.match(data)
    return declared.group(1).decode("ascii").lower() if declared else None


def _declare_utf8(data: bytes) -> bytes:
    match = _XML_DECLARATION.match(data)
    if match is None:
        return data
    declaration = re.sub(rb"""encoding\s*=\s*["'][^"']*["']""", b'encoding="utf-8"', match.group())
    return declaration + data[match.end() :]


def _html_message(name: str, data: bytes) -> str:
    for tag in _ALTERNATE_FEED.findall(data[:65536]):
        href = _HREF.search(tag)
        if href:
            feed = _absolute(href.group(1).decode("utf-8", "replace"), name if "://" in name else "")
            return f"{name} is an HTML page, not a feed; the page names its feed: {feed or href.group(1).decode()}"
    return f"{name} is an HTML page, not a feed: give the site's RSS or Atom feed URL instead"


def _describe(error: BaseException) -> str:
    message = (
        str(getattr(error, "getMessage", lambda: error)()) if hasattr(error, "getMessage") else str(error)
    )
    line = getattr(error, "getLineNumber", None)
    where = f" at line {line()}" if callable(line) else ""
    return f"{message or type(error).__name__}{where}"[:200]


def _absolute(url: str, base: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    if url.lower().startswith(("http://", "https://")):
        return url
    if url.startswith("//") and base.lower().startswith("https"):
        return "https:" + url
    if base and base.lower().startswith(("http://", "https://")):
        try:
            joined = URL(base).join(URL(url))
        except (ValueError, TypeError):
            return ""
        return str(joined) if joined.scheme in ("http", "https") else ""
    return ""


def _canonical(value: str, memo: dict[str, str | None]) -> str | None:
    """canonical_url(value), remembered in `memo`; None when story identity cannot be computed from it."""
    if value not in memo:
        try:
            memo[value] = canonical_url(value)
        except (ValueError, TypeError, UnicodeError):  # a mangled host ("a\x19b.com")
            memo[value] = None
    return memo[value]


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))
