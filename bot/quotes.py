"""Top fan quotes: the social posts an article embeds (Twitter/X, Bluesky, TikTok, Instagram, Threads, Reddit).

Works on raw page HTML and on feedparser-sanitized HTML alike: it relies only on what the sanitizer keeps
(`class`, `cite`, `<a href>`), and uses `data-*` permalinks only as a fallback when they are there.

What is a quote: the text of one embedded post, with its author, @handle, platform and canonical link
(`ref_src`/tracking parameters dropped). `t.co` and `pic.twitter.com` links are removed from the text.
What is not: photo credits ("BTS’s V | @thv/Instagram"), the writer's own <blockquote> pull-quotes (no embed
markup), embeds that failed to render (a bare status URL: there is no text to quote), and posts with fewer than
MIN_SUBSTANCE_WORDS words of *substance*.

Substance = the post's words once URLs, @mentions, #hashtags, emoji and credit lines ("Song – … by …",
"♬ original sound – …", "cr: …", "A post shared by …") are taken out. So a post that is only a link, only
media, only hashtags or only emoji has none, and neither has a TikTok caption made of a song credit and tags.

Score (higher is better; the best MAX_QUOTES are kept, ties in the article's order):
    length   = words / 8 below 8 substance words, 1.0 from 8 to 25 (the sweet spot: a sentence or two of
               reaction, what a tweet usually holds), then 0.01 less for every word beyond, down to 0.4
               (long posts read badly in an embed field)
  + mention  = 0.5 when the post names one of the story's artists (any name given by the caller)
  - tags     = 0.3 × the share of hashtags among all the post's words (tag soup is not a reaction)
The platform never counts. Duplicates (the same post twice, or texts alike at ≥ NEAR_DUPLICATE_RATIO by
rapidfuzz's token-sort ratio) keep only their best-scored copy.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

from rapidfuzz import fuzz
from selectolax.lexbor import LexborNode

from bot.models import Quote
from bot.text import (
    HtmlTrees,
    article_body,
    clean_text,
    emoji_of_image,
    is_boilerplate,
    parse_html,
    truncate,
)
from bot.urls import canonical_url

MAX_QUOTES = 3
MIN_SUBSTANCE_WORDS = 2  # a lone word ("omg") is a reaction sound, not something a fan said
SWEET_SPOT = (8, 25)  # substance words
NEAR_DUPLICATE_RATIO = 88
MAX_QUOTE_CHARS = 1000  # a Discord field value holds 1024; longer posts are cut cleanly

_TWITTER_STATUS = re.compile(
    r"^https?://(?:(?:www|mobile|m)\.)?(twitter|x)\.com/(?:i/web|(\w{1,15}))/status(?:es)?/(\d+)",
    re.IGNORECASE,
)
_BLUESKY_POST = re.compile(r"^https?://(?:www\.)?bsky\.app/profile/([^/?#\s]+)/post/([\w-]+)", re.IGNORECASE)
_BLUESKY_AT_URI = re.compile(r"^at://([^/\s]+)/app\.bsky\.feed\.post/([\w-]+)$")
_TIKTOK_VIDEO = re.compile(r"^https?://(?:www\.|m\.)?tiktok\.com/@([\w.-]+)/video/(\d+)", re.IGNORECASE)
_INSTAGRAM_POST = re.compile(
    r"^https?://(?:www\.)?instagram\.com/(?:[\w.]+/)?(p|reel|tv)/([\w-]+)", re.IGNORECASE
)
_THREADS_POST = re.compile(r"^https?://(?:www\.)?threads\.(?:net|com)/@([\w.]+)/post/([\w-]+)", re.IGNORECASE)
_REDDIT_POST = re.compile(
    r"^https?://(?:(?:www|old|new)\.)?reddit\.com/r/(\w+)/comments/(\w+)", re.IGNORECASE
)
_REDDIT_USER = re.compile(r"reddit\.com/u(?:ser)?/([\w-]+)", re.IGNORECASE)

_MEDIA_LINK = re.compile(r"(?:https?://)?(?:t\.co/\w+|pic\.(?:twitter|x)\.com/\w+)\S*", re.IGNORECASE)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@[\w.]{1,30}")
_HASHTAG = re.compile(r"(?<![\w#])[#＃][^\s#＃.,!?;:\"“”'’()]+")
_CREDIT = re.compile(
    # "(?:^|(?=c))": where any alternative can start (a line's start, or "cr…"), tested first: fewer steps at
    # the many positions where none can
    r"(?im)(?:^|(?=c))(?:^\s*(?:(?:♬|🎵|🎶|📸|📷|🎥|📹)[^#\n]*"
    r"|(?:song|music|sound|bgm|audio|track|original sound|source|src|video|vid|edit(?:ed)? by|a post shared by)"
    r"\s*(?:[-–—:|]|by\b)[^#\n]*)"
    r"|(?<!\w)(?:cr|creds?|credits?)\s*[:.]\s*@?\S+)"
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_HANDLE_IN_PARENS = re.compile(r"\(\s*@([\w.-]{1,64})\s*\)")
_DASHES = "—–"

# Boilerplate text inside embeds that is no part of the post.
_EMBED_FURNITURE = re.compile(
    r"(?i)^(?:view this post on instagram|view on threads|post by @[\w.]+|view more on instagram|"
    r"\[image or embed\]|\[contains quote post or other embedded content\]|comment|post|"
    r"a post shared by .*|continue thread|see more on threads)$"
)

_EMBED_CLASSES: tuple[tuple[str, str], ...] = (
    ("twitter-tweet", "twitter"),
    ("twitter-video", "twitter"),
    ("bluesky-embed", "bluesky"),
    ("tiktok-embed", "tiktok"),
    ("instagram-media", "instagram"),
    ("text-post-media", "threads"),
    ("reddit-embed-bq", "reddit"),
    ("reddit-card", "reddit"),
)
_BLOCK_TAGS = frozenset("p div li section h1 h2 h3 h4 h5 h6 figure header footer blockquote".split())


def extract_fan_quotes(
    html: str, *, artist_names: Iterable[str] = (), limit: int = MAX_QUOTES, page: bool = False
) -> list[Quote]:
    """The best `limit` fan quotes embedded in `html`, best first, each with its score (module docstring).

    `page=True` for a whole article page: only its article body is searched (sidebars have embeds too)."""
    return rank_quotes(posts_in_html(html, page=page), artist_names=artist_names, limit=limit)


def posts_in_html(html: str, *, page: bool = False, trees: HtmlTrees | None = None) -> list[Quote]:
    """Every embedded post with text in `html` (a fragment, or a whole page with `page=True`), unranked.
    `trees`: the story's parsed trees, to read instead of parsing `html` again."""
    if not html or "blockquote" not in html and "blockquote" not in html.lower():  # lower(): the slow way
        return []
    tree = trees.get(html) if trees is not None else parse_html(html)
    root = article_body(tree) if page else tree.body
    return find_embedded_posts(root) if root is not None else []


def rank_quotes(
    posts: Iterable[Quote], *, artist_names: Iterable[str] = (), limit: int = MAX_QUOTES
) -> list[Quote]:
    """Posts filtered (substance), scored, deduplicated and cut to the best `limit`, best first.
    Ties keep the order the posts were given in (the article's)."""
    mentions = _mention_matcher(artist_names)
    scored = []
    substance: dict[int, str] = {}  # each post's substance, worked out once (counting and comparing use it)
    for quote in posts:
        text = _substance(quote.text)
        words = len(_WORD.findall(text))
        if words >= MIN_SUBSTANCE_WORDS:
            quote = replace(quote, score=score_quote(quote.text, mentions, words=words))
            scored.append(quote)
            substance[id(quote)] = text
    order = {id(q): i for i, q in enumerate(scored)}
    scored.sort(key=lambda q: (-q.score, order[id(q)]))
    kept: list[Quote] = []
    seen_norm: list[str] = []
    for quote in scored:
        norm = " ".join(_WORD.findall(substance[id(quote)].lower()))  # _normalise, from the kept substance
        if any(quote.url == other.url for other in kept) or any(
            norm == other or fuzz.token_sort_ratio(norm, other) >= NEAR_DUPLICATE_RATIO for other in seen_norm
        ):
            continue
        kept.append(quote)
        seen_norm.append(norm)
        if len(kept) >= limit:
            break
    return kept


