"""The fast paths of enrichment give the answers of the plain ones: one parse per HTML shared by text, quotes and
image (bot/enrich.py, HtmlTrees), the mention pre-test of rank_quotes, the tagger's tokenizers and fold_quotes."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import bot.enrich
import bot.images
import bot.quotes
import bot.text
from bot.artists import ArtistIndex
from bot.artists import tagging as tagging_module
from bot.artists.names import _QUOTES, fold_quotes
from bot.enrich import _names, enrich_entry
from bot.images import pick_lead_image
from bot.models import FeedEntry
from bot.parse import parse_feed
from bot.quotes import _mention_matcher, posts_in_html, rank_quotes
from bot.text import HtmlTrees, html_to_text, summarize

FIXTURES = Path(__file__).parent / "fixtures"
FEEDS = [
    "koreaboo-style-v-iu.xml",
    "soompi-style.xml",
    "scmp-style.xml",
    "wordpress-emoji.xml",
    "hostile-content.xml",
]
PAGES = sorted((FIXTURES / "pages").rglob("*.html"))


def _cases() -> list[tuple[FeedEntry, str | None]]:
    """Every fixture item, alone and (one in three) with an article page, as the poller would hand them over."""
    cases: list[tuple[FeedEntry, str | None]] = []
    for name in FEEDS:
        for i, entry in enumerate(parse_feed((FIXTURES / "feeds" / name).read_bytes()).entries):
            cases.append((entry, None))
            if i % 3 == 0 and PAGES:
                cases.append((entry, PAGES[i % len(PAGES)].read_text(encoding="utf-8", errors="replace")))
    return cases


@pytest.fixture(scope="module")
def index() -> ArtistIndex:
    return ArtistIndex.load()


def test_each_html_of_a_story_is_parsed_once(monkeypatch: pytest.MonkeyPatch, index: ArtistIndex) -> None:
    parsed: list[str] = []
    real = bot.text.parse_html

    def counting(html: str):  # type: ignore[no-untyped-def]
        parsed.append(html)
        return real(html)

    for module in (bot.text, bot.quotes, bot.images, bot.enrich):
        monkeypatch.setattr(module, "parse_html", counting)
    checked = 0
    for entry, page in _cases():
        parsed.clear()
        enrich_entry(entry, source_name="Fixture", artists=index, page_html=page)
        big = [html for html in parsed if len(html) > 200]  # the content, excerpt and page (titles are short)
        assert len(big) == len(set(big)), f"{entry.link}: an HTML parsed {len(big) - len(set(big)) + 1} times"
        checked += bool(big)
    assert checked >= 10


def test_shared_trees_give_what_separate_parses_give(index: ArtistIndex) -> None:
    """Quotes, image, summary and artists of enrich_entry equal those of the public functions, each of which
    parses its HTML itself."""
    with_quotes = with_page = 0
    for entry, page in _cases():
        story = enrich_entry(entry, source_name="Fixture", artists=index, page_html=page)
        content = entry.content_html or ""
        posts = posts_in_html(content) if content else posts_in_html(entry.summary_html or "")
        if page:
            posts += posts_in_html(page, page=True)
        text = html_to_text(content) if content else ""
        plain = text or html_to_text(entry.summary_html or "")
        assert story.image == pick_lead_image(entry, page_html=page)
        if text:
            assert story.summary == summarize(text, bot.enrich.SUMMARY_CHARS)
            assert [a.id for a in story.artists] == [
                a.id for a in index.tag(story.title, text, entry.categories)
            ]
        elif not page:
            assert [a.id for a in story.artists] == [
                a.id for a in index.tag(story.title, plain, entry.categories)
            ]
        expected = rank_quotes(posts, artist_names=_names(story.artists, index)) if posts else []
        assert story.quotes == expected
        with_quotes += bool(story.quotes)
        with_page += page is not None
    assert with_quotes >= 3 and with_page >= 3


def test_html_trees_share_until_taken() -> None:
    trees = HtmlTrees()
    html = "<p>One <b>two</b></p><blockquote class='twitter-tweet'><p>three</p></blockquote>"
    first = trees.get(html)
    assert trees.get(html) is first
    assert trees.take(html) is first  # the reader that changes it takes it
    assert trees.get(html) is not first  # and a later reader gets a fresh parse
    assert html_to_text(html, trees=trees) == "One two"
    assert html_to_text(html, trees=trees) == html_to_text(html)


# --- rank_quotes: the mention test ------------------------------------------------------------------------------


def _one_alternation(names: list[str]) -> re.Pattern[str] | None:
    """The mention test as one regex over all names (how rank_quotes decided before the pre-test)."""
    patterns: list[str] = []
    for name in {n.strip() for n in names if n and n.strip()}:
        escaped = re.escape(name)
        if not name.isascii():
            patterns.append(f"(?i:{escaped})")
        elif len(name) == 1:
            patterns.append(rf"(?<![\w@#]){escaped}(?!\w)")
        else:
            patterns.append(rf"(?i:(?<![\w@#/]){escaped}(?!\w))")
    return re.compile("|".join(sorted(patterns, key=len, reverse=True))) if patterns else None


def test_mention_pre_test_agrees_with_one_alternation() -> None:
    rng = random.Random(12)
    names = [
        "V",
        "BTS",
        "IU",
        "Sana",
        "Kim Taehyung",
        "뷔",
        "김태형",
        "Stray Kids",
        "Σωτήρης",
        "Ilkin",
        "Ki",
        "aespa",
    ]
    # letters that str.lower() and re.IGNORECASE treat differently (long s, dotless/dotted i, Kelvin, sigma)
    tricky = ["ſ", "ı", "İ", "\u212a", "ς", "σ", "Σ", "µ", "μ"]
    pieces = [
        *names,
        *tricky,
        " ",
        "  ",
        "@",
        "#",
        "/",
        "-",
        "'s",
        "!",
        "😭",
        "🥹",
        "v",
        "bts",
        "SANA",
        "ilkin",
    ]
    pieces += ["vlive", "Rocky", "sana's", "ıu", "İlkin", "\u212ai", "ΣΩΤΉΡΗΣ", "stray  kids", "뷔가", "kıms"]
    checked = mentioned = 0
    for _ in range(400):
        chosen = rng.sample(names, rng.randint(0, 5))
        fast = _mention_matcher(chosen)
        slow = _one_alternation(chosen)
        assert (fast is None) == (slow is None)
        if fast is None or slow is None:
            continue
        for _ in range(25):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
            assert fast(text) == bool(slow.search(text)), (chosen, text)
            checked += 1
            mentioned += fast(text)
    assert checked > 5000 and 0.1 < mentioned / checked < 0.9  # both answers well exercised


# --- the tagger's tokenizers and quote folding -------------------------------------------------------------------


def test_tokenizer_shortcuts_split_as_the_full_pattern() -> None:
    rng = random.Random(3)
    pieces = [
        "BTS",
        "V",
        "d.o.",
        "D.O",
        "f(x)",
        "Rosé",
        "Ñandú",
        "ǅemal",
        "ȷ",
        "10:30",
        "a.b.c",
        "end.",
        ".",
        ":",
    ]
    pieces += [" ", "  ", "\n", "—", "–", "'s", "’", "😭", "\u00a0", "x", "ÿ", "ɏ", "Ȁ", "(G)I-DLE", "&", "★"]
    korean = ["뷔", "뷔가", "かわいい", "漢字", "ㅋㅋ"]
    for _ in range(3000):
        parts = [rng.choice(pieces) for _ in range(rng.randint(0, 12))]
        if rng.random() < 0.2:
            parts.insert(rng.randint(0, len(parts)), rng.choice(korean))
        text = "".join(parts)
        full = tagging_module._SPLIT.split(text)
        tokens = tagging_module._Tokens(text)
        assert (tokens.gaps, tokens.words) == (full[0::2], full[1::2]), text
        assert tokens.offsets[-1] == len(text)


def test_fold_quotes_straightens_every_apostrophe_and_nothing_else() -> None:
    rng = random.Random(8)
    alphabet = [*map(chr, _QUOTES), "'", '"', "“", "”", "a", "B", " ", "뷔", "😭", "\n"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        assert fold_quotes(text) == text.translate(_QUOTES)


_OLD_CREDIT = re.compile(
    r"(?im)^\s*(?:(?:♬|🎵|🎶|📸|📷|🎥|📹)[^#\n]*"
    r"|(?:song|music|sound|bgm|audio|track|original sound|source|src|video|vid|edit(?:ed)? by|a post shared by)"
    r"\s*(?:[-–—:|]|by\b)[^#\n]*)"
    r"|(?<!\w)(?:cr|creds?|credits?)\s*[:.]\s*@?\S+"
)


def _plain_substance(text: str) -> str:
    """What a post's substance was before the shortcuts: every regex over every post."""
    text = _OLD_CREDIT.sub(" ", text)
    if "t.co/" in text or "pic." in text:
        text = bot.quotes._MEDIA_LINK.sub(" ", text)
    text = bot.quotes._URL.sub(" ", text)
    return bot.quotes._HASHTAG.sub(" ", bot.quotes._MENTION.sub(" ", text))


