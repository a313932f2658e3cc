"""Text helpers the whole project uses: HTML to clean plain text, summaries, and Discord safety.

- `html_to_text`: HTML (hostile feed or page markup) to plain text, entities decoded, one paragraph per block,
  boilerplate removed (video placeholders, "SEE ALSO"/"READ MORE" lines, share lines, related-post blocks,
  photo credits such as "BTS’s V | @thv/Instagram", "The post … appeared first"). A WordPress "[…]" excerpt
  tail becomes "…" when it cuts a sentence and goes when it follows a finished one. Emoji that WordPress (or
  Twemoji) turned into <img> come back as the emoji, in their place (`emoji_of_image`).
- `one_line`: the same for short fields (titles, names): one line, single spaces.
- `summarize`: the first few sentences, cut cleanly at a sentence (else word) boundary; "…" only when cut.
- `escape_discord`: Discord markdown escaped, mentions (`@everyone`, `@here`, `<@id>`, `<@&id>`, `<#id>`) and
  masked links defused. `truncate`: clean cutting to a Discord limit, counted as Discord may count (UTF-16).
"""

from __future__ import annotations

import re
import unicodedata

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Elements whose text is never article text.
_DROP_SELECTOR = (
    "script, style, noscript, template, iframe, object, embed, video, audio, source, track, svg, canvas, form, "
    "button, input, select, textarea, figcaption, nav, head, title, meta, link"
)
# Embedded social posts and WordPress share/related widgets: part of the page, not of the writer's text.
EMBED_SELECTOR = (
    "blockquote.twitter-tweet, blockquote.twitter-video, blockquote.bluesky-embed, blockquote.tiktok-embed, "
    "blockquote.instagram-media, blockquote.text-post-media, blockquote.reddit-embed-bq, blockquote.reddit-card, "
    "figure.wp-block-embed, div.wp-block-embed"
)
_WIDGET_SELECTOR = (
    ".sharedaddy, .jp-relatedposts, .related-posts, .yarpp-related, .addtoany_share_save_container, "
    ".share-buttons, .social-share, .wp-block-latest-posts, .crp_related"
)
_DROP_NO_EMBEDS = f"{_DROP_SELECTOR}, {_WIDGET_SELECTOR}"
_DROP_ALL = f"{_DROP_NO_EMBEDS}, {EMBED_SELECTOR}"
_BLOCK_TAGS = frozenset(
    "p div br li ul ol h1 h2 h3 h4 h5 h6 blockquote figure section article header footer aside main tr table "
    "pre hr dd dt dl address details summary center".split()
)
_CLOSERS = "”\"’')]"  # closing quotes and brackets a sentence may end inside
_BLOCKS_AND_IMAGES = ",".join(sorted(_BLOCK_TAGS | {"img"}))  # one query: blocks get breaks, emoji get text

