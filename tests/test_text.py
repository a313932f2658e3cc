"""bot/text.py: HTML to clean text, boilerplate, summaries, Discord escaping and clean cutting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.parse import parse_feed
from bot.text import (
    clean_text,
    discord_len,
    escape_discord,
    html_to_text,
    is_boilerplate,
    one_line,
    repair_surrogate_refs,
    split_sentences,
    summarize,
    truncate,
)

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


@pytest.fixture(scope="module")
def koreaboo_content() -> str:
    return parse_feed((FEEDS / "koreaboo-style-v-iu.xml").read_bytes()).entries[0].content_html


def test_koreaboo_content_becomes_clean_paragraphs(koreaboo_content: str) -> None:
    text = html_to_text(koreaboo_content)
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == (
        "BTS‘s V is going viral for a behind-the-scenes clip with IU that makes one scene even more romantic."
    )
    assert "Netizens were soft AF seeing how the actual chemistry was created." in paragraphs
    assert "Your browser does not support video" not in text
    assert "@thv/Instagram" not in text  # photo credit
    assert "so taehyung" not in text and "pic.twitter.com" not in text  # embedded posts are not the writer's
    assert "Arguing" not in text  # a paragraph that is one link: "read next"
    assert "&#8217;" not in text and "<" not in text
    assert all(p.strip() == p and p for p in paragraphs)


@pytest.mark.parametrize(
    "line",
    [
        "Your browser does not support video.",
        "Your browser does not support the video tag.",
        "SEE ALSO: BTS’s V And IU Can’t Stop “Arguing” About The Most Unexpected Topic",
        "SEE ALSO",
        "READ MORE",
        "Read more: IU’s new album tops the charts",
        "Related Posts",
        "Related:",
        "Scroll to Top",
        "Share this:",
        "Share on Facebook",
        "Click to share on X (Opens in new window)",
        "Facebook Twitter Pinterest Email",
        "Like this:",
        "Loading...",
        "The post BTS’s V Is Going Viral appeared first on Koreaboo.",
        "BTS’s V | @thv/Instagram",
        "IU | EDAM Entertainment",
        "@thv/Instagram",
        "Photo: Yonhap",
        "Source: Naver",
        "Advertisement",
    ],
)
def test_boilerplate_lines(line: str) -> None:
    assert is_boilerplate(line)


@pytest.mark.parametrize(
    "line",
    [
        "You can read more behind the scenes below.",
        "Read more about it in the interview, she said, because the story is long.",
        "Related to the song, IU explained the meaning of the cube.",
        "V shared the photos on Instagram, and fans were thrilled.",
        "Share prices of HYBE rose 3 percent after the announcement.",
        "IU and V wowed fans with the video for “Love Wins All.”",
    ],
)
def test_prose_is_not_boilerplate(line: str) -> None:
    assert not is_boilerplate(line)


def test_excerpt_tail_and_wordpress_footer_removed() -> None:
    html = (
        "<p>IU’s vocals narrated a story of love, loss, and sacrifice. [&#8230;]</p>"
        '<p>The post <a href="https://k.example/a">IU story</a> appeared first on <a href="/">Koreaboo</a>.</p>'
    )
    assert html_to_text(html) == "IU’s vocals narrated a story of love, loss, and sacrifice."
    assert html_to_text("Plain text. [...]") == "Plain text."
    # a tail that cuts a sentence says so: the text goes on (the summary must not pass it off as whole)
    assert html_to_text("Plain text [...]") == "Plain text…"
    assert html_to_text("<p>she has promised, [&hellip;] Read more</p>") == "she has promised…"
    assert html_to_text("<p>“Love wins all.” [&#8230;]</p>") == "“Love wins all.”"


def test_scripts_styles_and_entities() -> None:
    html = "<script>alert('x')</script><style>p{}</style><p>Tom &amp; Jerry&nbsp;&hellip; <b>bold</b></p>"
    assert html_to_text(html) == "Tom & Jerry …  bold".replace("  ", " ")


def test_deeply_nested_hostile_html_does_not_crash() -> None:
    html = "<div>" * 20000 + "deep text" + "</div>" * 20000
    assert "deep text" in html_to_text(html)
    assert one_line("<b>" * 5000 + "title") == "title"


def test_one_line_and_clean_text_drop_controls_and_bidi() -> None:
    assert one_line("A\u202etxet\u202c <i>B</i>\n\tC \x1b[31mred\x1b[0m") == "Atxet B C [31mred[0m"
    assert "\x1b" not in clean_text("\x1b]0;title\x07 hi")
    assert one_line("IU &lt;3 &amp;") == "IU <3 &"
    assert one_line("") == ""


def test_split_sentences_respects_abbreviations_and_quotes() -> None:
    text = "Mr. Park met J. Y. Park in Jan. 2024. Then he left! IU sang “Love Wins All.” Fans cried."
    assert split_sentences(text) == [
        "Mr. Park met J. Y. Park in Jan. 2024.",
        "Then he left!",
        "IU sang “Love Wins All.”",
        "Fans cried.",
    ]


def test_summarize_keeps_whole_sentences(koreaboo_content: str) -> None:
    summary = summarize(html_to_text(koreaboo_content), 400)
    assert summary == (
        "BTS‘s V is going viral for a behind-the-scenes clip with IU that makes one scene even more romantic. "
        "Recently, IU and V wowed fans with the video for “Love Wins All.” "
        "IU’s vocals perfectly narrated a heartbreaking story of love, loss, and sacrifice."
    )
    short = summarize(html_to_text(koreaboo_content), 150)
    assert short.endswith("romantic.") and len(short) <= 150


def test_summarize_drops_unfinished_excerpt_sentence() -> None:
    assert summarize("First sentence here. The second one was cut by the feed and") == "First sentence here."
    only = summarize("A single sentence cut by the feed and [&#8230;]")
    assert only == "A single sentence cut by the feed and…"
    assert summarize("A single sentence cut by the feed and […]") == only
    assert summarize(html_to_text("<p>A single sentence cut by the feed and [&hellip;]</p>")) == only
    # without the feed's mark it is the whole text: nothing was left out, so no "…"
    assert summarize("A single sentence cut by the feed and") == "A single sentence cut by the feed and"


def test_summarize_cuts_a_long_first_sentence_at_a_word() -> None:
    text = "word " * 300 + "end."
    summary = summarize(text, 100)
    assert discord_len(summary) <= 100 and summary.endswith("…") and not summary.endswith(" …")
    assert summary[:-1].split()[-1] == "word"
    assert summarize("", 100) == "" and summarize("   \n\n ", 100) == ""


@pytest.mark.parametrize("limit", [1, 2, 5, 17, 50, 99, 256, 1024])
def test_truncate_never_exceeds_the_limit(limit: int) -> None:
    for text in ("word " * 400, "🥹" * 700, "a\\*" * 500, "x" * 3000, "한국어 문장입니다 " * 200):
        cut = truncate(text, limit)
        assert discord_len(cut) <= limit
        if limit >= 5:
            assert cut.endswith("…")
            body = cut[:-1]
            assert (len(body) - len(body.rstrip("\\"))) % 2 == 0  # no escape left dangling before "…"


def test_truncate_prefers_word_boundaries_and_keeps_short_text() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("Love wins all, and V sang to IU", 20) == "Love wins all, and…"
    assert truncate("🥹🥹🥹", 5) == "🥹🥹…"  # each emoji counts 2 (UTF-16)


def test_escape_discord_defuses_mentions() -> None:
    text = "@everyone @here @Everyone <@123456789012345678> <@!123> <@&987654321> <#555> </cmd:1>"
    escaped = escape_discord(text)
    assert not re.search(r"@(everyone|here)", escaped, re.IGNORECASE)
    assert not re.search(r"<[@#/]", escaped)
    assert "everyone" in escaped and "123456789012345678" in escaped  # still readable


def test_escape_discord_escapes_markdown_and_masked_links() -> None:
    escaped = escape_discord("**bold** __u__ ~~s~~ `code` ||spoiler|| [click](https://evil.example/x)")
    assert "**" not in escaped.replace("\\*", "")
    assert "\\[click\\](https://evil.example/x)" in escaped  # the bracket no longer opens a link
    assert "\\|\\|spoiler\\|\\|" in escaped and "\\`code\\`" in escaped
    lines = escape_discord("# Big\n> quote\n- item\n1. first\n-# small").split("\n")
    assert lines == ["\\# Big", "\\> quote", "\\- item", "1\\. first", "\\-# small"]


def test_escape_discord_keeps_urls_clickable() -> None:
    escaped = escape_discord("see https://www.soompi.com/article/1_2_3/iu_v and _this_")
    assert "https://www.soompi.com/article/1_2_3/iu_v" in escaped
    assert escaped.endswith("\\_this\\_")


def test_escape_discord_without_markdown_only_defuses_mentions() -> None:
    assert escape_discord("*Koreaboo* @everyone", markdown=False) == "*Koreaboo* @\u200beveryone"


# --- emoji WordPress turned into pictures, entities, sequences ----------------------------------------------

# wp_staticize_emoji, as WordPress writes emoji into content:encoded
FEED_EMOJI = (
    '<img src="https://s.w.org/images/core/emoji/15.0.3/72x72/{code}.png" alt="{alt}" class="wp-smiley" '
    'style="height: 1em; max-height: 1em;" />'
)
# wp-emoji-release.min.js, as a browser (and a saved page) has them
PAGE_EMOJI = (
    '<img draggable="false" role="img" class="emoji" alt="{alt}" '
    'src="https://s.w.org/images/core/emoji/15.0.3/svg/{code}.svg">'
)


@pytest.mark.parametrize("form", [FEED_EMOJI, PAGE_EMOJI], ids=["feed", "page"])
def test_wordpress_emoji_pictures_read_as_their_emoji_in_place(form: str) -> None:
    crying = form.format(code="1f62d", alt="😭")
    html = (
        f"<p>so cute {crying} i can&#8217;t</p>"
        f"<p>Fans cried{crying}{crying} over the {form.format(code='1f1f0-1f1f7', alt='🇰🇷')} stage, "
        f"and {form.format(code='1f469-200d-1f4bb', alt='👩‍💻')} editors too "
        f"{form.format(code='2764', alt='❤️')}</p>"
    )
    assert html_to_text(html) == (
        "so cute 😭 i can’t\n\nFans cried😭😭 over the 🇰🇷 stage, and 👩\u200d💻 editors too ❤️"
    )
    assert one_line(f"IU {crying} V") == "IU 😭 V"


def test_wordpress_emoji_picture_with_both_classes_from_the_issue() -> None:
    img = (
        '<img draggable="false" role="img" class="wp-smiley emoji" alt="😭" '
        'src="https://s.w.org/images/core/emoji/15.0.3/72x72/1f62d.png">'
    )
    assert html_to_text(f"<p>so cute {img} i can't</p>") == "so cute 😭 i can't"


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        # no alt: the file name is the code points
        ('<img class="emoji" src="https://s.w.org/images/core/emoji/15.0.3/72x72/1f62d.png">', "😭"),
        (
            '<img class="emoji" alt="" src="https://s.w.org/images/core/emoji/15.0.3/svg/1f1f0-1f1f7.svg">',
            "🇰🇷",
        ),
        ('<img src="https://s.w.org/images/core/emoji/15.0.3/72x72/1f469-200d-1f4bb.png">', "👩\u200d💻"),
        ('<img src="https://s.w.org/images/core/emoji/15.0.3/72x72/1faf6-1f3fb.png">', "🫶🏻"),
        # Twemoji names leave out the emoji-style selector outside ZWJ sequences: put back
        ('<img class="wp-smiley" src="https://s.w.org/images/core/emoji/15.0.3/72x72/2764.png">', "❤\ufe0f"),
        (
            '<img class="emoji" src="https://s.w.org/images/core/emoji/15.0.3/72x72/31-20e3.png">',
            "1\ufe0f\u20e3",
        ),
        (
            '<img src="https://s.w.org/images/core/emoji/15.0.3/72x72/2764-fe0f-200d-1f525.png">',
            "❤\ufe0f\u200d🔥",
        ),
        # other emoji CDNs and Twitter's own widget markup
        ('<img src="https://cdn.jsdelivr.net/gh/jdecked/twemoji@15.0.3/assets/72x72/1f430.png">', "🐰"),
        (
            '<img class="Emoji Emoji--forText" alt="🥹" src="https://abs.twimg.com/emoji/v2/72x72/1f979.png">',
            "🥹",
        ),
        # an old WordPress smiley keeps what the writer typed
        (
            '<img src="https://s.w.org/images/core/emoji/15.0.3/72x72/1f642.png" alt=":)" class="wp-smiley">',
            ":)",
        ),
        # an alt that describes rather than is the emoji: the file name wins
        ('<img class="emoji" alt="Loudly crying face" src="https://e.example/emoji/1f62d.png">', "😭"),
        # nothing readable: no stray text (no file name, no alt prose, no escape codes)
        ('<img class="emoji" alt="Loudly crying face" src="https://e.example/emoji/crying.png">', ""),
        ('<img class="wp-smiley" src="https://s.w.org/images/core/emoji/15.0.3/72x72/d83d.png">', ""),
        ('<img class="emoji" src="https://s.w.org/images/core/emoji/15.0.3/72x72/1b.png">', ""),
        ('<img class="emoji">', ""),
        # not an emoji: pictures never become text, whatever their alt says
        ('<img src="https://image.koreaboo.com/2024/01/v.jpg" alt="BTS’s V">', ""),
        ('<img src="https://image.koreaboo.com/2024/01/1f62d.png" alt="😭">', ""),
    ],
)
def test_emoji_picture_text(img: str, expected: str) -> None:
    assert html_to_text(f"<p>a {img} b</p>") == f"a {expected} b".replace("  ", " ")


def test_emoji_and_hangul_entities_and_sequences_survive() -> None:
    cases = {
        "<p>so cute &#x1F62D; i can&#39;t</p>": "so cute 😭 i can't",
        "<p>so cute &#128557; i can&#39;t</p>": "so cute 😭 i can't",
        # UTF-16 halves as references (some CMSs): one emoji, not "��"
        "<p>so cute &#55357;&#56877; i can't</p>": "so cute 😭 i can't",
        "<p>so cute &#xD83D;&#xDE2D; i can't</p>": "so cute 😭 i can't",
        "<p>IU &#xd83d;&#xdc9c;&#55357;&#56476;</p>": "IU 💜💜",
        # a lone half is dropped; a reference that only looks like one is a Hangul syllable, kept
        "<p>a &#xD83D; b &#56877;c</p>": "a b c",
        "<p>&#55000;&#54620;</p>": "훘한",
        "<p>❤&#xFE0F; 👩&zwj;💻 🏳️‍🌈 &#x1F1F0;&#x1F1F7; 1&#xFE0F;&#x20E3; 👍🏽</p>": (
            "❤️ 👩\u200d💻 🏳️\u200d🌈 🇰🇷 1️⃣ 👍🏽"
        ),
        "<p>&#xBDD4; &#xD0DC;&#xD615; 뷔</p>": "뷔 태형 뷔",
        # Hangul written as jamo (decomposed) comes out as the syllables
        "<p>\u1100\u1161\u11ab\u1103\u1161 &#x1112;&#x1161;&#x1102;&#x1175;</p>": "간다 하니",
    }
    for html, expected in cases.items():
        assert html_to_text(html) == expected, html
    assert one_line("&#55357;&#56877; IU &#x1F49C;") == "😭 IU 💜"


def test_repair_surrogate_refs_leaves_everything_else_as_written() -> None:
    text = "Tom &amp; Jerry &#8217; &#x2019; &#55000; &#xD7FF; &#xE000; &#123456;"
    assert repair_surrogate_refs(text) == text
    assert repair_surrogate_refs("&#55357;&#56877;&#55357;") == "&#x1F62D;"
    assert repair_surrogate_refs("&#56877;&#55357;&#56877;") == "&#x1F62D;"  # a low half first: dropped
    assert repair_surrogate_refs("&#553570;") == "&#553570;"  # six digits: no surrogate


# --- summaries: "…" only where something was left out -------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<b>x</b><br/>", "x"),
        ("<p>IU and V in the new MV</p><br><br>  \n", "IU and V in the new MV"),
        ("<p>IU and V in the new MV &nbsp;</p>", "IU and V in the new MV"),
        ("<p>Love wins all 💜</p>", "Love wins all 💜"),
        ("<p>IU and V wowed fans.</p><br/>", "IU and V wowed fans."),
        # a WordPress excerpt the feed cut mid-sentence: the cut shows; after a full stop nothing is missing
        (
            "<p>IU and V wowed fans with the video for [&#8230;]</p>",
            "IU and V wowed fans with the video for…",
        ),
        ("<p>IU and V wowed fans. [&#8230;]</p>", "IU and V wowed fans."),
        ("<p>IU and V wowed fans. Then, [&hellip;]</p>", "IU and V wowed fans."),
        ("<p>IU and V wowed fans…</p>", "IU and V wowed fans…"),
        # a first paragraph without a full stop and more after it: something was left out
        ("<p>Watch the new MV</p><p>IU and V wowed fans.</p>", "Watch the new MV…"),
    ],
)
def test_summary_ellipsis_only_when_text_was_cut(html: str, expected: str) -> None:
    assert summarize(html_to_text(html), 400) == expected


@pytest.mark.parametrize("limit", [40, 41, 100])
def test_summary_at_exactly_the_limit(limit: int) -> None:
    whole = ("x" * (limit - 1)).replace("x" * 10, "word word ")[: limit - 1] + "y"
    assert len(whole) == limit
    assert summarize(whole, limit) == whole  # exactly the limit, unfinished, whole: as it is
    assert summarize(whole[:-1] + ".", limit) == whole[:-1] + "."
    longer = summarize(whole + "z", limit)  # one over: cut at a word, with "…"
    assert discord_len(longer) <= limit and longer.endswith("…") and not longer.endswith(" …")
    more = summarize(whole + "\n\nAnother paragraph follows.", limit)  # fits, but text follows it
    assert discord_len(more) <= limit and more.endswith("…")
    two = "IU sang. " + "V" * (limit - 15) + " sang."  # two whole sentences, exactly the limit
    assert len(two) == limit and summarize(two, limit) == two
    assert summarize(two, limit - 1) == "IU sang."  # the second does not fit; the first ends cleanly
    emoji = "😭" * limit  # two UTF-16 units each: exactly twice the limit
    assert summarize(emoji, 2 * limit) == emoji
    assert summarize(emoji + "😭", 2 * limit).endswith("😭…")


# --- clean cuts never split what shows as one character -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("🇰🇷🇯🇵🇰🇷", 9, "🇰🇷🇯🇵…"),  # 🇰🇷🇯🇵🇰 would fit: half a flag
        ("🇰🇷🇯🇵🇰🇷", 7, "🇰🇷…"),
        ("so proud 👩‍💻👩‍💻", 17, "so proud 👩\u200d💻…"),  # not a woman left without her laptop
        ("so proud 👩‍💻👩‍💻", 14, "so proud…"),
        ("thumbs 👍🏽👍🏽", 12, "thumbs 👍🏽…"),  # not a thumb without its skin tone
        ("keycap 1️⃣2️⃣", 12, "keycap 1️⃣…"),
        ("❤️ ❤️ ❤️ ❤️ ❤️", 10, "❤️ ❤️ ❤️…"),  # a cut at a space keeps the emoji style selector
        ("Beyonce\u0301\u0301 Beyonce\u0301", 9, "Beyonc…"),
        ("\u1112\u1161\u11ab\u1100\u1173\u11af", 5, "\u1112\u1161\u11ab…"),  # old-style jamo: whole syllables
    ],
)
def test_truncate_keeps_emoji_and_letters_whole(text: str, limit: int, expected: str) -> None:
    cut = truncate(text, limit)
    assert cut == expected and discord_len(cut) <= limit


def test_truncate_of_a_hostile_cluster_still_cuts() -> None:
    zalgo = "Z" + "\u0301" * 5000
    cut = truncate(zalgo, 100)
    assert discord_len(cut) <= 100 and cut.endswith("…") and cut.startswith("Z")
