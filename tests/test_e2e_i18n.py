"""The member's and the server's language over the real wire: the real bot (discord.py over loopback sockets)
against FakeDiscord, whose interactions carry `locale` and `guild_locale` and whose guilds a `preferred_locale`.

Replies follow the member's locale, channel posts the server's preferred one (only the fixed words: the story
stays as its outlet wrote it), and the synced commands carry every locale's names and descriptions."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.discord_bot import KpopNewsBot
from bot.i18n import LOCALES_DIR, Catalogs
from bot.timeutil import utcnow
from cogs.translator import CatalogTranslator
from tests.support.bot_harness import bot_config, running_bot
from tests.support.discord_server import FakeDiscord, Permission
from tests.support.world import V_IU_LINK, V_IU_TITLE, embed_of, v_iu_feed, world

DISCORD_LOCALIZED = {"ko", "ja", "es-419", "es-ES", "pt-BR", "id"}


def texts(reply: dict[str, Any]) -> str:
    """Everything a reply shows: its content and its embeds' descriptions."""
    return " ".join(
        [reply.get("content") or ""] + [e.get("description", "") for e in reply.get("embeds", [])]
    )


# --- replies follow the member -------------------------------------------------------------------------------


async def test_a_korean_member_gets_news_replies_and_errors_in_korean(tmp_path):
    async with world(tmp_path) as w:
        w.publish(v_iu_feed(published=utcnow() - timedelta(minutes=1)))
        await w.polled()
        minji = w.server.member(w.h.guild.id, "minji", locale="ko")

        interaction = await w.server.invoke("news", {"artist": "뷔", "count": 2}, user_id=minji.id)
        reply = await interaction.reply(timeout=10)
        assert reply["content"] == "**V (BTS)** 소식: 전체 4개 중 1–2"
        assert reply["embeds"][0]["url"] == V_IU_LINK  # the story as its outlet wrote it
        labels = [c["label"] for row in reply["components"] for c in row["components"]]
        assert labels == ["이전", "다음"]  # Previous, Next
        # the same question from an English member: today's English, word for word
        english = await (await w.server.invoke("news", {"artist": "뷔", "count": 2})).reply(timeout=10)
        assert english["content"] == "Stories about **V (BTS)**: 1–2 of 4"
        assert english["embeds"] == reply["embeds"]  # a list keeps to the story's own words

        nothing = await w.command("news", {"artist": 'zzq "(*'}, user_id=minji.id)
        assert nothing["_ephemeral"] and nothing["content"].startswith('**zzq "(\\***에 대한 결과가 없어요.')
        assert "`/뉴스 뷔`" in nothing["content"]  # the command as her command list names it

        # errors, answered by the bot's error handler: in Korean too
        index, w.bot.artists = w.bot.artists, None
        try:
            loading = await w.command("news", {"artist": "V"}, user_id=minji.id)
        finally:
            w.bot.artists = index
        assert loading["_ephemeral"] and loading["content"] == (
            "아티스트 목록을 아직 불러오는 중이에요. 잠시 후 다시 시도해 주세요."
        )
        denied = await w.command(
            "subscriptions", user_id=minji.id, respect_default_permissions=False
        )  # Manage Server, checked at run time
        assert denied["_ephemeral"] and denied["content"] == (
            "`/구독목록` 명령어를 쓰려면 이 권한이 필요해요: 서버 관리하기."
        )
        english = await w.command(
            "subscriptions",
            user_id=w.server.member(w.h.guild.id, "fan").id,
            respect_default_permissions=False,
        )
        assert english["content"] == "You need the Manage Server permission to use /subscriptions."


async def test_subscriptions_health_written_in_english_is_shown_in_the_members_language(tmp_path):
    async with world(tmp_path) as w:
        news = w.channel("news")
        admin = w.server.member(w.h.guild.id, "admin", permissions=Permission.MANAGE_GUILD, locale="ja")
        done = await w.subscribe(news, user_id=admin.id)
        assert done.startswith(
            f"完了! <#{news.id}> に投稿するニュース: すべての配信元のすべての新着ニュース。"
        )
        w.server.set_bot_channel_permissions(news.id, view=True, send=False, embed=True)
        w.publish(v_iu_feed(published=utcnow()))
        await w.server.wait_for(lambda: w.server.stats.responses[403] >= 1, 15, what="the refused post")
        await w.settle()
        [sub] = await w.store.subscriptions.list(channel_id=news.id)
        assert sub.last_error.startswith("Discord refused the post: 403 Forbidden")  # stored in English

        shown = texts(await w.command("subscriptions", user_id=admin.id))
        assert f"<#{news.id}>（テキストチャンネル）: すべての配信元のすべての新着ニュース" in shown
        assert "問題あり · まだ投稿なし · 次の再試行 <t:" in shown
        assert "Discordが投稿を拒否しました: 403 Forbidden" in shown  # Discord's own reason as it gave it
        assert (
            "自動で再試行します。対処: そのチャンネルでボットに チャンネルを見る、メッセージを送信、埋め込みリンク の権限"
            in shown
        )
        # the owner reads Discord in English: the same health, today's words
        english = texts(await w.command("subscriptions"))
        assert f"<#{news.id}> (text channel): every new story from every source" in english
        assert (
            "Retrying automatically; give the bot View Channel, Send Messages and Embed Links in that channel."
            in english
        )


# --- channel posts follow the server ------------------------------------------------------------------------


async def test_a_japanese_server_gets_the_fixed_words_in_japanese_and_the_story_as_written(tmp_path):
    async with world(tmp_path) as w:
        tokyo = w.server.add_guild("東京のファン", channels=("ニュース",), preferred_locale="ja")
        await w.server.wait_for(lambda: w.bot.get_guild(tokyo.id) is not None, 5, what="GUILD_CREATE")
        tokyo_news = tokyo.channel("ニュース")
        owner = tokyo.owner_id
        reply = await w.command(
            "subscribe",
            {"channel": tokyo_news.id},
            guild_id=tokyo.id,
            user_id=owner,
            channel_id=tokyo_news.id,
            locale="en-US",
        )
        assert reply["content"].startswith("Done: ")  # the member reads English: the reply is English
        assert "Done" in await w.subscribe(w.channel("news"))  # an English server, for comparison

        w.publish(v_iu_feed(published=utcnow() - timedelta(minutes=5)))
        [posted] = await w.server.wait_for_messages(tokyo_news.id, 1, timeout=15)
        [english] = await w.server.wait_for_messages(w.channel("news").id, 1, timeout=15)
        japanese, original = embed_of(posted), embed_of(english)
        assert japanese["fields"][0]["name"] == "ファンの反応"
        assert original["fields"][0]["name"] == "What fans are saying"
        assert japanese["fields"][0]["value"].endswith("（Twitter）")
        # the story stays as the outlet wrote it: headline, link, summary, image, outlet
        assert japanese["title"] == original["title"] and japanese["title"].startswith(V_IU_TITLE[:40])
        for key in ("url", "description", "image", "author", "footer", "timestamp"):
            assert japanese.get(key) == original.get(key), key
        assert w.server.create_payload(int(posted["id"]))["allowed_mentions"]["parse"] == []


# --- the command definitions ----------------------------------------------------------------------------------


async def test_synced_commands_carry_every_locales_names_and_descriptions(tmp_path):
    async with world(tmp_path) as w:
        commands = {c["name"]: c for c in w.server.commands}
        assert {"news", "trending", "subscribe", "unsubscribe", "subscriptions", "follow", "about"} <= set(
            commands
        )
        for command in commands.values():
            assert set(command["name_localizations"]) == DISCORD_LOCALIZED, command["name"]
            assert set(command["description_localizations"]) == DISCORD_LOCALIZED, command["name"]
            for option in command.get("options", []):
                where = f"/{command['name']} {option['name']}"
                assert set(option["name_localizations"]) == DISCORD_LOCALIZED, where
                assert set(option["description_localizations"]) == DISCORD_LOCALIZED, where
        news = commands["news"]
        assert news["name_localizations"]["ko"] == "뉴스" and news["name_localizations"]["ja"] == "ニュース"
        count = next(o for o in news["options"] if o["name"] == "count")
        assert count["description"] == "How many stories to show (1-10, default 5)"
        assert count["description_localizations"]["pt-BR"] == "Quantas notícias mostrar (1-10, padrão 5)"
        hours = next(o for o in commands["trending"]["options"] if o["name"] == "hours")
        assert hours["description_localizations"]["id"].endswith("(1-168, bawaan 24)")


async def test_an_edited_translation_syncs_the_commands_again_once(tmp_path):
    edited = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, edited)
    korean = edited / "ko.toml"
    old = 'description = "아티스트나 그룹의 최신 K-pop 소식"'
    assert old in korean.read_text(encoding="utf-8")
    korean.write_text(
        korean.read_text(encoding="utf-8").replace(old, 'description = "아티스트·그룹의 최신 K-pop 뉴스"'),
        encoding="utf-8",
    )

    class BotWithEditedKorean(KpopNewsBot):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.command_translator = CatalogTranslator(Catalogs(edited))

    async with FakeDiscord() as server:
        server.add_guild()
        config = bot_config(server, tmp_path / "bot.db")
        async with running_bot(server, config) as bot:
            assert bot.commands_synced
        async with running_bot(server, config) as bot:
            assert not bot.commands_synced  # same translations: no PUT
        assert server.stats.command_syncs == 1
        async with running_bot(server, config, bot_class=BotWithEditedKorean) as bot:
            assert bot.commands_synced  # one translation changed: synced
        news = next(c for c in server.commands if c["name"] == "news")
        assert news["description_localizations"]["ko"] == "아티스트·그룹의 최신 K-pop 뉴스"
        assert news["description"] == "The latest K-pop stories about an artist or group"
        async with running_bot(server, config, bot_class=BotWithEditedKorean) as bot:
            assert not bot.commands_synced  # and only once
        assert server.stats.command_syncs == 2


async def test_about_lists_the_commands_as_the_member_sees_them(tmp_path: Path):
    async with world(tmp_path) as w:
        reply = await w.command("about", locale="es-ES")
        [embed] = reply["embeds"]
        assert embed["title"] == "Acerca de KpopNews"
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert "`/noticias`: Las últimas noticias de K-pop sobre un artista o grupo" in fields["Comandos"]
        assert "**Koreaboo**" in fields["Fuentes"] and "github.com" in fields["Ayuda"]