def find_embedded_posts(root: LexborNode) -> list[Quote]:
    """Every embedded post under `root` that has text, in document order, unscored and unfiltered."""
    posts: list[Quote] = []
    for block in root.css("blockquote"):
        platform = _platform_of(block)
        if platform is None:
            continue
        parser = _PARSERS[platform]
        try:
            quote = parser(block)
        except (ValueError, IndexError):  # one odd embed must not cost the story its other quotes
            quote = None
        if quote is not None and quote.text:
            posts.append(replace(quote, text=truncate(quote.text, MAX_QUOTE_CHARS)))
    return posts


def substance_words(text: str) -> int:
    """Words of substance in a post: not URLs, @mentions, #hashtags, emoji or credit lines."""
    return len(_WORD.findall(_substance(text)))


def score_quote(
    text: str, mentions: Callable[[str], bool] | None = None, *, words: int | None = None
) -> float:
    """The ranking score of one post's text (module docstring); `words`: its substance_words, if known."""
    if words is None:
        words = substance_words(text)
    low, high = SWEET_SPOT
    if words < low:
        length = words / low
    elif words <= high:
        length = 1.0
    else:
        length = max(0.4, 1.0 - (words - high) / 100)
    mention = 0.5 if mentions is not None and mentions(text) else 0.0
    all_words = len(text.split()) or 1
    tags = 0.3 * min(1.0, len(_HASHTAG.findall(text)) / all_words)
    return round(length + mention - tags, 4)


# --- per platform ------------------------------------------------------------------------------------------


def _platform_of(block: LexborNode) -> str | None:
    classes = set((block.attributes.get("class") or "").split())
    for css_class, platform in _EMBED_CLASSES:
        if css_class in classes:
            return platform
    # A tweet whose class a CMS dropped: a status link plus the "— Name (@handle)" signature.
    if not classes and any(_TWITTER_STATUS.match(h) for h in _hrefs(block)):
        if _HANDLE_IN_PARENS.search(block.text(deep=True) or ""):
            return "twitter"
    return None


def _twitter(block: LexborNode) -> Quote | None:
    status = [m for m in (_TWITTER_STATUS.match(h) for h in _hrefs(block)) if m]
    signature = _signature(block)
    paragraphs = _post_paragraphs(block)
    if paragraphs:
        text = "\n".join(_text_of(p, skip=_is_media_link) for p in paragraphs)
    else:  # no <p>: the text is what comes before the "— Name (@handle)" signature
        text = _before_signature(_text_of(block, skip=_is_media_link))
    text = _tidy(_MEDIA_LINK.sub("", text) if "t.co/" in text or "pic." in text else text)
    if not status:
        return None  # no link to the post: nothing a reader could check
    host, user, status_id = status[-1].groups()  # the signature's date link comes last
    platform = "x" if host.lower() == "x" else "twitter"
    name, handle = signature
    handle = handle or user or ""
    path = f"{user or handle}/status/{status_id}" if (user or handle) else f"i/web/status/{status_id}"
    url = f"https://{platform}.com/{path}"
    return Quote(text=text, author=name or handle, handle=handle, platform=platform, url=url)


def _bluesky(block: LexborNode) -> Quote | None:
    url = None
    for href in _hrefs(block):
        match = _BLUESKY_POST.match(href)
        if match:
            url = f"https://bsky.app/profile/{match.group(1)}/post/{match.group(2)}"
            break
    if url is None:
        match = _BLUESKY_AT_URI.match(block.attributes.get("data-bluesky-uri") or "")
        if not match:
            return None
        url = f"https://bsky.app/profile/{match.group(1)}/post/{match.group(2)}"
    paragraphs = _post_paragraphs(block)
    if paragraphs:
        text = "\n".join(_text_of(p, skip=_is_furniture_link) for p in paragraphs)
    else:
        text = _before_signature(_text_of(block, skip=_is_furniture_link))
    name, handle = _signature(block)
    return Quote(text=_tidy(text), author=name or handle, handle=handle, platform="bluesky", url=url)


