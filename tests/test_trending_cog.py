"""/trending over the real wire: the real bot (discord.py) against FakeDiscord, stories in its real store."""

from __future__ import annotations

from bot.clustering import assign_clusters
from bot.models import ArtistRef
from bot.store import Store
from bot.timeutil import utcnow
from tests.support.bot_harness import BotHarness
from tests.test_trending import make_story, v_iu_stories

SINGLES = [
    (
        "SEVENTEEN Appointed As UNESCO’s First Goodwill Ambassadors For Youth",
        ArtistRef("seventeen", "SEVENTEEN", None),
    ),
    (
        "aespa Confirms May Comeback With 1st Full-Length Album “Armageddon”",
        ArtistRef("aespa", "aespa", None),
    ),
    (
        "TWICE Become The First Foreign Female Artist To Perform At Nissan Stadium",
        ArtistRef("twice", "TWICE", None),
    ),
    (
        "Stray Kids’s Hyunjin Is Versace’s Newest Global Ambassador",
        ArtistRef("stray-kids", "Stray Kids", None),
    ),
    ("NCT 127 Announces Encore Concerts For Their Third World Tour", ArtistRef("nct-127", "NCT 127", None)),
    (
        "@everyone **FREE** <@123> [click](https://evil.example) IVE Wins On Music Bank",
        ArtistRef("ive", "IVE", None),
    ),
]


async def fill(store: Store) -> None:
    now = utcnow()
    cluster = v_iu_stories(now=now)
    await store.stories.add_many(cluster, source_id=None)
    await assign_clusters(store, cluster)
    singles = [
        make_story(f"single-{i}", "Soompi", "www.soompi.com", title, "A story.", 6 + i, [artist], now=now)
        for i, (title, artist) in enumerate(SINGLES)
    ]
    await store.stories.add_many(singles, source_id=None)
    await assign_clusters(store, singles)


def buttons(message: dict) -> dict[str, dict]:
    """A message's buttons by label ("Previous", "Next"): their custom ids carry the page's state."""
    return {c["label"]: c for row in message.get("components", []) for c in row["components"]}


async def test_trending_lists_ranks_with_pages_and_escapes_feed_text(bot_harness: BotHarness):
    h = bot_harness
    await fill(h.bot.store)
    interaction = await h.server.invoke("trending", {}, channel_id=h.channel("news").id)
    reply = await interaction.reply(timeout=10)
    assert not interaction.ephemeral
    assert interaction.callback["data"]["allowed_mentions"] == {"parse": []}
    assert reply["content"] == "**Trending in the last 24 h** · 1–5 of 7"
    first = reply["embeds"]
    assert len(first) == 5
    top = first[0]
    assert (
        top["title"].startswith("1. BTS’s V Is Going Viral")
        and top["url"] == "https://www.koreaboo.com/news/v-iu-0"
    )
    assert "**BTS, V (BTS), IU**" in top["description"]
    assert "3 outlets · 5 h ago" in top["description"]
    assert "On Koreaboo, Soompi, SCMP" in top["description"]
    assert [e["title"].split(".")[0] for e in first] == ["1", "2", "3", "4", "5"]
    assert all("1 outlet · " in e["description"] for e in first[1:])
    assert buttons(reply)["Previous"]["disabled"] and not buttons(reply)["Next"].get("disabled")

    # someone else's click is refused and changes nothing
    other = h.server.member(h.guild.id, "another fan")
    refused = await h.server.click(reply, buttons(reply)["Next"]["custom_id"], user_id=other.id)
    answer = await refused.reply(timeout=10)
    assert refused.ephemeral and "/trending" in answer["content"]

    page = await h.server.click(reply, buttons(reply)["Next"]["custom_id"])
    await page.response(timeout=10)
    shown = h.server.message(int(reply["id"]))
    assert shown["content"] == "**Trending in the last 24 h** · 6–7 of 7"
    titles = [e["title"] for e in shown["embeds"]]
    assert [t.split(".")[0] for t in titles] == ["6", "7"]
    hostile = next(e for e in shown["embeds"] if "Music Bank" in e["title"])
    assert "@everyone" not in hostile["title"].replace("@\u200beveryone", "")
    assert "<@123>" not in hostile["title"] and "\\*\\*FREE\\*\\*" in hostile["title"]
    assert buttons(shown)["Next"]["disabled"] and not buttons(shown)["Previous"].get("disabled")

    back = await h.server.click(shown, buttons(shown)["Previous"]["custom_id"])
    await back.response(timeout=10)
    assert h.server.message(int(reply["id"]))["embeds"][0]["title"] == top["title"]


async def test_trending_hours_and_an_empty_window(bot_harness: BotHarness):
    h = bot_harness
    empty = await h.server.invoke("trending", {})
    answer = await empty.reply(timeout=10)
    assert empty.ephemeral and "Nothing has been trending in the last 24 h" in answer["content"]
    await fill(h.bot.store)
    narrow = await h.server.invoke("trending", {"hours": 7})
    reply = await narrow.reply(timeout=10)
    # the V and IU cluster (5 h) and the single story from 6 h ago; no pages for two
    assert reply["content"] == "**Trending in the last 7 h**"
    assert len(reply["embeds"]) == 2 and not reply.get("components")
