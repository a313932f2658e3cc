"""bot/quotes.py: fan quotes from every embed platform, raw page HTML and feedparser-sanitized HTML alike."""

from __future__ import annotations

import io
from pathlib import Path

import feedparser
import pytest

from bot.models import Quote
from bot.parse import parse_feed
from bot.quotes import (
    MIN_SUBSTANCE_WORDS,
    extract_fan_quotes,
    posts_in_html,
    rank_quotes,
    score_quote,
    substance_words,
)

FIXTURES = Path(__file__).parent / "fixtures"
EMBEDS = FIXTURES / "pages" / "embeds"
KOREABOO_ARTISTS = ["V", "BTS", "Taehyung", "IU", "Jieun"]

DAPH = Quote(
    text="so taehyung was really singing to iu at this scene 🥹 her hand on his neck & their smiling faces.. "
    "yeah i’m never moving on from this",
    author="daph",
    handle="babiejieun",
    platform="twitter",
    url="https://twitter.com/babiejieun/status/1751962233445566778",
)
ONLYFTHV = Quote(
    text="You would think Taehyung was just pretending to sing in this scene when in fact he was singing for IU "
    "and his voice omg this is my new roman empire!",
    author="V",
    handle="onlyfthv",
    platform="twitter",
    url="https://twitter.com/onlyfthv/status/1751951122334455667",
)
TAEGUIDE = Quote(
    text="Taehyung was singing to IU here",
    author="TAE GUIDE",
    handle="taeguide",
    platform="twitter",
    url="https://twitter.com/taeguide/status/1751940012345678901",
)


def sanitized(html: str) -> str:
    """`html` as feedparser's sanitizer (on by default) leaves a WordPress content:encoded: scripts, iframes
    and data-* attributes gone. parse_feed turns it off, but stored or third-party HTML may have been through it."""
    content = feedparser.parse(io.BytesIO(wordpress_item(html))).entries[0].content[0].value
    assert "<script" not in content and "data-" not in content
    return content


def wordpress_item(html: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>t</title><item><title>x</title>'
        "<link>https://e.example/a</link><content:encoded><![CDATA["
        + html
        + "]]></content:encoded></item></channel></rss>"
    ).encode()


def koreaboo_raw_content() -> str:
    xml = (FIXTURES / "feeds" / "koreaboo-style-v-iu.xml").read_text(encoding="utf-8")
    return xml.split("<content:encoded><![CDATA[", 1)[1].split("]]></content:encoded>", 1)[0]


def without_score(quotes: list[Quote]) -> list[Quote]:
    return [Quote(q.text, q.author, q.handle, q.platform, q.url) for q in quotes]


@pytest.mark.parametrize("form", ["feedparser", "raw"])
def test_koreaboo_top_quotes(form: str) -> None:
    if form == "feedparser":
        html = (
            parse_feed((FIXTURES / "feeds" / "koreaboo-style-v-iu.xml").read_bytes()).entries[0].content_html
        )
    else:
        html = koreaboo_raw_content()
    quotes = extract_fan_quotes(html, artist_names=KOREABOO_ARTISTS)
    assert without_score(quotes) == [DAPH, ONLYFTHV, TAEGUIDE]
    assert quotes[0].score >= quotes[1].score > quotes[2].score > 0
    texts = " ".join(q.text for q in quotes)
    assert "t.co" not in texts and "pic.twitter.com" not in texts
    # lea⁷'s post is only a picture link; the TikTok caption is a song credit and hashtags.
    found = posts_in_html(html)
    assert "seokjinbit" not in {q.handle for q in found}
    tiktok = next(q for q in found if q.platform == "tiktok")
    assert substance_words(tiktok.text) == 0
    assert "taehyungtok" not in {q.handle for q in quotes}


