"""bot/parse.py on feeds shaped like the real sites, and on hostile ones."""

from __future__ import annotations

import random
import re
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.models import FeedEntry
from bot.parse import FeedError, parse_feed
from bot.text import html_to_text, one_line
from bot.urls import canonical_url, story_key

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def feed(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def test_koreaboo_wordpress_item() -> None:
    parsed = parse_feed(feed("koreaboo-style-v-iu.xml"), url="https://www.koreaboo.com/feed/")
    assert parsed.title == "Koreaboo" and parsed.warning is None
    [entry] = parsed.entries
    assert entry.title.startswith("BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU — Making")
    assert entry.link == "https://www.koreaboo.com/news/bts-v-viral-behind-scenes-iu-love-wins-all-romantic/"
    assert entry.guid == "https://www.koreaboo.com/?p=1480001"
    assert entry.guid_is_permalink is False
    assert entry.published == datetime(2024, 1, 30, 2, 58, 11, tzinfo=UTC)
    assert entry.categories == ["News", "BTS", "IU", "V"]
    assert entry.media_images == ["https://image.koreaboo.com/2024/01/bts-v-iu-love-wins-all-thumb.jpg"]
    assert entry.enclosure_images == []
    assert 'class="twitter-tweet" data-width="550"' in entry.content_html  # as the feed wrote it (raw)
    assert entry.summary_html.startswith("BTS&#8216;s V is going viral") and entry.summary_html.endswith(
        "[&#8230;]"
    )
    assert entry.author == "Staff Writer"


def test_soompi_excerpt_feed_numeric_entities_and_slug_tags() -> None:
    parsed = parse_feed(feed("soompi-style.xml"))
    assert len(parsed.entries) == 4
    first = parsed.entries[0]
    assert first.title == "IU And BTS’s V Reveal Behind-The-Scenes Of “Love Wins All” MV Filming"
    assert first.categories == ["Music", "bts", "iu", "v", "love-wins-all"]
    assert first.content_html == "" and "making film" in first.summary_html
    assert [e.published.hour for e in parsed.entries if e.published] == [5, 3, 2, 1]


def test_scmp_nonstandard_media_namespace_and_utm_guid() -> None:
    parsed = parse_feed(feed("scmp-style.xml"))
    first, second = parsed.entries
    assert first.media_images[0].endswith("/2024/01/30/iu-v-love-wins-all.jpg?itok=Xy12Ab3C")
    assert "768x768" in first.media_images[1]  # media:thumbnail after media:content
    assert first.guid.endswith("?utm_source=rss_feed") and first.guid_is_permalink
    assert story_key(first.guid, first.link) == canonical_url(first.link)  # same story from any SCMP feed
    assert first.content_html == ""  # media:description is the picture's caption, not the story
    assert second.title == "Jungkook’s solo album Golden sets a new Spotify record"  # not media:title
    assert first.published == datetime(2024, 1, 29, 23, 30, tzinfo=UTC)


def test_media_under_any_prefix_and_image_enclosures_only() -> None:
    doc = b"""<?xml version="1.0"?><rss version="2.0" xmlns:pic="urn:example:pictures"><channel><title>t</title>
    <item><title>a</title><link>https://e.example/a</link>
    <pic:content url="https://img.example/a.jpg" medium="image"/><pic:thumbnail url="/t.jpg"/>
    <enclosure url="https://e.example/podcast.mp3" type="audio/mpeg" length="1"/>
    <enclosure url="https://e.example/cover.png" type="image/png" length="1"/></item>
    <item><title>b</title><link>https://e.example/b</link>
    <enclosure url="https://e.example/b.webp" length="1"/>
    <media:content xmlns:media="http://search.yahoo.com/mrss/" url="https://e.example/clip.mp4" medium="video"/></item>
    </channel></rss>"""
    a, b = parse_feed(doc).entries
    assert a.media_images == ["https://img.example/a.jpg", "https://e.example/t.jpg"]
    assert a.enclosure_images == ["https://e.example/cover.png"]
    assert b.media_images == [] and b.enclosure_images == ["https://e.example/b.webp"]


def test_atom_feed() -> None:
    parsed = parse_feed(feed("atom-style.xml"))
    first, second = parsed.entries
    assert one_line(first.title) == "TWICE’s One Spark teaser is here"
    assert first.link == "https://kpopblog.example.com/2024/01/twice-one-spark-teaser"  # xml:base resolved
    assert first.guid == "tag:kpopblog.example.com,2024:post-5512" and not first.guid_is_permalink
    assert first.enclosure_images == ["https://kpopblog.example.com/media/twice-one-spark.jpg"]
    assert first.published == datetime(2024, 1, 30, 2, 2, tzinfo=UTC)  # +09:00 to UTC
    assert first.categories == ["TWICE", "Comeback"]
    assert (
        "twitter-tweet" in first.content_html
        and first.summary_html == "TWICE dropped the first teaser for One Spark."
    )
    assert second.guid_is_permalink and second.content_html == "" and "ZEROBASEONE" in second.summary_html
    assert second.published == datetime(2024, 1, 29, 20, 0, tzinfo=UTC)


def test_malformed_feed_keeps_what_can_be_read() -> None:
    parsed = parse_feed(feed("malformed.xml"), url="https://broken.example.com/feed")
    titles = [e.title for e in parsed.entries]
    assert titles == ["SEVENTEEN & BSS announce new single", "ENHYPEN tops the Oricon chart"]
    assert parsed.warning and "malformed feed" in parsed.warning and "broken.example.com" in parsed.warning


def test_windows_1252_declared_utf8() -> None:
    parsed = parse_feed(feed("windows-1252-declared-utf8.xml"))
    [entry] = parsed.entries
    assert entry.title == "IU’s “Love wins all” tops Melon — again"
    assert "résumé" in entry.summary_html and parsed.title == "Café K-pop"
    assert parsed.warning and "windows-1252" in parsed.warning


def test_one_stray_byte_does_not_garble_a_utf8_feed() -> None:
    parsed = parse_feed(feed("mixed-encoding.xml"))
    assert parsed.title == "Café K-pop ’ Daily"  # the stray 0x92 read as windows-1252
    assert parsed.entries[0].title == "IU’s “Love wins all” tops Melon — again"  # UTF-8 kept, no mojibake


def test_correctly_declared_latin1_and_a_lying_http_charset() -> None:
    doc = '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>Caf\xe9</title><item><title>R\xe9sum\xe9</title><link>https://e.example/r</link></item></channel></rss>'
    parsed = parse_feed(doc.encode("latin-1"))
    assert parsed.entries[0].title == "Résumé" and parsed.warning is None
    utf8 = doc.replace("ISO-8859-1", "UTF-8").encode("utf-8")
    lying = parse_feed(utf8, content_type="application/rss+xml; charset=ISO-8859-1")
    assert lying.entries[0].title == "Résumé"


def test_billion_laughs_is_not_expanded() -> None:
    tracemalloc.start()
    parsed = parse_feed(feed("billion-laughs.xml"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    [entry] = parsed.entries
    assert entry.title.startswith("BLACKPINK renew contracts") and len(entry.title) < 100
    assert "lollol" not in entry.summary_html
    assert peak < 50 * 1024 * 1024
    assert parsed.warning and "entity" in parsed.warning


def test_quadratic_blowup_is_not_expanded() -> None:
    # feedparser's own guard keeps "safe" entities: a 200 KB one referenced 20,000 times would be 4 GB.
    doc = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "' + "A" * 200_000 + '">\n]>\n'
        '<rss version="2.0"><channel><title>Q</title><item><title>Story</title>'
        "<link>https://e.example/q</link><description>"
        + "&a;" * 20_000
        + "</description></item></channel></rss>"
    ).encode()
    parsed = parse_feed(doc)  # expanded, this would not finish (pytest-timeout) or would exhaust memory
    assert parsed.entries[0].title == "Story"
    assert len(parsed.entries[0].summary_html) < 200_000


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "html-instead-of-feed.html",
            "is an HTML page, not a feed; the page names its feed: https://www.koreaboo.com/feed/",
        ),
        ("not-xml.txt", "is not valid XML and no story could be read"),
        ("empty-feed.xml", "has no items"),
    ],
)
def test_unreadable_feeds_say_why(name: str, message: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(feed(name), url=f"https://site.example/{name}")
    assert str(caught.value).startswith(f"https://site.example/{name} ")
    assert message in str(caught.value)


def test_empty_body() -> None:
    with pytest.raises(FeedError, match="is empty"):
        parse_feed(b"  \n", url="https://e.example/feed")


def test_a_body_naming_a_local_file_is_not_opened(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(feed("koreaboo-style-v-iu.xml"))
    with pytest.raises(FeedError):  # feedparser.parse(bytes) would open that path and read the file
        parse_feed(str(secret).encode(), url="https://e.example/feed")


def test_items_without_a_web_link() -> None:
    doc = b"""<rss version="2.0"><channel><title>t</title>
    <item><title>permalink guid</title><guid>https://e.example/story-1</guid></item>
    <item><title>script link</title><link>javascript:alert(1)</link></item>
    <item><title>nothing</title><guid isPermaLink="false">abc</guid></item>
    </channel></rss>"""
    parsed = parse_feed(doc, url="https://e.example/feed")
    assert [(e.title, e.link) for e in parsed.entries] == [("permalink guid", "https://e.example/story-1")]
    assert parsed.warning and "2 item(s) without a link were skipped" in parsed.warning
    with pytest.raises(FeedError, match="none with a link"):
        parse_feed(doc.replace(b"<guid>https://e.example/story-1</guid>", b""))


def test_relative_links_resolve_against_the_feed_url_and_future_dates_are_dropped() -> None:
    doc = b"""<rss version="2.0"><channel><title>t</title>
    <item><title>rel</title><link>/news/1</link><pubDate>Tue, 30 Jan 2024 02:58:11 +0000</pubDate></item>
    <item><title>future</title><link>https://e.example/2</link><pubDate>Sat, 01 Jan 2huh</pubDate></item>
    <item><title>far future</title><link>https://e.example/3</link><pubDate>Fri, 01 Jan 2100 00:00:00 +0000</pubDate></item>
    </channel></rss>"""
    first, second, third = parse_feed(doc, url="https://e.example/feed/").entries
    assert first.link == "https://e.example/news/1" and first.published is not None
    assert second.published is None and third.published is None


def test_hostile_feed_parses_and_keeps_no_unsafe_link() -> None:
    parsed = parse_feed(feed("hostile-content.xml"), url="https://hostile.example.com/feed")
    assert len(parsed.entries) == 3  # the javascript: item is skipped
    first = parsed.entries[0]
    assert first.link == "https://hostile.example.com/2024/01/free-nitro"
    assert (
        "<script>" in first.content_html
    )  # raw, as documented: read it through bot/text.py, never render it
    assert first.media_images == []  # media:content url="javascript:…" is no image


# The reasons FeedError gives (bot/parse.py), each after the feed's name.
FEED_ERROR_REASONS = re.compile(
    r"^https://e\.example/feed (?:is empty|is an HTML page, not a feed|is not valid XML and no story could be read"
    r"|could not be parsed as a feed|is not an RSS or Atom feed|has items but none with a link|has no items)"
)
ITEM_START = re.compile(rb"<(?:item|entry)(?![\w:.-])", re.IGNORECASE)  # "<item\xaf" still opens an item
ITEM_END = re.compile(rb"</(?:item|entry)\s*>", re.IGNORECASE)


def damaged_copies(rng: random.Random, data: bytes) -> list[tuple[bytes, int]]:
    """Cut-off and byte-flipped copies of `data`, each with the offset of its first damaged byte."""
    cases = [(data[:cut], cut) for cut in sorted(rng.sample(range(1, len(data)), min(12, len(data) - 1)))]
    for _ in range(6):  # a few random byte flips
        mangled = bytearray(data)
        flipped = [rng.randrange(len(mangled)) for _ in range(20)]
        for at in flipped:
            mangled[at] = rng.randrange(256)
        cases.append((bytes(mangled), min(flipped)))
    return cases


def items_before(data: bytes, entries: list[FeedEntry], offset: int) -> list[tuple[str, str]]:
    """(link, title) of the whole feed's entries whose <item>/<entry> closes before `offset`."""
    spans = [
        data[start.start() : end.end()]
        for start, end in zip(ITEM_START.finditer(data), ITEM_END.finditer(data), strict=False)
        if end.end() <= offset
    ]
    kept = []
    for entry in entries:  # an entry's item is the one naming its link's last path segment
        slug = entry.link.rstrip("/").rsplit("/", 1)[-1].encode()
        if any(slug in span for span in spans):
            kept.append((entry.link, entry.title))
    return kept


def test_truncated_and_mangled_feeds_keep_every_item_before_the_damage() -> None:
    """Whatever a cut or a flipped byte does after it, every item that ends before the first damaged byte is
    read as in the whole feed, in order; nothing raises but FeedError, which says why; what is read reaches an
    embed. A feed that cannot be read whole cannot be read damaged either."""
    from bot.embed import build_story_embed
    from bot.enrich import enrich_entry

    rng = random.Random(1234)
    checked_items = 0
    for path in sorted(FEEDS.iterdir()):
        data = path.read_bytes()[:60_000]
        try:
            whole: list[FeedEntry] | None = parse_feed(data, url="https://e.example/feed").entries
        except FeedError:
            whole = None
        for case, first_damage in damaged_copies(rng, data):
            where = f"{path.name} damaged from byte {first_damage}"
            expected = items_before(data, whole, first_damage) if whole else []
            try:
                parsed = parse_feed(case, url="https://e.example/feed")
            except FeedError as error:
                assert not expected, f"{where}: {expected} lost to {error}"
                assert FEED_ERROR_REASONS.match(str(error)), f"{where}: {error}"
                continue
            assert whole is not None, f"{where}: an unreadable feed became readable"
            read = [(entry.link, entry.title) for entry in parsed.entries]
            assert read[: len(expected)] == expected, where
            assert len(read) <= len(ITEM_START.findall(case)), where  # no item made up
            checked_items += len(expected)
            for entry in parsed.entries:  # and what was read goes all the way to an embed
                assert entry.link.startswith(("http://", "https://")), where
                embed = build_story_embed(enrich_entry(entry, source_name="E", artists=None))
                assert embed["title"] and embed.get("url", "https://").startswith("https://"), where
    assert checked_items >= 30  # the damage left whole items to check, so a parse that loses them fails


def test_emoji_written_as_utf16_halves_do_not_cost_the_feed() -> None:
    # 💜 as "&#55357;&#56476;": feedparser's fallback parser crashed on it and the whole feed was lost
    doc = """<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t &#xD83D;&#xDC9C;</title>
    <item><title>IU &#55357;&#56476; V</title><link>https://e.example/a</link>
    <description>so cute &amp;#55357;&amp;#56877; i can&amp;#8217;t</description></item>
    <item><title>half &#xD83D; an emoji</title><link>https://e.example/b</link>
    <description><![CDATA[<p>so cute &#xD83D;&#xDE2D; 하니</p>]]></description></item>
    </channel></rss>""".encode()
    parsed = parse_feed(doc, url="https://e.example/feed")
    first, second = parsed.entries
    assert parsed.title == "t 💜" and first.title == "IU 💜 V" and one_line(second.title) == "half an emoji"
    assert html_to_text(first.summary_html) == "so cute 😭 i can’t"
    assert html_to_text(second.summary_html) == "so cute 😭 하니"


def test_nul_bytes_and_utf16() -> None:
    doc = '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title><item><title>IU’s tour</title><link>https://e.example/a</link></item></channel></rss>'
    with_nuls = doc.encode().replace(b"<item>", b"<item>\x00\x00")
    assert parse_feed(with_nuls).entries[0].title == "IU’s tour"
    utf16 = doc.replace("UTF-8", "UTF-16").encode("utf-16")  # with its BOM
    assert parse_feed(utf16).entries[0].title == "IU’s tour"
