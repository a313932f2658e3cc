"""The lead image of a story, in order of trust (../shared/docs/sources.md):

media:content / media:thumbnail -> an image enclosure -> the first real content <img> (not a thumbnail, avatar,
tracking pixel, emoji, gravatar or data: URL) -> the article page's og:image / twitter:image.
Every URL is made absolute against the article link and must be http(s).
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode
from yarl import URL

from bot.models import FeedEntry
from bot.text import (
    EMBED_SELECTOR,
    EMOJI_IMAGE_URL,
    HtmlTrees,
    article_body,
    emoji_of_image,
    parse_html,
)

MIN_CONTENT_IMAGE_SIZE = 100  # px: a declared width or height below this is an icon, avatar or pixel

# Never a story's picture, wherever it appears: tracking pixels, avatars, emoji (bot/text.py knows those).
_TRACKING_URL = re.compile(
    EMOJI_IMAGE_URL.pattern + r"|gravatar\.com|/avatars?/|/pixel[/.?]|pixel\.wp\.com|"
    r"/track(?:ing)?/|beacon|1x1|spacer\.|blank\.(?:gif|png)|transparent\.(?:gif|png)|feeds\.feedburner\.com/~|"
    r"stats\.wordpress\.com|doubleclick\.net|googleads|facebook\.com/tr|scorecardresearch",
    re.IGNORECASE,
)
# Hints in a content <img> src that it is page furniture (the feed's own media are trusted more).
_FURNITURE_URL = re.compile(
    r"avatar|/icons?/|[/_-]icon[._-]|/logos?/|[/_-]logo[._-]|sprite|badge|placeholder|loading\.gif|/ads?/",
    re.IGNORECASE,
)
# One class token that marks furniture ("attachment-post-thumbnail" is WordPress's big featured image: kept).
_FURNITURE_CLASS = re.compile(
    r"avatar.*|.*-avatar|gravatar|icon|.*-icon|logo|.*-logo|size-thumbnail|attachment-thumbnail|"
    r"thumbnail|thumb|sprite|badge|.*pixel.*|tracking.*",
    re.IGNORECASE,
)
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|bmp)(?:$|[?#])", re.IGNORECASE)
_LAZY_ATTRS = ("data-lazy-src", "data-src", "data-original", "data-orig-file", "data-large-file")


def absolute_http_url(url: str | None, base: str | None = None) -> str | None:
    """`url` made absolute against `base`, or None unless it is an http(s) URL with a host."""
    url = (url or "").strip()
    if not url or url.lower().startswith(("data:", "javascript:", "blob:", "about:")):
        return None
    try:
        target = URL(url)
        if not target.is_absolute() or not target.scheme:  # relative, or scheme-relative ("//cdn…")
            if not base:
                return None
            target = URL(base.strip()).join(target)
    except (ValueError, TypeError):
        return None
    if target.scheme not in ("http", "https") or not target.host:
        return None
    return str(target)


def looks_like_image_url(url: str) -> bool:
    """True when the URL's path ends like an image file (for enclosures and media without a type)."""
    return bool(_IMAGE_EXT.search(url))


def pick_lead_image(
    entry: FeedEntry, *, page_html: str | None = None, trees: HtmlTrees | None = None
) -> str | None:
    """The story's lead image, trusting the feed's own media first and the article page last.
    `trees`: the story's parsed trees, read instead of parsing the HTML again."""
    base = entry.link or None
    for url in [*entry.media_images, *entry.enclosure_images]:
        absolute = absolute_http_url(url, base)
        if absolute and not _TRACKING_URL.search(absolute):
            return absolute
    for html in (entry.content_html, entry.summary_html):
        found = first_content_image(html, base_url=base, trees=trees)
        if found:
            return found
    if page_html:
        tree = trees.get(page_html) if trees is not None else parse_html(page_html)
        return page_meta_image(tree, base_url=base) or first_content_image(
            "", base_url=base, node=article_body(tree)
        )
    return None


def first_content_image(
    html: str, *, base_url: str | None, node: LexborNode | None = None, trees: HtmlTrees | None = None
) -> str | None:
    """The first <img> in HTML that is a real picture (see the module docstring), as an absolute URL.
    `node`: an already parsed element to read instead; `trees`: the story's parsed trees."""
    if node is None:
        if not html or "<img" not in html and "<img" not in html.lower():  # lower(): the slow way
            return None
        node = (trees.get(html) if trees is not None else parse_html(html)).body
        if node is None:
            return None
    embeds = {n.mem_id for n in node.css(EMBED_SELECTOR)}
    for img in node.css("img"):
        if embeds and _inside(img, embeds):  # a picture inside an embedded post belongs to the post
            continue
        url = _img_src(img, base_url)
        if url and _is_real_picture(img, url):
            return url
    return None


def page_meta_image(tree: LexborHTMLParser, *, base_url: str | None) -> str | None:
    """The page's og:image (else twitter:image, else link rel=image_src) as an absolute URL."""
    head = tree.head or tree.root
    if head is None:
        return None
    for selector, attr in (
        ('meta[property="og:image:secure_url"]', "content"),
        ('meta[property="og:image"]', "content"),
        ('meta[property="og:image:url"]', "content"),
        ('meta[name="twitter:image"]', "content"),
        ('meta[name="twitter:image:src"]', "content"),
        ('meta[property="twitter:image"]', "content"),
        ('link[rel="image_src"]', "href"),
    ):
        for meta in head.css(selector):
            url = absolute_http_url(meta.attributes.get(attr), base_url)
            if url and not _TRACKING_URL.search(url):
                return url
    return None


def _img_src(img: LexborNode, base_url: str | None) -> str | None:
    attrs = img.attributes
    src = (attrs.get("src") or "").strip()
    if not src or src.lower().startswith("data:") or _TRACKING_URL.search(src) or _FURNITURE_URL.search(src):
        for lazy in _LAZY_ATTRS:  # lazy-loading themes keep the real URL aside and a placeholder in src
            if attrs.get(lazy):
                src = attrs[lazy] or ""
                break
    return absolute_http_url(src, base_url)


def _is_real_picture(img: LexborNode, url: str) -> bool:
    attrs = img.attributes
    if _TRACKING_URL.search(url) or _FURNITURE_URL.search(url):
        return False
    if emoji_of_image(img) is not None:  # class="emoji"/"wp-smiley" wherever the picture is served from
        return False
    if any(_FURNITURE_CLASS.fullmatch(token) for token in (attrs.get("class") or "").split()):
        return False
    if url.lower().split("?")[0].endswith(".svg"):
        return False
    for dimension in ("width", "height"):
        value = _pixels(attrs.get(dimension))
        if value is not None and value < MIN_CONTENT_IMAGE_SIZE:
            return False
    return True


def _pixels(value: str | None) -> int | None:
    match = re.match(r"\s*(\d+)\s*(?:px)?\s*$", value or "")
    return int(match.group(1)) if match else None


def _inside(node: LexborNode, ancestors: set[int]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.mem_id in ancestors:
            return True
        parent = parent.parent
    return False