EXPECTED: dict[str, Quote | None] = {
    "x-mdash-own-paragraph.html": Quote(
        "the way jungkook looked at the crowd during seven, he really loves army so much and it shows every single time",
        "jk files",
        "jkfiles97",
        "x",
        "https://x.com/jkfiles97/status/1880000000000000001",
    ),
    "x-literal-dash.html": Quote(
        "정국이 무대 보고 울었어요 진짜 최고의 가수 #JUNGKOOK",
        "꾹이 사랑해",
        "kookie_love_97",
        "x",
        "https://x.com/kookie_love_97/status/1880000000000000002",
    ),
    "bluesky.html": Quote(
        "NewJeans Hanni speaking fluent Vietnamese at the fan meeting made my whole week, she is so precious",
        "bunnies daily",
        "bunniesdaily.bsky.social",
        "bluesky",
        "https://bsky.app/profile/did:plc:abc123xyz456/post/3lbxq2kz5sc2x",
    ),
    "tiktok.html": Quote(
        "Felix trying the LALALALA challenge with Bang Chan and failing on purpose 😂 #straykids #felix",
        "stray_kids",
        "stray_kids",
        "tiktok",
        "https://www.tiktok.com/@stray_kids/video/7295627671319383328",
    ),
    "instagram-captioned.html": Quote(
        "Thank you for loving Love wins all, we made this one together with so much heart 💜",
        "이지금 IU",
        "dlwlrma",
        "instagram",
        "https://www.instagram.com/p/C2kLmN0pQrS/",
    ),
    "threads-with-text.html": Quote(
        "Jennie’s Mantra stage tonight was everything, the choreography alone deserves every award this year",
        "blinkforever_",
        "blinkforever_",
        "threads",
        "https://www.threads.com/@blinkforever_/post/DAbCdEfGhIj",
    ),
    "reddit.html": Quote(
        "IU's Love wins all behind the scenes shows V actually singing the whole time",
        "u/uaena_forever",
        "uaena_forever",
        "reddit",
        "https://www.reddit.com/r/kpop/comments/1adxk2q/ius_love_wins_all_behind_the_scenes_shows_v/",
    ),
    # No text to quote: a failed embed (bare status URL), media-only embeds, hashtags only, a comment embed.
    "twitter-failed-embed.html": None,
    "instagram-uncaptioned.html": None,
    "threads.html": None,
    "tiktok-hashtags-only.html": None,
    "reddit-comment.html": None,
    "not-quotes.html": None,
}


