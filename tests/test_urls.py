import pytest

from bot.urls import canonical_url, story_key


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("HTTPS://WWW.SCMP.com/news/a?utm_source=rss_feed", "https://www.scmp.com/news/a"),
        ("https://www.scmp.com:443/news/a#comments", "https://www.scmp.com/news/a"),
        ("https://twitter.com/h/status/1?ref_src=twsrc%5Etfw", "https://twitter.com/h/status/1"),
        ("https://a.example/p?b=2&fbclid=X&a=1&utm_medium=social", "https://a.example/p?a=1&b=2"),
        ("https://a.example", "https://a.example/"),
        ("https://a.example/%ED%95%9C/", "https://a.example/%ED%95%9C/"),
        ("http://a.example:8080/x", "http://a.example:8080/x"),
        ("  https://a.example/x  ", "https://a.example/x"),
        ("not a link", "not a link"),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("https://ex\x01ample.com/a", "https://ex\x01ample.com/a"),
        ("https://example.com:99999/a", "https://example.com:99999/a"),
    ],
)
def test_canonical_url(link, expected):
    assert canonical_url(link) == expected


def test_story_key_prefers_a_real_guid():
    assert story_key("https://www.koreaboo.com/?p=1480001", "https://www.koreaboo.com/news/x/") == (
        "https://www.koreaboo.com/?p=1480001"
    )
    assert story_key("tag:soompi.com,2024:123", "https://x/") == "tag:soompi.com,2024:123"


def test_story_key_falls_back_to_the_canonical_link():
    assert story_key(None, "https://www.scmp.com/a?utm_source=rss_feed") == "https://www.scmp.com/a"
    assert story_key("   ", "https://www.scmp.com/a#x") == "https://www.scmp.com/a"


def test_url_guids_are_canonicalised_like_links():
    assert story_key("https://www.scmp.com/a?utm_source=rss_feed", "") == "https://www.scmp.com/a"