def test_substance_shortcuts_leave_what_every_regex_leaves() -> None:
    rng = random.Random(21)
    pieces = [
        "cr: @x",
        "Cr.",
        "credits: a",
        "\n",
        " ",
        "♬ original sound - x",
        "Song – a",
        "song by",
        "incredible",
    ]
    pieces += [
        "HTTPS://x.co/a",
        "www.site.kr",
        "WWW.X",
        "http",
        "@fan_1",
        "a@b",
        "#BTS",
        "＃뷔",
        "##",
        "pic.twitter.com/x",
    ]
    pieces += [
        "https://t.co/abc",
        "T.CO/x",
        "video: y",
        "a post shared by z",
        "src:",
        "edit by",
        "😭",
        "word",
        "ſong:",
    ]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        assert bot.quotes._substance(text) == _plain_substance(text), text


def test_summarize_of_stripped_text_is_the_summary_of_the_text() -> None:
    """summarize(..., stripped=True) skips a second strip_boilerplate only where it would change nothing; the
    pieces include what makes a second pass differ: a "Share [...]" tail, a "[...] [...]" tail, placeholders."""
    rng = random.Random(34)
    pieces = [
        "Share",
        "[…]",
        "[...]",
        " [&hellip;]",
        "Read more",
        "SEE ALSO: x",
        "BTS’s V | @thv/Instagram",
        "\n",
    ]
    pieces += [
        "\n\n",
        "The idol smiled.",
        "Fans cried",
        " and",
        "Your browser does not support video.",
        "Tweet",
    ]
    pieces += ["your browser does not support ", "the video tag", "Photo by X", "…", "Email", " ", "IU sang!"]
    changed = 0
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        once = bot.text.strip_boilerplate(text)
        changed += bot.text.strip_boilerplate(once) != once
        assert summarize(once, 120, stripped=True) == summarize(once, 120), repr(text)
    assert changed  # texts that a second pass does change were among them