@pytest.mark.parametrize("form", ["raw", "sanitized", "parse_feed"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_platform(name: str, form: str) -> None:
    html = (EMBEDS / name).read_text(encoding="utf-8")
    if form == "sanitized":
        html = sanitized(html)
    elif form == "parse_feed":
        html = parse_feed(wordpress_item(html)).entries[0].content_html
    quotes = without_score(extract_fan_quotes(html))
    expected = EXPECTED[name]
    assert quotes == ([expected] if expected else [])


def test_not_quotes_are_recognised_for_what_they_are() -> None:
    html = (EMBEDS / "not-quotes.html").read_text(encoding="utf-8")
    found = posts_in_html(html)
    # Photo credits and the writer's pull-quotes are never candidates; the three tweets are, but lack substance.
    assert {q.handle for q in found} == {"emojionly", "linkonly"}
    assert all(substance_words(q.text) < MIN_SUBSTANCE_WORDS for q in found)


def test_sidebar_embeds_on_a_page_are_ignored() -> None:
    html = (FIXTURES / "pages" / "soompi-1638512wpp.html").read_text(encoding="utf-8")
    quotes = extract_fan_quotes(html, page=True)
    assert [q.handle for q in quotes] == ["uaenaarchive"]
    assert "sidebar_acct" in {q.handle for q in posts_in_html(html)}  # the whole page does have it


def test_every_platform_from_one_page_is_ranked_platform_neutral() -> None:
    html = (FIXTURES / "pages" / "soompi-1638530wpp.html").read_text(encoding="utf-8")
    quotes = extract_fan_quotes(html, artist_names=["Karina", "aespa"], page=True)
    assert [q.platform for q in quotes] == ["bluesky", "reddit", "tiktok"]
    assert all(q.score > 0 for q in quotes)


def quote(text: str, n: int) -> Quote:
    return Quote(text, f"fan{n}", f"fan{n}", "twitter", f"https://twitter.com/fan{n}/status/{n}")


def test_duplicates_and_near_duplicates_are_kept_once() -> None:
    text = "V singing to IU between takes is the cutest thing I have seen all year, I cannot stop watching"
    posts = [
        quote(text, 1),
        quote(text.upper() + "!!", 2),  # the same words shouted
        quote(text.replace("cutest", "sweetest"), 3),  # one word changed
        Quote(text, "fan1", "fan1", "twitter", "https://twitter.com/fan1/status/1"),  # the same post again
        quote("A different reaction entirely, about the set design and the cube scene in the music video", 5),
    ]
    ranked = rank_quotes(posts)
    assert [q.handle for q in ranked] == ["fan1", "fan5"]


def test_artist_mentions_and_length_decide_the_order() -> None:
    no_mention = quote("this scene is so beautiful and the way they look at each other makes me cry", 1)
    mention = quote("this scene is so beautiful and the way IU looks at him makes me cry every time", 2)
    short = quote("IU queen", 3)
    ranked = rank_quotes([no_mention, short, mention], artist_names=["IU"])
    assert [q.handle for q in ranked] == ["fan2", "fan1", "fan3"]
    assert rank_quotes([no_mention, mention])[0].handle == "fan1"  # no artists given: a tie, article order


def test_score_rules_as_documented() -> None:
    assert score_quote("one two three four") == 0.5  # 4 words: half the sweet spot's value
    assert score_quote(" ".join(["word"] * 20)) == 1.0
    assert score_quote(" ".join(["word"] * 45)) == pytest.approx(0.8)  # 20 words past the spot
    assert score_quote(" ".join(["word"] * 500)) == 0.4  # the floor
    tagged = score_quote("great stage tonight " + " ".join(f"#tag{i}" for i in range(9)))
    assert tagged == pytest.approx(3 / 8 - 0.3 * 9 / 12)


def test_at_most_three_quotes() -> None:
    topics = [
        "vocals",
        "dance break",
        "outfits",
        "stage set",
        "fan chant",
        "encore",
        "ending fairy",
        "rap",
        "visuals",
    ]
    words = [
        "stunning",
        "unreal",
        "iconic",
        "legendary",
        "chaotic",
        "perfect",
        "adorable",
        "fierce",
        "elegant",
    ]
    posts = [
        quote(f"the {topic} tonight were {word}, honestly {'and ' * i}i keep rewatching", i)
        for i, (topic, word) in enumerate(zip(topics, words, strict=True))
    ]
    assert len(rank_quotes(posts)) == 3
    assert len(rank_quotes(posts, limit=5)) == 5


def test_hostile_markup_does_not_break_extraction() -> None:
    tweet = (
        '<blockquote class="twitter-tweet"><p>{text}</p>&mdash; Fan (@fan{n}) '
        '<a href="https://twitter.com/fan{n}/status/{n}">Jan 1</a></blockquote>'
    )
    nested = (
        "<div>" * 5000
        + tweet.format(text="deep inside many divs, still a real reaction here", n=1)
        + "</div>" * 5000
    )
    many = "".join(
        tweet.format(text=f"reaction {i} with enough words to count as one", n=i) for i in range(2, 400)
    )
    unclosed = '<blockquote class="twitter-tweet"><p>never closed <a href="https://twitter.com/x/status/9">'
    quotes = extract_fan_quotes(nested + many + unclosed)
    assert len(quotes) == 3 and "fan1" in {q.handle for q in quotes}
    long_text = "word " * 2000
    [long_quote] = extract_fan_quotes(tweet.format(text=long_text, n=7))
    assert len(long_quote.text) <= 1000 and long_quote.text.endswith("…")


def test_status_links_are_canonical() -> None:
    html = (
        '<blockquote class="twitter-tweet"><p>mobile link and tracking parameters are dropped from it</p>'
        '&mdash; Fan (@Fan_1) <a href="https://mobile.twitter.com/Fan_1/status/123?ref_src=twsrc%5Etfw&amp;s=20">'
        "Jan 1</a></blockquote>"
    )
    [found] = extract_fan_quotes(html)
    assert found.url == "https://twitter.com/Fan_1/status/123" and found.platform == "twitter"
    web = html.replace("mobile.twitter.com/Fan_1/status/123", "x.com/i/web/status/456")
    [found] = extract_fan_quotes(web)
    assert (found.url, found.handle, found.platform) == ("https://x.com/Fan_1/status/456", "Fan_1", "x")


# Emoji WordPress made pictures of (wp_staticize_emoji in feeds, wp-emoji on pages) are what the fan wrote.
EMOJI_QUOTES = [
    Quote(
        "hanni wrote the whole letter in korean so cute 😭 i can’t",
        "pham hanni 🇻🇳",
        "hanniarchive",
        "twitter",
        "https://twitter.com/hanniarchive/status/1752300000000000001",
    ),
    Quote(
        "her handwriting is so neat ❤️\u200d🔥 she really practiced korean for us",
        "nj moments",
        "nj_moments",
        "twitter",
        "https://twitter.com/nj_moments/status/1752300000000000004",
    ),
    Quote(
        "하니야 편지 고마워 🐰 버니즈가 항상 옆에 있을게 🫶🏻",
        "버니 다이어리",
        "bunny_diary",
        "twitter",
        "https://twitter.com/bunny_diary/status/1752300000000000002",
    ),
]


@pytest.mark.parametrize("form", ["parse_feed", "feedparser"])
def test_emoji_pictures_in_embedded_tweets_stay_in_the_quote(form: str) -> None:
    data = (FIXTURES / "feeds" / "wordpress-emoji.xml").read_bytes()
    if form == "parse_feed":
        html = parse_feed(data).entries[0].content_html
    else:  # through feedparser's sanitizer, which keeps what emoji_of_image reads: class, alt and src
        html = feedparser.parse(io.BytesIO(data)).entries[0].content[0].value
        assert 'alt="😭" class="wp-smiley" src="https://s.w.org/images/core/emoji/' in html
    assert without_score(extract_fan_quotes(html)) == EMOJI_QUOTES
    found = posts_in_html(html)
    only_emoji = next(q for q in found if q.handle == "hannipics")  # 😭😭😭 ❤️‍🔥 and a picture: no quote
    assert only_emoji.text == "😭😭😭 ❤️\u200d🔥" and substance_words(only_emoji.text) == 0
    texts = " ".join(f"{q.text} {q.author}" for q in found)
    assert not any(junk in texts for junk in ("s.w.org", ".png", "1f62d", "wp-smiley", "1em"))


def test_emoji_pictures_on_a_page_as_the_browser_left_them() -> None:
    emoji = (
        '<img draggable="false" role="img" class="emoji" alt="{alt}" '
        'src="https://s.w.org/images/core/emoji/15.0.3/svg/{code}.svg">'
    )
    page = (
        '<html><body><div class="article-wrapper"><p>Fans reacted.</p>'
        '<blockquote class="twitter-tweet"><p lang="en" dir="ltr">so cute '
        + emoji.format(alt="😭", code="1f62d")
        + ' i can’t, hanni’s letter made my whole week <a href="https://t.co/x1">pic.twitter.com/x1</a></p>'
        "&mdash; bunny "
        + emoji.format(alt="🐰", code="1f430")
        + ' (@bunnyhanni) <a href="https://twitter.com/bunnyhanni/status/1752300000000000009">Jan 30</a>'
        "</blockquote></div></body></html>"
    )
    [quote] = extract_fan_quotes(page, page=True)
    assert quote.text == "so cute 😭 i can’t, hanni’s letter made my whole week"
    assert quote.author == "bunny 🐰" and quote.handle == "bunnyhanni"