# A whole paragraph that is boilerplate (compared lower-cased, trailing punctuation ignored).
_BOILERPLATE_EXACT = frozenset(
    {
        "see also",
        "read more",
        "read also",
        "also read",
        "related",
        "related posts",
        "related articles",
        "related stories",
        "related news",
        "scroll to top",
        "back to top",
        "advertisement",
        "sponsored",
        "share",
        "share this",
        "share this article",
        "share this story",
        "share this post",
        "like this",
        "loading",
        "tweet",
        "pin it",
        "email",
        "print",
        "continue reading",
        "click to expand",
        "view this post on instagram",
        "watch the video below",
    }
)
_BOILERPLATE_LINE = re.compile(
    r"""^(?:
        your\ browser\ does\ not\ support\ (?:the\ )?(?:video|audio|html5\ video)(?:\ tag|\ element)?
      | the\ post\ .+\ appeared\ first\ on\ .+
      | (?:click\ to\ )?share\ (?:on|via|to)\ \w+.*
      | (?:share|tweet|pin\ it|email|print|whatsapp|facebook|twitter|reddit|linkedin|telegram|flipboard|pinterest|tumblr|x)
        (?:\s*[|·•,/]?\s*(?:share|tweet|pin\ it|email|print|whatsapp|facebook|twitter|reddit|linkedin|telegram
        |flipboard|pinterest|tumblr|x|copy\ link))+
      | continue\ reading\b.*
      | (?:photo|image|picture|video)s?(?:\ credits?)?\ *(?::|by\b).{0,80}
      | (?:credits?|sources?)\ *:.{0,80}
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# Link lines: uppercase lead-ins anywhere, title-case ones only with a separator ("Read more: …").
_LEAD_IN_LINE = re.compile(
    r"^(?:(?:SEE ALSO|READ MORE|READ ALSO|ALSO READ|RELATED|MORE ON THIS|WATCH)\b"
    r"|(?:See also|Read more|Read also|Also read|Related(?: posts| articles| stories| news)?|Watch)\s*[:：»›|–—-])"
)
# Photo credits: "BTS’s V | @thv/Instagram", "IU | EDAM Entertainment", "@thv/Instagram".
_CREDIT_LINE = re.compile(
    r"^(?:[^|｜\n]{1,100}\s[|｜]\s*[@\w][^|｜\n]{0,60}|@[\w.]{1,40}\s*/\s*[\w .]{1,30})$", re.UNICODE
)
_INLINE_NOISE = re.compile(
    r"your browser does not support (?:the )?(?:video|audio|html5 video)(?: tag| element)?\.?", re.IGNORECASE
)
# WordPress excerpt tails: "[…]", "[...]", "[&hellip;]" (already decoded), optionally "Read more".
_EXCERPT_TAIL = re.compile(
    r"\s*\[\s*(?:…|\.\.\.|&hellip;|&#8230;)\s*\]\s*(?:read more|continue reading)?\s*$", re.I
)

# Emoji served as pictures: WordPress's wp-emoji and the emoji its feeds carry (s.w.org/images/core/emoji/…),
# WordPress.com smileys, Twemoji and Twitter's own; old WordPress smilies (/smilies/icon_smile.gif).
EMOJI_IMAGE_URL = re.compile(r"/emoji/|/smilies/|wpcom-smileys|twemoji[./@]", re.IGNORECASE)
_EMOJI_CLASSES = frozenset({"emoji", "wp-smiley"})
# The file name of an emoji picture is its code points: 1f62d.png, 1f1f0-1f1f7.png, 1f469-200d-1f4bb.svg.
_EMOJI_FILE = re.compile(
    r"/([0-9a-f]{2,6}(?:-[0-9a-f]{2,6})*)\.(?:png|svg|gif|webp)(?:$|[?#])", re.IGNORECASE
)
# code points: the longest emoji (a family, a subdivision flag) has 7-10; a longer alt is a description
MAX_EMOJI_ALT = 16
# A UTF-16 surrogate written as a character reference: some CMSs write 😭 as "&#55357;&#56877;".
_SURROGATE_REF = re.compile(
    r"&#(?:[xX](?P<hex>[dD][89a-fA-F][0-9a-fA-F]{2})(?![0-9a-fA-F])|(?P<dec>5[5-7]\d{3})(?!\d));?"
)
_SURROGATE_REF_BYTES = re.compile(_SURROGATE_REF.pattern.encode("ascii"))

# Characters never worth keeping: controls (except newline/tab), bidi overrides that can disguise text.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """Unicode-normalised (NFC) text without control characters or bidi overrides, spaces collapsed,
    at most one blank line in a row."""
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text or ""))
    lines: list[str] = []
    blank = True  # also drops leading blank lines
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line:  # most lines of a page's text are empty (breaks around blocks): no split for them
            line = " ".join(line.split())  # str.split() knows every Unicode space (NBSP, ideographic…)
        if line:
            lines.append(line)
            blank = False
        elif not blank:
            lines.append("")
            blank = True
    return "\n".join(lines).strip()


def parse_html(html: str) -> LexborHTMLParser:
    """The project's one HTML parser (lexbor: fast, HTML5-correct, never raises on bad markup)."""
    html = html or ""
    return LexborHTMLParser(repair_surrogate_refs(html) if "&#" in html else html)


def repair_surrogate_refs(markup: str) -> str:
    """Surrogate pairs written as two character references ("&#55357;&#56877;") made one ("&#x1F62D;"), lone
    surrogate references dropped: HTML parsers read them as "��", and feedparser's fallback parser crashes."""
    matches = list(_SURROGATE_REF.finditer(markup))
    if not matches:
        return markup
    parts: list[str] = []
    last = 0
    values = [int(m["hex"], 16) if m["hex"] else int(m["dec"]) for m in matches]
    i = 0
    while i < len(matches):
        match, value = matches[i], values[i]
        parts.append(markup[last : match.start()])
        last = match.end()
        i += 1
        if not 0xD800 <= value <= 0xDFFF:  # "&#55000;" is no surrogate: kept as written
            parts.append(match.group())
        elif (
            value <= 0xDBFF
            and i < len(matches)
            and matches[i].start() == last
            and 0xDC00 <= values[i] <= 0xDFFF
        ):
            parts.append(f"&#x{0x10000 + ((value - 0xD800) << 10) + (values[i] - 0xDC00):X};")
            last = matches[i].end()
            i += 1
    parts.append(markup[last:])
    return "".join(parts)


def repair_surrogate_refs_in_bytes(data: bytes) -> bytes:
    """repair_surrogate_refs for undecoded markup in an ASCII-compatible encoding (the references are ASCII)."""
    if _SURROGATE_REF_BYTES.search(data) is None:
        return data
    return repair_surrogate_refs(data.decode("latin-1")).encode("latin-1")


def emoji_of_image(img: LexborNode) -> str | None:
    """The emoji an <img> stands for (its alt, else the code points in its file name), "" when it is an emoji
    picture that says nothing readable, None when it is no emoji picture."""
    attrs = img.attributes
    src = attrs.get("src") or ""
    classes = (attrs.get("class") or "").lower().split()
    if not (_EMOJI_CLASSES.intersection(classes) or EMOJI_IMAGE_URL.search(src)):
        return None
    alt = clean_text(attrs.get("alt") or "")
    if alt and len(alt) <= MAX_EMOJI_ALT and not any(ch.isspace() for ch in alt):
        return alt
    return _emoji_of_file_name(src)


def _emoji_of_file_name(src: str) -> str:
    match = _EMOJI_FILE.search(src)
    if match is None:
        return ""
    points = [int(part, 16) for part in match.group(1).split("-")]
    if any(p > 0x10FFFF or 0xD800 <= p <= 0xDFFF for p in points) or max(points) < 0xA9:
        return ""
    # Twemoji file names leave out the emoji-style selector (U+FE0F) outside ZWJ sequences: 2764.png is ❤️
    if len(points) == 1 and points[0] < 0x10000:
        points.append(0xFE0F)
    elif points[-1] == 0x20E3 and len(points) == 2:
        points.insert(1, 0xFE0F)
    text = "".join(map(chr, points))
    return "" if _CONTROL.search(text) else text


def article_body(tree: LexborHTMLParser) -> LexborNode | None:
    """The article's own content on a page: Soompi's div.article-wrapper, WordPress's .entry-content, <article>."""
    for selector in (
        "div.article-wrapper",
        "article .entry-content",
        ".entry-content",
        ".post-content",
        ".article-body",
        "article",
        "main",
    ):
        node = tree.css_first(selector)
        if node is not None:
            return node
    return tree.body


class HtmlTrees:
    """The parsed trees of one story's HTML (feed content, excerpt, article page), each HTML parsed once and
    shared by the readers that need it: quotes and the lead image read a tree, the text is read last and
    takes its tree (html_to_text changes it; a later reader of the same HTML gets a fresh parse)."""

    __slots__ = ("_trees",)

    def __init__(self) -> None:
        self._trees: dict[str, LexborHTMLParser] = {}

    def get(self, html: str) -> LexborHTMLParser:
        """The tree of `html`, parsed on first use; the caller must not change it."""
        tree = self._trees.get(html)
        if tree is None:
            tree = self._trees[html] = parse_html(html)
        return tree

    def take(self, html: str) -> LexborHTMLParser:
        """The tree of `html`, the caller's to change: it leaves the cache."""
        return self._trees.pop(html, None) or parse_html(html)


def html_to_text(
    html: str, *, drop_embeds: bool = True, node: LexborNode | None = None, trees: HtmlTrees | None = None
) -> str:
    """Plain text of HTML: paragraphs separated by blank lines, boilerplate removed, entities decoded.

    `drop_embeds` leaves out embedded social posts (their text is the fans', not the writer's: see quotes.py).
    `node`: an already parsed element to read instead of `html` (it is modified: pass a throwaway tree).
    `trees`: the story's parsed trees; the tree of `html` is taken from them (read it last)."""
    may_link = True
    if node is None:
        if not html or "<" not in html and "&" not in html:
            return strip_boilerplate(clean_text(html or ""))
        tree = trees.take(html) if trees is not None else parse_html(html)
        node = tree.body or tree.root
        if node is None:
            return ""
        may_link = "<a" in html or "<A" in html  # an <a> element needs an <a> tag in the source
    # one query for every unwanted element (selectors are compiled per query; none of them depends on
    # siblings, so removing the matches together leaves the same tree as removing them selector by selector)
    for bad in node.css(_DROP_ALL if drop_embeds else _DROP_NO_EMBEDS):
        bad.decompose()
    if may_link:
        for paragraph in node.css("p"):  # a paragraph that is one link is a "read next" line, not prose
            links = paragraph.css("a")
            if len(links) == 1 and paragraph.text(deep=True).strip() == links[0].text(deep=True).strip():
                paragraph.decompose()
    for block in node.css(_BLOCKS_AND_IMAGES):
        if block.tag == "img":
            emoji = emoji_of_image(block)
            if emoji:  # an emoji WordPress made a picture of: the emoji, in its place
                block.insert_before(emoji)
        elif block.tag == "br":  # a line break inside a paragraph, not a new paragraph
            block.insert_before("\n")
        else:
            block.insert_before("\n\n")
            block.insert_after("\n\n")
    return strip_boilerplate(clean_text(node.text(deep=True)))


def strip_boilerplate(text: str) -> str:
    """Drop boilerplate paragraphs and lines (see the module docstring) from plain text."""
    if "browser" in text.lower():
        text = _INLINE_NOISE.sub("", text)
    kept: list[str] = []
    for paragraph in text.split("\n\n"):
        lines = [line for line in paragraph.split("\n") if not is_boilerplate(line)]
        paragraph = "\n".join(lines).strip()
        if paragraph:
            kept.append(paragraph)
    result = "\n\n".join(kept)
    tail = _EXCERPT_TAIL.search(result) if "]" in result[-40:] else None
    if tail is None:
        return result
    head = result[: tail.start()].rstrip()
    # the feed cut the text: mid-sentence the cut shows as "…" (there is more); after a full stop, nothing
    return head if not head or ends_sentence(head) else head.rstrip(" ,;:–—-") + "…"


def _stripped_again_is_same(stripped: str) -> bool:
    """Whether strip_boilerplate(x) == x for an x that strip_boilerplate returned, known without the work:
    every line of x passed is_boilerplate already, except its last line when an excerpt tail was cut there
    (tested here); a second pass changes x only through that line, a "browser" placeholder left behind or
    another "[…]" tail (neither is in x)."""
    return (
        "]" not in stripped[-40:]
        and "browser" not in stripped.lower()
        and not (stripped and is_boilerplate(stripped[stripped.rfind("\n") + 1 :]))
    )


def ends_sentence(text: str) -> bool:
    """True when text ends like a finished sentence (".", "!", "?", "…", also inside closing quotes)."""
    return text.rstrip().rstrip(_CLOSERS).endswith((".", "!", "?", "…"))


def _trails_off(text: str) -> bool:
    return text.rstrip().rstrip(_CLOSERS).endswith(("…", "..."))


def is_boilerplate(line: str) -> bool:
    """True for one line of page furniture: a video placeholder, share line, link lead-in or photo credit."""
    line = line.strip()
    if not line:
        return True
    bare = line.lower().rstrip(" .:!…»›→")
    if bare in _BOILERPLATE_EXACT or bare.rstrip(".") in {"loading"}:
        return True
    if len(line) > 300:  # page furniture is short; long lines are prose
        return False
    if _BOILERPLATE_LINE.match(line.rstrip(" .:!…»›→")) or _LEAD_IN_LINE.match(line):
        return True
    # the cheap test first: most lines are prose that ends a sentence
    return not line.endswith((".", "!", "?")) and len(line.split()) <= 16 and bool(_CREDIT_LINE.match(line))


def one_line(html_or_text: str) -> str:
    """A short field (title, name) as one line of plain text: tags stripped, entities decoded, spaces single."""
    text = html_or_text or ""
    if "<" in text or "&" in text:
        tree = parse_html(text)
        node = tree.body or tree.root
        if node is not None:
            for bad in node.css(_DROP_SELECTOR):
                bad.decompose()
            for img in node.css("img"):
                emoji = emoji_of_image(img)
                if emoji:
                    img.insert_before(emoji)
            text = node.text(deep=True)
    return " ".join(clean_text(text).split())


# --- summaries ---------------------------------------------------------------------------------------------

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs feat ft no vol ep pt fig approx est dept inc ltd co corp "
    "jan feb mar apr jun jul aug sep sept oct nov dec mt gen col lt sgt".split()
)
_SENTENCE_END = re.compile(r"[.!?…]+[”\"’')\]]*(?=\s+)")