def _tiktok(block: LexborNode) -> Quote | None:
    candidates = [block.attributes.get("cite") or "", *_hrefs(block)]
    match = next((m for m in (_TIKTOK_VIDEO.match(c) for c in candidates) if m), None)
    if match is None:
        return None
    user, video_id = match.groups()
    url = f"https://www.tiktok.com/@{user}/video/{video_id}"

    def skip(node: LexborNode) -> bool:  # the author link and the sound credit are not the caption
        if node.tag != "a":
            return False
        href = node.attributes.get("href") or ""
        label = (node.text(deep=True) or "").strip()
        return "/music/" in href or label.startswith("♬") or (label.startswith("@") and "/tag/" not in href)

    section = block.css_first("section") or block
    caption = section.css("p")
    text = "\n".join(_text_of(p, skip=skip) for p in caption) if caption else _text_of(section, skip=skip)
    return Quote(text=_tidy(text), author=user, handle=user, platform="tiktok", url=url)


def _instagram(block: LexborNode) -> Quote | None:
    candidates = [block.attributes.get("data-instgrm-permalink") or "", *_hrefs(block)]
    match = next((m for m in (_INSTAGRAM_POST.match(c) for c in candidates) if m), None)
    if match is None:
        return None
    kind, code = match.groups()
    url = f"https://www.instagram.com/{kind.lower()}/{code}/"
    full = _text_of(block)
    shared = re.search(r"A post shared by\s+(.*?)\s*\(@([\w.]{1,30})\)", full, re.IGNORECASE)
    if shared:
        name, handle = shared.group(1).strip(), shared.group(2)
    else:
        name, handle = _signature(block)
    captions = [
        line
        for p in block.css("p")
        for line in _text_of(p).split("\n")
        if line.strip()
        and not _EMBED_FURNITURE.match(line.strip())
        and "a post shared by" not in line.lower()
    ]
    return Quote(
        text=_tidy("\n".join(captions)), author=name or handle, handle=handle, platform="instagram", url=url
    )


def _threads(block: LexborNode) -> Quote | None:
    candidates = [block.attributes.get("data-text-post-permalink") or "", *_hrefs(block)]
    match = next((m for m in (_THREADS_POST.match(c) for c in candidates) if m), None)
    if match is None:
        return None
    user, code = match.groups()
    host = "threads.net" if "threads.net" in match.group(0).lower() else "threads.com"
    url = f"https://www.{host}/@{user}/post/{code}"
    paragraphs = block.css("p")
    raw = "\n".join(_text_of(p) for p in paragraphs) if paragraphs else _text_of(block)
    lines = [line for line in raw.split("\n") if line.strip() and not _EMBED_FURNITURE.match(line.strip())]
    name, handle = _signature(block)
    return Quote(
        text=_tidy("\n".join(lines)), author=name or user, handle=handle or user, platform="threads", url=url
    )


def _reddit(block: LexborNode) -> Quote | None:
    post = None
    for anchor in block.css("a[href]"):
        href = anchor.attributes.get("href") or ""
        if _REDDIT_POST.match(href):
            post = anchor
            break
    if post is None:
        return None
    href = post.attributes.get("href") or ""
    title = _text_of(post)
    if _EMBED_FURNITURE.match(title.strip()) or "/comment/" in href:  # a comment embed shows no comment text
        return None
    user = next((m.group(1) for m in (_REDDIT_USER.search(h) for h in _hrefs(block)) if m), "")
    return Quote(
        text=_tidy(title),
        author=f"u/{user}" if user else "",
        handle=user,
        platform="reddit",
        url=canonical_url(href.replace("://old.", "://www.").replace("://new.", "://www.")),
    )


_PARSERS: dict[str, Callable[[LexborNode], Quote | None]] = {
    "twitter": _twitter,
    "bluesky": _bluesky,
    "tiktok": _tiktok,
    "instagram": _instagram,
    "threads": _threads,
    "reddit": _reddit,
}


# --- helpers -----------------------------------------------------------------------------------------------


def _hrefs(block: LexborNode) -> list[str]:
    return [(a.attributes.get("href") or "").strip() for a in block.css("a[href]")]


def _text_of(node: LexborNode, skip: Callable[[LexborNode], bool] | None = None) -> str:
    """Text of a subtree with <br> and blocks as line breaks, emoji pictures as their emoji, leaving out subtrees
    `skip` rejects.
    Iterative, so hostile nesting cannot exhaust the stack."""
    out: list[str] = []
    stack: list[LexborNode | str] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        if item.is_text_node:
            out.append(item.text_content or "")
            continue
        if not item.is_element_node:
            continue
        tag = item.tag
        if tag in ("script", "style", "template", "noscript") or (item is not node and skip and skip(item)):
            continue
        if tag == "br":
            out.append("\n")
            continue
        if tag == "img":  # an emoji WordPress made a picture of is part of what the fan wrote
            out.append(emoji_of_image(item) or "")
            continue
        block = tag in _BLOCK_TAGS and item is not node
        if block:
            out.append("\n")
            stack.append("\n")
        children: list[LexborNode] = []
        child = item.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend(reversed(children))
    return clean_text("".join(out))


def _is_media_link(node: LexborNode) -> bool:
    if node.tag != "a":
        return False
    href = (node.attributes.get("href") or "").lower()
    label = (node.text(deep=True) or "").strip().lower()
    return "://t.co/" in href or label.startswith(("pic.twitter.com", "pic.x.com", "https://t.co", "t.co/"))


def _is_furniture_link(node: LexborNode) -> bool:
    if node.tag != "a":
        return False
    label = (node.text(deep=True) or "").strip()
    return bool(_EMBED_FURNITURE.match(label)) or _is_media_link(node)


def _post_paragraphs(block: LexborNode) -> list[LexborNode]:
    """The <p> of an embed that are the post's text: not the "— Name (@handle)" signature line."""
    paragraphs = block.css("p")
    if not paragraphs:
        return paragraphs
    # A paragraph whose raw text has no dash cannot start with one once read (_text_of only leaves text out,
    # adds line breaks and emoji; an emoji picture could read as a dash, so with pictures every one is read)
    pictures = block.css_first("img") is not None
    return [
        p
        for p in paragraphs
        if not ((pictures or any(d in p.text(deep=True) for d in _DASHES)) and _starts_with_dash(_text_of(p)))
    ]


def _starts_with_dash(text: str) -> bool:
    return text.lstrip().startswith(tuple(_DASHES))


def _before_signature(text: str) -> str:
    """Text before the last "— Name (@handle)" signature line."""
    cut = max(text.rfind(d) for d in _DASHES)
    return text[:cut] if cut > 0 else ("" if cut == 0 else text)


def _signature(block: LexborNode) -> tuple[str, str]:
    """(display name, handle) from the "— Name (@handle) date" line of an embed, or ("", "")."""
    full = _text_of(block)
    matches = list(_HANDLE_IN_PARENS.finditer(full))
    if not matches:
        return "", ""
    last = matches[-1]
    before = full[: last.start()]
    dash = max(before.rfind(d) for d in _DASHES)
    name = before[dash + 1 :] if dash >= 0 else before.split("\n")[-1]
    name = " ".join(name.split()).strip(" :")
    return name[:100], last.group(1)[:64]


def _tidy(text: str) -> str:
    """Clean post text: links-only leftovers trimmed, blank lines squeezed, photo credits dropped."""
    lines = [" ".join(line.split()) for line in clean_text(text).split("\n")]
    lines = [line for line in lines if line and not _looks_like_credit(line)]
    return "\n".join(lines).strip()


def _looks_like_credit(line: str) -> bool:
    return "|" in line and is_boilerplate(line)


