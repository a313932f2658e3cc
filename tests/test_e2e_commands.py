"""The subscription commands over the real wire: who may use them, what they refuse and why, what they show."""

from __future__ import annotations

import pytest

from tests.support.discord_server import InvocationRefused, Permission
from tests.support.world import world


async def test_a_plain_member_cannot_subscribe(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        fan = w.server.member(w.h.guild.id, "fan")  # @everyone's permissions only
        with pytest.raises(InvocationRefused):  # Discord does not even show them the command
            await w.command("subscribe", {"channel": news.id}, user_id=fan.id)
        # a server that handed the command to everyone in its Integrations settings: the bot still checks
        for name, options in (("subscribe", {"channel": news.id}), ("unsubscribe", {"channel": news.id})):
            reply = await w.command(name, options, user_id=fan.id, respect_default_permissions=False)
            assert reply["_ephemeral"] and "Manage Server" in reply["content"]
        reply = await w.command("subscriptions", user_id=fan.id, respect_default_permissions=False)
        assert "Manage Server" in reply["content"]
        assert await w.store.subscriptions.list() == []
        # a moderator with Manage Server (not the owner) may
        mod = w.server.member(w.h.guild.id, "mod", permissions=Permission.MANAGE_GUILD)
        assert "Done" in await w.subscribe(news, user_id=mod.id)
        [sub] = await w.store.subscriptions.list()
        assert sub.created_by == mod.id and sub.guild_id == w.h.guild.id


@pytest.mark.parametrize(
    ("send", "embed", "missing"), [(False, True, "Send Messages"), (True, False, "Embed Links")]
)
async def test_subscribe_refuses_a_channel_the_bot_cannot_post_in(tmp_path, send, embed, missing):
    async with world(tmp_path) as w:
        quiet = w.add_channel("quiet", bot_can_send=send, bot_can_embed=embed)
        await w.server.wait_for(lambda: w.bot.get_channel(quiet.id) is not None, 5, what="CHANNEL_CREATE")
        reply = await w.command("subscribe", {"channel": quiet.id})
        assert reply["_ephemeral"]
        assert "cannot post" in reply["content"] and missing in reply["content"]
        assert await w.store.subscriptions.list() == []


async def test_subscribe_with_artist_and_source_then_unsubscribe(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        choices = await w.server.autocomplete(
            "subscribe", {"channel": news.id, "artist": "taehyung"}, focused="artist"
        )
        assert choices and choices[0]["name"] == "V (BTS)"
        assert len(choices) <= 25
        sources = await w.server.autocomplete(
            "subscribe", {"channel": news.id, "source": "korea"}, focused="source"
        )
        assert [c["name"] for c in sources] == ["Koreaboo"]
        text = await w.subscribe(news, artist=choices[0]["value"], source=sources[0]["value"])
        assert "Done" in text and "V (BTS)" in text and "Koreaboo" in text
        assert "already" in await w.subscribe(news, artist="V", source="koreaboo")  # typed names work too
        text = await w.subscribe(news, artist="V", source="Koreaboo", only_trending=True)
        assert "Updated" in text and "trending" in text
        reply = await w.command("subscriptions")
        listing = reply["embeds"][0]["description"]
        assert "V (BTS)" in listing and "Koreaboo" in listing and "no post yet" in listing
        # unknown names are refused with suggestions
        text = (await w.command("subscribe", {"channel": news.id, "artist": "Taehyng"}))["content"]
        assert "Done" in text and "V (BTS)" in text  # a small typo still finds him
        text = (await w.command("subscribe", {"channel": news.id, "artist": "Zzqxv Nonexistent"}))["content"]
        assert "don't know an artist" in text
        text = (await w.command("subscribe", {"channel": news.id, "source": "Nowhere Weekly"}))["content"]
        assert "don't know a source" in text and "Koreaboo" in text
        text = (await w.command("unsubscribe", {"channel": news.id, "artist": "IU"}))["content"]
        assert "no subscription" in text
        text = (await w.command("unsubscribe", {"channel": news.id}))["content"]
        assert "Stopped" in text
        assert await w.store.subscriptions.list(channel_id=news.id) == []
        reply = await w.command("subscriptions")
        assert "no subscriptions" in reply["content"]


async def test_a_feed_url_on_a_private_address_is_refused(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        for url in (w.feeds.url("/dyn/koreaboo-copy"), "http://169.254.169.254/latest/meta-data/"):
            interaction = await w.server.invoke("subscribe", {"channel": news.id, "source": url})
            reply = await interaction.reply(timeout=10)
            assert interaction.ephemeral
            assert "refused" in reply["content"] and (
                "loopback" in reply["content"] or "link-local" in reply["content"]
            )
            assert interaction.callback["type"] == 5  # deferred: checking a feed may take seconds
        assert await w.store.subscriptions.list() == []
        assert [s for s in await w.store.sources.list() if s.owner_guild_id] == []