def split_sentences(text: str, *, limit: int | None = None) -> list[str]:
    """Sentences of plain text; paragraph breaks always end one. Abbreviations and initials do not.
    `limit`: stop once that many are found (a summary needs the first few, not the whole article)."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        start = 0
        for match in _SENTENCE_END.finditer(paragraph):
            end = match.end()
            rest = paragraph[end:].lstrip()
            if not rest:
                continue
            if match.group().startswith(".") and _is_abbreviation(paragraph[start : match.start()]):
                continue
            if rest[0].islower():  # "… omg. and then" is one run; a real sentence starts capitalised
                continue
            sentences.append(paragraph[start:end].strip())
            start = end
            if limit is not None and len(sentences) >= limit:
                return sentences
        tail = paragraph[start:].strip()
        if tail:
            sentences.append(tail)
        if limit is not None and len(sentences) >= limit:
            return sentences
    return sentences


def _is_abbreviation(before: str) -> bool:
    word = re.split(r"[\s(“\"‘']", before)[-1] if before else ""
    bare = word.rstrip(".").lower()
    if bare in _ABBREVIATIONS:
        return True
    return len(word) == 1 and word.isalpha() and word.isupper()  # an initial: "J. Y. Park", "V." is rare


def summarize(text: str, max_chars: int = 400, *, max_sentences: int = 3, stripped: bool = False) -> str:
    """The first few sentences of plain text, at most `max_chars`, cut cleanly.

    Whole sentences are kept while they fit; an unfinished last sentence (an excerpt cut by the feed, which
    html_to_text ends with "…") is left out when a complete one comes before it; a first sentence longer than
    the budget is cut at a word with "…". "…" is added only where text was left out: a whole text that ends
    without a full stop stays as it is.
    `stripped`: `text` is what strip_boilerplate (or html_to_text) returned; it is not stripped again when
    that would change nothing (`_stripped_again_is_same`)."""
    text = text or ""
    if not (stripped and _stripped_again_is_same(text)):
        text = strip_boilerplate(text)
    sentences = split_sentences(text, limit=max_sentences + 1)
    if not sentences:
        return ""
    chosen: list[str] = []
    used = 0
    for index, sentence in enumerate(sentences[:max_sentences]):
        extra = discord_len(sentence) + (1 if chosen else 0)
        if used + extra > max_chars:
            break
        # the text's last sentence trailing off ("promised…") is where the feed cut it
        trails_off = index == len(sentences) - 1 and _trails_off(sentence)
        complete = ends_sentence(sentence) and not trails_off
        if not complete and chosen:
            break
        chosen.append(sentence)
        used += extra
        if not complete:
            break
    if not chosen:
        return truncate(sentences[0], max_chars)
    summary = " ".join(chosen)
    if len(chosen) < len(sentences) and not ends_sentence(summary):  # cut mid-thought: say there is more
        summary = summary.rstrip(" ,;:–—-") + "…"
        if discord_len(summary) > max_chars:
            summary = truncate(summary, max_chars)
    return summary


# --- Discord safety -----------------------------------------------------------------------------------------

ZWSP = "\u200b"
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_MARKDOWN_CHARS = re.compile(r"([\\*_~`|\[\]])")
_LINE_START_MARKUP = re.compile(r"(?m)^(\s*)([>#+-])")
_NUMBERED_LIST = re.compile(r"(?m)^(\s*\d+)(\.\s)")
_MASS_MENTION = re.compile(r"@(everyone|here)\b", re.IGNORECASE)
_ANGLE_MENTION = re.compile(r"<(?=[@#/:]|a:|t:)", re.IGNORECASE)


def escape_discord(text: str, *, markdown: bool = True) -> str:
    """Feed text made inert for Discord: markdown escaped (links stay clickable), no working mentions.

    `@everyone`/`@here` get a zero-width space after the @, `<@id>`/`<@&id>`/`<#id>`/`</cmd:id>` one after
    the <, and `[x](url)` masked links lose their brackets' meaning. `markdown=False` (for the places Discord
    shows verbatim: author name, footer) only defuses mentions, so no backslashes show."""
    text = _CONTROL.sub("", text or "")
    if markdown:
        parts: list[str] = []
        last = 0
        for match in _URL.finditer(text):
            parts.append(_escape_markdown(text[last : match.start()]))
            parts.append(match.group())
            last = match.end()
        parts.append(_escape_markdown(text[last:]))
        text = "".join(parts)
        text = _LINE_START_MARKUP.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
        text = _NUMBERED_LIST.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    text = _MASS_MENTION.sub(lambda m: "@" + ZWSP + m.group(1), text)
    return _ANGLE_MENTION.sub("<" + ZWSP, text)


def _escape_markdown(text: str) -> str:
    return _MARKDOWN_CHARS.sub(r"\\\1", text)


def discord_len(text: str) -> int:
    """Length as Discord's limits may count it: UTF-16 code units (an emoji can count 2), never less than
    the number of code points, so a text within this length is within the limit either way."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