def _substance(text: str) -> str:
    text = _CREDIT.sub(" ", text)
    if "t.co/" in text or "pic." in text:
        text = _MEDIA_LINK.sub(" ", text)
    # each regex only where what it looks for is there at all (a C search; most posts have no link or handle)
    lowered = text.lower()
    if "http" in lowered or "www." in lowered:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _MENTION.sub(" ", text)
    if "#" in text or "＃" in text:
        text = _HASHTAG.sub(" ", text)
    return text  # emoji are no word characters: _WORD skips them


def _normalise(text: str) -> str:
    return " ".join(_WORD.findall(_substance(text).lower()))


def _mention_matcher(names: Iterable[str]) -> Callable[[str], bool] | None:
    """A test for "the text names one of these artists". Single letters ("V") must match in capitals; other
    Latin names match as whole words in any case ("iu"); Hangul and other scripts match anywhere ("뷔가")."""
    return _matcher_for(frozenset(n.strip() for n in names if n and n.strip()))


@functools.lru_cache(maxsize=1024)
def _matcher_for(names: frozenset[str]) -> Callable[[str], bool] | None:
    """_mention_matcher for a set of names, kept: stories about the same artists come again and again.

    A story's names are many (stage, real, given, Hangul names and aliases of each artist: ~50): one regex
    alternation of all of them tried at every position of every post was the costliest step of enrichment.
    A name is tried only when its lower-cased form is in the lower-cased post (a C substring search); the
    regex then decides. The pre-test can only miss where case-insensitive matching and str.lower() disagree
    (the few letters in _LOWER_MISMATCH): such text or names go to the regexes directly."""
    checks: list[tuple[str | None, re.Pattern[str]]] = []
    for name in sorted(names, key=len, reverse=True):
        checks.append((None if _LOWER_MISMATCH.search(name) else name.lower(), _name_pattern(name)))
    if not checks:
        return None

    def mentions(text: str) -> bool:
        if not text.isascii() and _LOWER_MISMATCH.search(text):
            return any(pattern.search(text) for _, pattern in checks)
        lowered = text.lower()
        return any((low is None or low in lowered) and pattern.search(text) for low, pattern in checks)

    return mentions


@functools.lru_cache(maxsize=8192)
def _name_pattern(name: str) -> re.Pattern[str]:
    """How one name is found in a post (see _mention_matcher); kept, the same names come story after story."""
    escaped = re.escape(name)
    if not name.isascii():
        return re.compile(f"(?i:{escaped})")
    if len(name) == 1:
        return re.compile(rf"(?<![\w@#]){escaped}(?!\w)")
    return re.compile(rf"(?i:(?<![\w@#/]){escaped}(?!\w))")


def _lower_mismatches() -> str:
    """Letters where re.IGNORECASE and str.lower() disagree: those re treats as one more case of another
    letter ("ſ" of "s", "ı" of "i", "ς" of "σ"), their capitals, and "İ" (lower() makes it two characters)."""
    try:  # CPython's own table of these letters (a private module: looked up, not imported by name)
        cases = importlib.import_module("re._casefix")._EXTRA_CASES
        extra = {chr(c) for key, values in cases.items() for c in (key, *values)}
    except (ImportError, AttributeError):  # another Python: the letters CPython 3.11 lists
        extra = set(
            "\u00b5\u0131\u017f\u0345\u0390\u03b0\u03b2\u03b5\u03b8\u03b9\u03ba\u03bc\u03c0\u03c1\u03c2\u03c3"
            "\u03c6\u03d0\u03d1\u03d5\u03d6\u03f0\u03f1\u03f5\u0432\u0434\u043e\u0441\u0442\u044a\u0463\u1c80"
            "\u1c81\u1c82\u1c83\u1c84\u1c85\u1c86\u1c87\u1c88\u1e61\u1e9b\u1fbe\u1fd3\u1fe3\ua64b\ufb05\ufb06"
        )
    extra |= {c.upper() for c in extra if len(c.upper()) == 1} | {"\u0130"}
    # ASCII letters stay out: "s" against "ſ" is caught by the "ſ" on the other side
    return "".join(sorted(c for c in extra if not c.isascii()))


_LOWER_MISMATCH = re.compile("[" + re.escape(_lower_mismatches()) + "]")
