"""bot/embed.py: the Discord embed as sent, every limit enforced by clean cutting, feed text inert."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.embed import (
    QUOTES_HEADING,
    build_story_embed,
    embed_length,
    message_payload,
    source_color,
)
from bot.enrich import enrich_entry
from bot.models import ArtistRef, Quote, Story
from bot.parse import parse_feed
from bot.text import discord_len

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def koreaboo_story() -> Story:
    [entry] = parse_feed((FEEDS / "koreaboo-style-v-iu.xml").read_bytes()).entries
    story = enrich_entry(entry, source_name="Koreaboo", artists=None)
    story.artists = [ArtistRef("bts-v", "V", "BTS"), ArtistRef("iu", "IU", None)]
    return story


def assert_within_discord_limits(embed: dict) -> None:
    assert discord_len(embed.get("title", "")) <= 256
    assert discord_len(embed.get("description", "")) <= 4096
    assert len(embed.get("fields", [])) <= 25
    for field in embed.get("fields", []):
        assert 1 <= discord_len(field["name"]) <= 256
        assert 1 <= discord_len(field["value"]) <= 1024
    assert discord_len(embed.get("footer", {}).get("text", "")) <= 2048
    assert discord_len(embed.get("author", {}).get("name", "")) <= 256
    assert embed_length(embed) <= 6000
    json.dumps(embed)  # plain JSON, ready to send


def test_koreaboo_embed() -> None:
    story = koreaboo_story()
    embed = build_story_embed(story)
    assert embed["title"] == story.title and embed["url"] == story.url
    assert embed["description"] == story.summary
    assert embed["image"] == {"url": "https://image.koreaboo.com/2024/01/bts-v-iu-love-wins-all-thumb.jpg"}
    assert embed["author"] == {"name": "Koreaboo", "url": "https://www.koreaboo.com/"}
    assert embed["footer"] == {"text": "V (BTS) · IU"}
    assert embed["timestamp"] == "2024-01-30T02:58:11+00:00"
    first, second, third = embed["fields"]
    assert first["name"] == QUOTES_HEADING and second["name"] == third["name"] == "\u200b"
    assert first["value"] == (
        "“so taehyung was really singing to iu at this scene 🥹 her hand on his neck & their smiling faces.. "
        "yeah i’m never moving on from this”\n"
        "— [daph (@babiejieun)](https://twitter.com/babiejieun/status/1751962233445566778) on Twitter"
    )
    assert third["value"].endswith(
        "— [TAE GUIDE (@taeguide)](https://twitter.com/taeguide/status/1751940012345678901) on Twitter"
    )
    assert_within_discord_limits(embed)


def test_colour_per_source() -> None:
    story = koreaboo_story()
    assert build_story_embed(story)["color"] == source_color("Koreaboo") == source_color("koreaboo")
    assert source_color("Koreaboo") != source_color("Soompi")
    assert 0 <= source_color("Soompi") <= 0xFFFFFF
    assert build_story_embed(story, color=0xE4007F)["color"] == 0xE4007F


def test_also_on() -> None:
    embed = build_story_embed(koreaboo_story(), also_on=["Soompi", "SCMP", "Koreaboo", "Soompi"])
    assert embed["description"].endswith("\n\n*Also on: Soompi, SCMP*")


def test_absurd_inputs_are_cut_to_every_limit() -> None:
    quotes = [
        Quote(
            ("quote " * 2000) + str(i), "A" * 500, "h" * 300, "twitter", f"https://twitter.com/h/status/{i}"
        )
        for i in range(40)
    ]
    story = Story(
        key="k",
        title="Title " * 5000,
        url="https://e.example/" + "a" * 100,
        source="Source " * 200,
        published=datetime(2024, 1, 30, tzinfo=UTC),
        summary="Sentence. " * 20000,
        image="https://e.example/i.jpg",
        quotes=quotes,
        artists=[ArtistRef(f"a{i}", "Name" * 50, "Group" * 50) for i in range(500)],
    )
    embed = build_story_embed(story, also_on=["Other " * 500] * 50)
    assert_within_discord_limits(embed)
    assert embed["title"].endswith("…") and embed["fields"]  # cut, not dropped wholesale
    for field in embed["fields"]:
        assert field["value"].startswith("“quote quote")


def test_emoji_heavy_text_counts_as_discord_may_count_it() -> None:
    story = Story(key="k", title="🥹" * 300, url="https://e.example/a", source="S", summary="💜" * 5000)
    embed = build_story_embed(story)
    assert_within_discord_limits(embed)
    assert discord_len(embed["title"]) <= 256 and len(embed["title"]) <= 128


HOSTILE = "@everyone @here <@123456789012345678> <@&987654321098765432> <#111> [steal](https://evil.example/x) **x**"


def test_feed_text_cannot_mention_or_inject_markdown() -> None:
    story = Story(
        key="k",
        title=HOSTILE,
        url="https://e.example/a",
        source=HOSTILE,
        summary=HOSTILE,
        quotes=[
            Quote(
                HOSTILE + " real words here", HOSTILE, "evil", "twitter", "https://twitter.com/evil/status/1"
            )
        ],
        artists=[ArtistRef("x", HOSTILE, HOSTILE)],
    )
    embed = build_story_embed(story, also_on=[HOSTILE])
    dumped = json.dumps(embed, ensure_ascii=False)
    assert not re.search(r"@(everyone|here)", dumped)
    assert not re.search(r"<[@#]", dumped)
    for text in (embed["title"], embed["description"], embed["fields"][0]["value"]):
        assert "](https://evil.example" not in text.replace("\\](https://evil.example", "")
        assert "**" not in text.replace("\\*", "")
    # Where Discord shows text verbatim, no backslashes are added.
    assert "\\" not in embed["author"]["name"] and "\\" not in embed["footer"]["text"]
    assert message_payload(embed) == {"embeds": [embed], "allowed_mentions": {"parse": []}}


@pytest.mark.parametrize(
    "bad", ["javascript:alert(1)", "/relative/path", "", "https://e.example/" + "a" * 3000, None]
)
def test_unsafe_urls_are_left_out(bad: str | None) -> None:
    quote = Quote("a real reaction from a fan about the stage", "fan", "fan", "twitter", bad or "")
    story = Story(key="k", title="T", url=bad or "", source="S", image=bad, quotes=[quote])
    embed = build_story_embed(story)
    assert "url" not in embed and "image" not in embed
    assert "](" not in embed["fields"][0]["value"] and "fan" in embed["fields"][0]["value"]


def test_minimal_story() -> None:
    embed = build_story_embed(Story(key="k", title="", url="https://e.example/a", source=""))
    assert embed["title"] == "Untitled story" and "fields" not in embed and "footer" not in embed
    assert "timestamp" not in embed and "author" not in embed and "description" not in embed
    assert_within_discord_limits(embed)


# --- the fixed words in the server's (or member's) language -------------------------------------------------

# what each locale's post says around the story: quotes heading, the "Also on" line, the credit's "on X",
# the footer's "+N more", the title of an untitled story
WORDS = {
    "en": ("What fans are saying", "*Also on: Soompi, SCMP*", ") on Twitter", "+2 more", "Untitled story"),
    "ko": ("팬들의 반응", "*함께 보도한 매체: Soompi, SCMP*", ") · Twitter", "외 2", "제목 없는 기사"),
    "ja": (
        "ファンの反応",
        "*ほかの掲載メディア: Soompi、SCMP*",
        ")（Twitter）",
        "ほか2",
        "タイトルなしのニュース",
    ),
    "es-419": (
        "Lo que dicen los fans",
        "*También en: Soompi, SCMP*",
        ") en Twitter",
        "+2 más",
        "Noticia sin título",
    ),
    "pt-BR": (
        "O que os fãs estão dizendo",
        "*Também em: Soompi, SCMP*",
        ") no Twitter",
        "+2",
        "Notícia sem título",
    ),
    "id": ("Apa kata fans", "*Juga di: Soompi, SCMP*", ") di Twitter", "+2 lainnya", "Berita tanpa judul"),
}


@pytest.mark.parametrize("locale", sorted(WORDS))
def test_the_fixed_words_follow_the_locale_and_the_story_stays_as_written(locale: str) -> None:
    heading, also_on, credit, more, untitled = WORDS[locale]
    story = koreaboo_story()
    story.artists = [ArtistRef(f"a{i}", f"Artist {i}", None) for i in range(10)]  # 8 shown, +2 more
    embed = build_story_embed(story, also_on=["Soompi", "SCMP"], locale=locale)
    english = build_story_embed(story, also_on=["Soompi", "SCMP"])
    assert embed["fields"][0]["name"] == heading
    assert embed["description"] == f"{story.summary}\n\n{also_on}"
    assert all(f["value"].endswith(credit) for f in embed["fields"])
    assert embed["footer"]["text"].endswith(" · " + more)
    # the story's own text is not translated: headline, link, summary, outlet, image, the quotes themselves
    for key in ("title", "url", "author", "image", "timestamp", "color"):
        assert embed[key] == english[key], key
    for field, original in zip(embed["fields"], english["fields"], strict=True):
        assert field["value"].split("\n— ")[0] == original["value"].split("\n— ")[0]
    assert_within_discord_limits(embed)
    assert (
        build_story_embed(Story(key="k", title="", url="https://e.example/a", source=""), locale=locale)[
            "title"
        ]
        == untitled
    )


@pytest.mark.parametrize("locale", sorted(WORDS))
def test_absurd_inputs_fit_discord_in_every_locale(locale: str) -> None:
    quotes = [
        Quote(("quote " * 2000) + str(i), "A" * 500, "h" * 300, "bluesky", f"https://bsky.app/p/{i}")
        for i in range(40)
    ]
    story = Story(
        key="k",
        title="Title " * 5000,
        url="https://e.example/" + "a" * 100,
        source="Source " * 200,
        summary="Sentence. " * 20000,
        quotes=quotes,
        artists=[ArtistRef(f"a{i}", "Name" * 50, "Group" * 50) for i in range(500)],
    )
    embed = build_story_embed(story, also_on=["Other " * 500] * 50, locale=locale)
    assert_within_discord_limits(embed)
    assert embed["fields"][0]["name"] == WORDS[locale][0]


def test_a_locale_without_a_file_gets_english_words() -> None:
    story = koreaboo_story()
    assert build_story_embed(story, locale="fr") == build_story_embed(story)
    assert build_story_embed(story, locale="es-ES")["fields"][0]["name"] == "Lo que dicen los fans"
