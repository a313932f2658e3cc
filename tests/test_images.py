"""bot/images.py: the lead image in order of trust, real pictures only, absolute http(s) URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.images import absolute_http_url, first_content_image, page_meta_image, pick_lead_image
from bot.models import FeedEntry
from bot.parse import parse_feed
from bot.text import parse_html

FIXTURES = Path(__file__).parent / "fixtures"
LINK = "https://www.soompi.com/article/1638544wpp/stray-kids-felix"


def entries(name: str) -> list[FeedEntry]:
    return parse_feed((FIXTURES / "feeds" / name).read_bytes()).entries


def page(name: str) -> str:
    return (FIXTURES / "pages" / name).read_text(encoding="utf-8")


def test_media_content_wins_over_the_content_image() -> None:
    [entry] = entries("koreaboo-style-v-iu.xml")
    assert "bts-v-instagram-1.jpg" in entry.content_html
    assert pick_lead_image(entry) == "https://image.koreaboo.com/2024/01/bts-v-iu-love-wins-all-thumb.jpg"


def test_enclosure_then_content_image() -> None:
    first, _ = entries("atom-style.xml")
    assert pick_lead_image(first) == "https://kpopblog.example.com/media/twice-one-spark.jpg"
    first.enclosure_images = []
    assert pick_lead_image(first) == "https://kpopblog.example.com/media/twice-one-spark-inline.jpg"


def test_content_image_comes_before_the_page() -> None:
    entry = FeedEntry(title="t", link=LINK, content_html='<p><img src="/a.jpg" width="800" height="600"></p>')
    assert pick_lead_image(entry, page_html=page("soompi-1638512wpp.html")) == "https://www.soompi.com/a.jpg"


def test_og_image_from_the_article_page() -> None:
    soompi = entries("soompi-style.xml")
    assert pick_lead_image(soompi[0]) is None  # an excerpt has no picture of its own
    assert pick_lead_image(soompi[0], page_html=page("soompi-1638512wpp.html")) == (
        "https://0.soompi.io/wp-content/uploads/2024/01/30051200/IU-V-Love-Wins-All-making.jpeg"
    )
    # A relative og:image is made absolute against the article link.
    assert pick_lead_image(soompi[1], page_html=page("soompi-1638530wpp.html")) == (
        "https://www.soompi.com/wp-content/uploads/2024/01/30034000/aespa-Karina-fanmeeting.jpg"
    )


def test_page_without_og_image_uses_its_lazy_loaded_body_image() -> None:
    felix = entries("soompi-style.xml")[2]
    assert pick_lead_image(felix, page_html=page("soompi-1638544wpp.html")) == (
        "https://0.soompi.io/wp-content/uploads/2024/01/30020500/Felix-brownies.jpg"
    )


def test_twitter_image_when_no_og_image() -> None:
    html = '<html><head><meta name="twitter:image" content="https://img.example/tw.jpg"></head><body></body></html>'
    assert page_meta_image(parse_html(html), base_url=LINK) == "https://img.example/tw.jpg"


@pytest.mark.parametrize(
    "img",
    [
        '<img src="https://e.example/pixel.gif" width="1" height="1">',
        '<img src="https://e.example/small.jpg" width="48" height="48">',
        '<img src="https://secure.gravatar.com/avatar/abc?s=96" width="96" height="96">',
        '<img src="https://e.example/u/1.jpg" class="avatar avatar-96 photo">',
        '<img src="https://s.w.org/images/core/emoji/14.0.0/72x72/1f49c.png" class="wp-smiley">',
        '<img src="https://e.example/emoji.png" class="emoji">',
        '<img draggable="false" role="img" class="emoji" alt="😭" '
        'src="https://s.w.org/images/core/emoji/15.0.3/svg/1f62d.svg">',
        '<img draggable="false" role="img" class="wp-smiley emoji" alt="😭" '
        'src="https://s.w.org/images/core/emoji/15.0.3/72x72/1f62d.png">',
        '<img src="https://s.w.org/images/core/emoji/15.0.3/72x72/1f62d.png" alt="😭">',  # no class, no size
        '<img src="https://cdn.jsdelivr.net/gh/jdecked/twemoji@15.0.3/assets/72x72/1f430.png" alt="🐰">',
        '<img class="Emoji Emoji--forText" alt="🥹" src="https://abs.twimg.com/emoji/v2/72x72/1f979.png">',
        '<img src="https://s0.wp.com/wp-content/mu-plugins/wpcom-smileys/twemoji/2/72x72/1f49c.png">',
        '<img src="https://cdn.example/pics/crying.png" class="emoji" width="800">',  # a class says emoji
        '<img src="https://e.example/2024/01/thumb-150x150.jpg" class="attachment-thumbnail size-thumbnail">',
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="800">',
        '<img src="javascript:alert(1)" width="800">',
        '<img src="https://e.example/icons/share.svg">',
        '<img src="https://stats.wordpress.com/b.gif?v=1">',
        '<img src="https://feeds.feedburner.com/~r/koreaboo/~4/abc">',
        '<img src="ftp://e.example/a.jpg">',
        "<img>",
    ],
)
def test_furniture_is_not_a_lead_image(img: str) -> None:
    assert first_content_image(f"<p>{img}</p>", base_url=LINK) is None
    real = '<img src="https://e.example/2024/01/real.jpg" width="1024" height="683">'
    assert first_content_image(f"<p>{img}</p>{real}", base_url=LINK) == "https://e.example/2024/01/real.jpg"


def test_featured_image_class_is_kept_and_embed_pictures_are_skipped() -> None:
    featured = (
        '<img src="/f.jpg" class="attachment-post-thumbnail size-post-thumbnail wp-post-image" width="1200">'
    )
    assert first_content_image(featured, base_url=LINK) == "https://www.soompi.com/f.jpg"
    embed = '<blockquote class="instagram-media"><img src="https://scontent.example/p.jpg" width="600"></blockquote>'
    assert first_content_image(embed, base_url=LINK) is None


def test_hostile_feed_gets_no_image() -> None:
    first = entries("hostile-content.xml")[0]
    assert pick_lead_image(first) is None  # javascript:, data: and a 1x1 pixel only


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("/a.jpg", "https://e.example/news/1", "https://e.example/a.jpg"),
        ("b.jpg", "https://e.example/news/1/", "https://e.example/news/1/b.jpg"),
        ("//cdn.example/c.jpg", "https://e.example/", "https://cdn.example/c.jpg"),
        ("  https://e.example/d.jpg ", None, "https://e.example/d.jpg"),
        ("/a.jpg", None, None),
        ("javascript:alert(1)", "https://e.example/", None),
        ("data:image/png;base64,AAAA", "https://e.example/", None),
        ("file:///etc/passwd", "https://e.example/", None),
        ("http://[bad", "https://e.example/", None),
        ("", "https://e.example/", None),
    ],
)
def test_absolute_http_url(url: str, base: str | None, expected: str | None) -> None:
    assert absolute_http_url(url, base) == expected


def test_a_feed_full_of_emoji_pictures_leads_with_its_photo() -> None:
    [entry] = entries("wordpress-emoji.xml")  # emoji pictures before the photo, no media:content
    assert entry.media_images == [] and entry.content_html.index("s.w.org") < entry.content_html.index(".jpg")
    assert pick_lead_image(entry) == "https://image.koreaboo.com/2024/01/newjeans-hanni-letter.jpg"
    only_emoji = FeedEntry(
        title="t",
        link=LINK,
        content_html=entry.content_html.split("<figure", 1)[0],  # the paragraphs with emoji, no photo
    )
    assert "wp-smiley" in only_emoji.content_html and pick_lead_image(only_emoji) is None
    page_html = (
        '<html><head></head><body><div class="article-wrapper"><p>so cute <img draggable="false" role="img" '
        'class="emoji" alt="😭" src="https://s.w.org/images/core/emoji/15.0.3/svg/1f62d.svg"></p>'
        '<p><img src="/2024/01/hanni.jpg" width="1200"></p></div></body></html>'
    )
    assert pick_lead_image(only_emoji, page_html=page_html) == "https://www.soompi.com/2024/01/hanni.jpg"