_TRAILING_JUNK = " \t\n,;:–—-([{“‘\"'/" + ZWSP + "\u200d"
MAX_CLUSTER = 32  # code points: a longer "character" (stacked combining marks) is hostile, cut anywhere


def truncate(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """`text` cut to at most `limit` (discord_len), at a word boundary where one is near, ending with `ellipsis`.

    Never leaves a dangling escape backslash or half a surrogate pair; text within the limit is unchanged."""
    text = text or ""
    if discord_len(text) <= limit:
        return text
    if limit <= discord_len(ellipsis):
        head = _prefix(text, max(limit, 0))
        return head[: _cluster_boundary(text, len(head))]
    budget = limit - discord_len(ellipsis)
    head = _prefix(text, budget)
    head = head[: _cluster_boundary(text, len(head))]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= budget * 0.6:  # a word boundary near the end; else a long word/URL/CJK run is cut hard
        head = head[:space]
    head = head.rstrip(_TRAILING_JUNK)
    # An odd run of trailing backslashes would escape the ellipsis: drop the unpaired one.
    trailing = len(head) - len(head.rstrip("\\"))
    if trailing % 2:
        head = head[:-1]
    return head + ellipsis


def _prefix(text: str, budget: int) -> str:
    """The longest prefix of `text` whose discord_len is at most `budget`."""
    if len(text) <= budget and discord_len(text) <= budget:
        return text
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > budget:
            return text[:i]
    return text


def _cluster_boundary(text: str, end: int) -> int:
    """`end` moved back so that text[:end] does not split a character as shown: an emoji from its skin tone,
    style selector, keycap or ZWJ partner, a flag's two halves, a letter from its combining marks or jamo."""
    cut = end
    while (
        0 < cut < len(text)
        and end - cut < MAX_CLUSTER
        and (_extends_cluster(text[cut]) or text[cut - 1] == "\u200d")
    ):
        cut -= 1
    if end - cut >= MAX_CLUSTER:
        return end
    if 0 < cut < len(text) and _is_regional_indicator(text[cut]):
        run = 0
        while run < cut and _is_regional_indicator(text[cut - 1 - run]):
            run += 1
        cut -= run % 2  # flags are pairs: an odd run before the cut would leave half a flag
    return cut


def _extends_cluster(ch: str) -> bool:
    point = ord(ch)
    return (
        ch in "\u200d\ufe0e\ufe0f\u20e3"
        or 0x1F3FB <= point <= 0x1F3FF  # skin tones
        or 0xE0020 <= point <= 0xE007F  # tag characters (subdivision flags)
        # Hangul vowel and final-consonant jamo: syllables NFC cannot compose (old Hangul) are sequences
        or 0x1160 <= point <= 0x11FF
        or 0xD7B0 <= point <= 0xD7FF
        or (point >= 0x300 and unicodedata.category(ch) in ("Mn", "Mc", "Me"))
    )


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF
