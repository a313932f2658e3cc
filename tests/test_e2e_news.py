"""/news over the real wire: the latest stories about an artist, by any name, with Previous/Next buttons."""

from __future__ import annotations

from datetime import timedelta

from bot.timeutil import utcnow
from tests.support.world import V_IU_LINK, v_iu_feed, world


def buttons(message: dict) -> dict[str, dict]:
    """A message's buttons by label ("Previous", "Next"): their custom ids carry the page's state."""
    return {c["label"]: c for row in message.get("components", []) for c in row["components"]}


async def test_news_answers_with_embeds_newest_first_and_pages(tmp_path):
    async with world(tmp_path) as w:
        # the start-up feed (3 stories about V and IU) plus Koreaboo's V and IU story, the newest
        w.publish(v_iu_feed(published=utcnow() - timedelta(minutes=1)))
        await w.polled()
        choices = await w.server.autocomplete("news", {"artist": "taehyung"}, focused="artist")
        assert choices[0]["name"] == "V (BTS)" and len(choices) <= 25

        interaction = await w.server.invoke("news", {"artist": choices[0]["value"], "count": 2})
        reply = await interaction.reply(timeout=10)
        assert not interaction.ephemeral
        assert "V (BTS)" in reply["content"] and "1–2 of 4" in reply["content"]
        first_page = reply["embeds"]
        assert len(first_page) == 2
        assert first_page[0]["url"] == V_IU_LINK  # newest first
        assert all(e["title"] and e["url"].startswith("https://") and e.get("author") for e in first_page)
        assert first_page[0]["image"]["url"].startswith("https://")
        assert buttons(reply)["Previous"]["disabled"] and not buttons(reply)["Next"].get("disabled")
        assert all(b["custom_id"].startswith("news:") for b in buttons(reply).values())

        # someone else's click is refused, politely, and changes nothing
        other = w.server.member(w.h.guild.id, "other fan")
        refused = await w.server.click(reply, buttons(reply)["Next"]["custom_id"], user_id=other.id)
        answer = await refused.reply(timeout=10)
        assert refused.ephemeral and "/news" in answer["content"]

        page = await w.server.click(reply, buttons(reply)["Next"]["custom_id"])
        await page.response(timeout=10)
        shown = w.server.message(int(reply["id"]))
        assert "3–4 of 4" in shown["content"]
        urls = [e["url"] for e in shown["embeds"]]
        assert len(urls) == 2 and not set(urls) & {e["url"] for e in first_page}
        assert buttons(shown)["Next"]["disabled"] and not buttons(shown)["Previous"].get("disabled")

        # by another of his names, in Hangul: the same stories
        reply = await (await w.server.invoke("news", {"artist": "뷔"})).reply(timeout=10)
        assert reply["embeds"][0]["url"] == V_IU_LINK and "V (BTS)" in reply["content"]


async def test_news_without_a_match_is_friendly(tmp_path):
    async with world(tmp_path) as w:
        interaction = await w.server.invoke("news", {"artist": "Wonyoung"})  # known, but no story yet
        reply = await interaction.reply(timeout=10)
        assert interaction.ephemeral and "No stories about" in reply["content"] and "IVE" in reply["content"]
        interaction = await w.server.invoke("news", {"artist": 'zzq "(*'})  # nobody, and hostile to FTS
        reply = await interaction.reply(timeout=10)
        assert interaction.ephemeral and "found nothing" in reply["content"]
        assert "embeds" not in reply or not reply["embeds"]
