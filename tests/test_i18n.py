"""bot/i18n.py and cogs/translator.py: the locale files are complete and consistent, every text fits Discord's
limits, lookups fall back sensibly, values are inert, and discord.py's command payloads carry the translations."""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path

import discord
import pytest
from discord import app_commands

from bot.embed import FIELD_NAME_LIMIT, FIELD_VALUE_LIMIT, TITLE_LIMIT
from bot.i18n import (
    CATALOGS,
    DEFAULT_LOCALE,
    LOCALES,
    LOCALES_DIR,
    Catalogs,
    I18nError,
    Template,
    load_catalog_file,
    resolve_locale,
    valid_command_name,
)
from bot.text import discord_len
from cogs.about import HELP_URL
from cogs.translator import CatalogTranslator, catalog_str
from tests.support.discord_server import validate_commands

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = tuple(locale for locale in LOCALES if locale != DEFAULT_LOCALE)
# Discord locales that get a localization: each translated file, and es-ES, which reads es-419
DISCORD_LOCALIZED = {"ko", "ja", "es-419", "es-ES", "pt-BR", "id"}
SAMPLE_VALUE = (
    "1000"  # what a placeholder stands for when a length is checked: longer than any range or default
)
MESSAGE_LIMIT = 2000  # Discord: a message's content
BUTTON_LABEL_LIMIT = 80  # Discord: a button's label
CHOICE_NAME_LIMIT = 100  # Discord: an (autocomplete) choice's name
EMBED_WORDS_LIMIT = 64  # the fixed words of a channel post stay short: the story's own text gets the room


def catalogs() -> dict[str, dict[str, Template]]:
    return {locale: dict(CATALOGS.catalog(locale)) for locale in LOCALES}


def sample(template: Template) -> str:
    return template.render(dict.fromkeys(template.fields, SAMPLE_VALUE))


def command_keys(catalog: dict[str, Template]) -> list[str]:
    """cmd.<command>.name keys (a command, not an option)."""
    return [k for k in catalog if k.startswith("cmd.") and k.count(".") == 2 and k.endswith(".name")]


def option_keys(catalog: dict[str, Template], command: str) -> list[str]:
    return [
        k for k in catalog if k.startswith(f"cmd.{command}.") and k.count(".") == 3 and k.endswith(".name")
    ]


# --- the shipped files --------------------------------------------------------------------------------------


def test_every_locale_file_has_exactly_the_english_keys() -> None:
    found = catalogs()
    english = set(found[DEFAULT_LOCALE])
    assert len(english) > 150
    for locale in TRANSLATED:
        keys = set(found[locale])
        assert not english - keys, f"{locale}.toml lacks {sorted(english - keys)}"
        assert not keys - english, f"{locale}.toml has keys English does not: {sorted(keys - english)}"


def test_every_translation_has_the_same_placeholders_as_english() -> None:
    found = catalogs()
    for key, english in found[DEFAULT_LOCALE].items():
        for locale in TRANSLATED:
            assert found[locale][key].fields == english.fields, (
                f"{locale}.toml {key}: placeholders {sorted(found[locale][key].fields)}, "
                f"English has {sorted(english.fields)}"
            )


def test_counted_texts_come_in_one_and_other_pairs() -> None:
    keys = set(CATALOGS.catalog(DEFAULT_LOCALE))
    for key in keys:
        if key.endswith("_one"):
            assert key.removesuffix("_one") + "_other" in keys, key
            assert "count" in CATALOGS.catalog(DEFAULT_LOCALE)[key].fields, key
        if key.endswith("_other"):
            assert key.removesuffix("_other") + "_one" in keys, key


def test_command_and_option_names_follow_discords_rule_and_are_unique() -> None:
    for locale, catalog in catalogs().items():
        names = [k for k in catalog if k.startswith("cmd.") and k.endswith(".name")]
        assert names
        for key in names:
            name = catalog[key].source
            assert valid_command_name(name), f"{locale}.toml {key} = {name!r}"
            assert name == name.lower() and 1 <= len(name) <= 32
        commands = [catalog[k].source for k in command_keys(catalog)]
        assert len(commands) == len(set(commands)), f"{locale}: two commands share a name: {sorted(commands)}"
        for key in command_keys(catalog):
            command = key.split(".")[1]
            options = [catalog[k].source for k in option_keys(catalog, command)]
            assert len(options) == len(set(options)), f"{locale}: /{command} has two options named alike"


@pytest.mark.parametrize(
    "name", ["news", "only_trending", "뉴스", "ニュース", "フォロー中", "só-em-alta", "हिन्दी", "ข่าว", "k'pop"]
)
def test_discords_name_rule_accepts(name: str) -> None:
    assert valid_command_name(name)


@pytest.mark.parametrize(
    "name", ["", "News", "two words", "x" * 33, "ニュース・速報", "news!", "ÉCHO", "a/b"]
)
def test_discords_name_rule_refuses(name: str) -> None:
    assert not valid_command_name(name)


def test_descriptions_and_choices_fit_discord() -> None:
    for locale, catalog in catalogs().items():
        for key, template in catalog.items():
            if not key.startswith("cmd."):
                continue
            if key.endswith(".description") or ".choice." in key:
                size = discord_len(sample(template))
                assert 1 <= size <= 100, f"{locale}.toml {key}: {size} characters with values {SAMPLE_VALUE}"


def test_reply_texts_fit_their_places() -> None:
    for locale, catalog in catalogs().items():
        where = f"{locale}.toml"
        for key, template in catalog.items():
            assert discord_len(template.fixed_text) <= MESSAGE_LIMIT // 2, f"{where} {key}"
        for key in ("common.previous", "common.next"):
            assert discord_len(catalog[key].source) <= BUTTON_LABEL_LIMIT, f"{where} {key}"
        # titles carry a server or bot name cut to 200
        for key in ("subscriptions.title", "about.title"):
            assert discord_len(catalog[key].fixed_text) + 200 <= TITLE_LIMIT, f"{where} {key}"
        for key in ("about.sources", "about.commands", "about.help"):
            assert discord_len(catalog[key].source) <= FIELD_NAME_LIMIT, f"{where} {key}"
        assert discord_len(catalog["about.help_text"].render({"url": HELP_URL})) <= FIELD_VALUE_LIMIT, where
        assert discord_len(catalog["about.description"].source) <= 4096, where
        # an autocomplete choice "Add feed: <url>" keeps most of its 100 characters for the URL
        assert discord_len(catalog["subscribe.add_feed"].fixed_text) <= CHOICE_NAME_LIMIT - 60, where


def test_channel_post_words_fit_the_embed() -> None:
    for locale, catalog in catalogs().items():
        for key in [k for k in catalog if k.startswith("embed.")] + ["common.plus_more"]:
            size = discord_len(catalog[key].fixed_text)
            assert 1 <= size <= EMBED_WORDS_LIMIT, f"{locale}.toml {key}: {size} characters"
        assert discord_len(catalog["embed.quotes_heading"].source) <= FIELD_NAME_LIMIT
        assert discord_len(catalog["embed.untitled"].source) <= TITLE_LIMIT


_COMMAND_MENTION = re.compile(r"(?<![\w/:.])/([\w'-]+)")
_CODE_SPAN = re.compile(r"`(/[^`]*)`")


def test_replies_name_commands_and_options_as_that_locale_shows_them() -> None:
    """A reply in Korean says `/뉴스`, not `/news`: the name the member sees in their command list."""
    checked = 0
    for locale, catalog in catalogs().items():
        commands = {catalog[k].source: k.split(".")[1] for k in command_keys(catalog)}
        for key, template in catalog.items():
            if key.startswith("cmd."):
                continue
            for literal, _ in template.parts:
                for name in _COMMAND_MENTION.findall(literal):
                    checked += 1
                    assert name in commands, f"{locale}.toml {key}: /{name} is not a {locale} command name"
                for span in _CODE_SPAN.findall(literal):
                    name, *words = span[1:].split()
                    for word in words:
                        if ":" in word and name in commands:
                            option = word.split(":", 1)[0]
                            options = {catalog[k].source for k in option_keys(catalog, commands[name])}
                            assert option in options, f"{locale}.toml {key}: /{name} has no option {option!r}"
    assert checked > 50


def test_locale_files_ship_with_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["bot"]
    for locale in LOCALES:
        path = (LOCALES_DIR / f"{locale}.toml").relative_to(ROOT / "bot").as_posix()
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), f"{path} is not package data"


# --- lookups ------------------------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Catalogs:
    """English with three keys; Korean with one; Spanish (es-419) with two."""
    (tmp_path / "en.toml").write_text(
        '[greet]\nhello = "Hello {name}"\nbye = "Bye"\nitems_one = "{count} item"\nitems_other = "{count} items"\n'
        '[list]\nseparator = ", "\npair = "{first} and {second}"\nlast = "{rest} and {last}"\n',
        encoding="utf-8",
    )
    (tmp_path / "ko.toml").write_text('[greet]\nhello = "안녕 {name}"\n', encoding="utf-8")
    (tmp_path / "es-419.toml").write_text('[greet]\nhello = "Hola {name}"\nbye = "Chau"\n', encoding="utf-8")
    return Catalogs(tmp_path, ("en", "ko", "es-419"))


def test_a_key_missing_from_a_locale_falls_back_to_english(small: Catalogs) -> None:
    assert small.text("greet.hello", "ko", name="V") == "안녕 V"
    assert small.text("greet.bye", "ko") == "Bye"
    assert small.localized("greet.bye", "ko") is None  # Discord falls back by itself
    with pytest.raises(I18nError, match="greet.nope"):
        small.text("greet.nope", "ko")


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("ko", "ko"),
        ("ko-KR", "ko"),
        (discord.Locale.korean, "ko"),
        ("es-419", "es-419"),
        ("es-ES", "es-419"),
        (discord.Locale.spain_spanish, "es-419"),
        ("es", "es-419"),
        ("en-US", "en"),
        ("en-GB", "en"),
        ("pt-PT", "en"),  # no file for European Portuguese: English, not Brazilian
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_locales_resolve_to_a_file(small: Catalogs, locale: object, expected: str) -> None:
    assert resolve_locale(locale, small.locales) == expected


def test_shipped_locales_resolve(small: Catalogs) -> None:
    assert resolve_locale("pt-BR") == "pt-BR" and resolve_locale("pt-PT") == "en"
    assert resolve_locale(discord.Locale.indonesian) == "id" and resolve_locale("ja") == "ja"
    assert CATALOGS.text("embed.quotes_heading", discord.Locale.spain_spanish) == "Lo que dicen los fans"
    assert CATALOGS.text("embed.quotes_heading", discord.Locale.french) == "What fans are saying"


def test_localized_is_none_where_discord_shows_english(small: Catalogs) -> None:
    assert small.localized("greet.hello", "es-ES", name="V") == "Hola V"
    assert small.localized("greet.hello", "en-US", name="V") is None
    assert small.localized("greet.hello", "de", name="V") is None


def test_values_are_inserted_never_read_as_templates(small: Catalogs) -> None:
    hostile = "{name} {0} {__class__} {{x}} }{"
    assert small.text("greet.hello", "ko", name=hostile) == f"안녕 {hostile}"
    headline = CATALOGS.text("news.header", "ja", who="{who}")
    assert headline == "**{who}** の最新ニュース"
    with pytest.raises(I18nError, match=r"greet.hello.*\{name\}"):
        small.text("greet.hello", "en")


def test_plural_picks_one_or_other(small: Catalogs) -> None:
    assert small.plural("greet.items", 1, "en") == "1 item"
    assert small.plural("greet.items", 0, "en") == "0 items"
    assert small.plural("greet.items", 3, "ko") == "3 items"
    assert CATALOGS.plural("trending.outlets", 2, "es-419") == "2 medios"
    assert CATALOGS.plural("trending.outlets", 1, "es-419") == "1 medio"


def test_lists_join_as_the_language_writes_them() -> None:
    assert CATALOGS.join_list(["View Channel", "Send Messages", "Embed Links"], "en") == (
        "View Channel, Send Messages and Embed Links"
    )
    assert CATALOGS.join_list(["A", "B"], "pt-BR") == "A e B"
    assert CATALOGS.join_list(["A", "B", "C"], "id") == "A, B, dan C"
    assert CATALOGS.join_list(["A", "B", "C"], "ja") == "A、B、C"
    assert CATALOGS.join_list(["A"], "ko") == "A" and CATALOGS.join_list([], "ko") == ""


def test_catalogs_are_read_once(small: Catalogs) -> None:
    assert small.text("greet.hello", "ko", name="V") == "안녕 V"
    (small.directory / "ko.toml").write_text('[greet]\nhello = "changed {name}"\n', encoding="utf-8")
    assert small.text("greet.hello", "ko", name="V") == "안녕 V"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('[greet\nhello = "x"\n', "not valid TOML"),
        ("[greet]\nhello = 3\n", "greet.hello must be text"),
        ('[greet]\nhello = ""\n', "greet.hello is empty"),
        ('[greet]\nhello = "Hi {0}"\n', "greet.hello: placeholder {0}"),
        ('[greet]\nhello = "Hi {}"\n', "greet.hello: placeholder {}"),
        ('[greet]\nhello = "Hi {user.name}"\n', "placeholder {user.name}"),
        ('[greet]\nhello = "Hi {name!r}"\n', "placeholder {name!r}"),
        ('[greet]\nhello = "Hi {count:>3}"\n', "placeholder {count:>3}"),
        ('[greet]\nhello = "Hi {name"\n', "greet.hello: .*literal brace"),
        ('[cmd.news]\nname = "News"\n', "cmd.news.name: 'News' is not a valid Discord"),
        ('[cmd.news]\nname = "my news"\n', "not a valid Discord"),
        ('[cmd.news]\nname = "news{x}"\n', "not a valid Discord"),
        ('[cmd.news]\ndescription = "' + "x" * 101 + '"\n', "cmd.news.description: Discord allows 1-100"),
        ('[cmd.news.artist.choice]\nv = "' + "x" * 101 + '"\n', "cmd.news.artist.choice.v: Discord allows"),
    ],
)
def test_a_malformed_locale_file_is_refused_with_its_name_and_key(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "ko.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(I18nError, match="ko.toml") as caught:
        load_catalog_file(path)
    assert re.search(complaint, str(caught.value)), str(caught.value)


def test_a_missing_locale_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text('[a]\nb = "c"\n', encoding="utf-8")
    with pytest.raises(I18nError, match="ja.toml"):
        Catalogs(tmp_path, ("en", "ja")).load_all()


# --- discord.py: the translator in the command payload ------------------------------------------------------


def news_command(description: str) -> app_commands.Command:
    """/news as a cog declares it (decorators below @command run first, as in a cog)."""

    @app_commands.command(name="news", description=description)
    @app_commands.describe(
        artist="Stage name, real name, Hangul name or group, e.g. V, Taehyung, 뷔, BTS",
        count=catalog_str("cmd.news.count.description", max=10, default=5),
    )
    async def news(interaction: discord.Interaction, artist: str, count: int = 5) -> None:
        """Only the definition matters here."""

    return news


async def translated_payload(command: app_commands.Command, translator: CatalogTranslator) -> dict:
    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))
    await tree.set_translator(translator)
    tree.add_command(command)
    assert tree.translator is translator
    return await command.get_translated_payload(tree, translator)


async def test_the_translator_fills_name_and_description_localizations() -> None:
    payload = await translated_payload(
        news_command("The latest K-pop stories about an artist or group"), CatalogTranslator()
    )
    assert payload["name"] == "news"  # Discord sends interactions back under the default name
    assert payload["name_localizations"] == {
        "ko": "뉴스",
        "ja": "ニュース",
        "es-419": "noticias",
        "es-ES": "noticias",
        "pt-BR": "notícias",
        "id": "berita",
    }
    assert payload["description_localizations"]["ko"] == "아티스트나 그룹의 최신 K-pop 소식"
    assert set(payload["description_localizations"]) == DISCORD_LOCALIZED
    artist, count = payload["options"]
    assert (artist["name"], count["name"]) == ("artist", "count")
    assert artist["name_localizations"]["ja"] == "アーティスト"
    assert artist["description_localizations"]["pt-BR"].startswith("Nome artístico")
    assert count["description"] == "How many stories to show (1-10, default 5)"
    assert count["description_localizations"]["ko"] == "보여 줄 소식 수 (1-10, 기본 5)"
    assert count["description_localizations"]["es-ES"] == "Cuántas noticias mostrar (1-10, por defecto 5)"
    validate_commands([payload])  # what the test Discord server (and Discord) would refuse


async def test_a_text_the_catalog_says_otherwise_stays_english() -> None:
    payload = await translated_payload(news_command("Stories, rewritten since"), CatalogTranslator())
    assert payload["description_localizations"] == {}  # never a translation of another sentence
    assert payload["name_localizations"]["ko"] == "뉴스"  # the rest still localized

    @app_commands.command(name="ping", description="Pong")
    async def ping(interaction: discord.Interaction) -> None:
        """Not in the catalog."""

    payload = await translated_payload(ping, CatalogTranslator())
    assert payload["name_localizations"] == {} and payload["description_localizations"] == {}


async def test_choices_and_explicit_keys_use_the_given_catalogs(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text(
        '[cmd.mood]\nname = "mood"\ndescription = "Pick a mood"\nfeel.name = "feel"\n'
        'feel.description = "How you feel"\nfeel.choice.happy = "Happy"\n',
        encoding="utf-8",
    )
    (tmp_path / "ko.toml").write_text(
        '[cmd.mood]\nname = "기분"\ndescription = "기분 고르기"\nfeel.name = "느낌"\n'
        'feel.description = "지금 기분"\nfeel.choice.happy = "행복"\n',
        encoding="utf-8",
    )
    translator = CatalogTranslator(Catalogs(tmp_path, ("en", "ko")))

    happy = app_commands.Choice(
        name=app_commands.locale_str("Happy", key="cmd.mood.feel.choice.happy"), value="h"
    )

    @app_commands.command(name="mood", description="Pick a mood")
    @app_commands.describe(feel="How you feel")
    @app_commands.choices(feel=[happy])
    async def command(interaction: discord.Interaction, feel: str) -> None:
        """Stand-in."""

    payload = await translated_payload(command, translator)
    assert payload["name_localizations"] == {"ko": "기분"}
    [feel] = payload["options"]
    assert feel["name_localizations"] == {"ko": "느낌"}
    assert feel["choices"] == [{"name": "Happy", "value": "h", "name_localizations": {"ko": "행복"}}]


async def test_setting_the_translator_checks_every_locale_file(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text('[a]\nb = "c"\n', encoding="utf-8")
    (tmp_path / "ko.toml").write_text('[cmd.news]\nname = "뉴 스"\n', encoding="utf-8")
    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))
    with pytest.raises(I18nError, match="ko.toml: cmd.news.name"):
        await tree.set_translator(CatalogTranslator(Catalogs(tmp_path, ("en", "ko"))))


async def test_the_bots_own_commands_are_localized_in_every_locale() -> None:
    """The cogs as they are: every command and option name localized; a plain description too, unless its
    English drifted from en.toml (then this names it: update en.toml and the translations together)."""
    from cogs.about import About
    from cogs.follows import Follows
    from cogs.news import News
    from cogs.subscriptions import Subscriptions
    from cogs.trending import Trending

    translator = CatalogTranslator()
    english = CATALOGS.catalog(DEFAULT_LOCALE)
    problems: list[str] = []
    payloads = []
    for cog in (About, Follows, News, Subscriptions, Trending):
        for command in cog.__cog_app_commands__:
            payload = await translated_payload(command, translator)
            payloads.append(payload)
            name = payload["name"]
            if set(payload["name_localizations"]) != DISCORD_LOCALIZED:
                problems.append(f"/{name}: name localized in {sorted(payload['name_localizations'])}")
            if set(payload["description_localizations"]) != DISCORD_LOCALIZED:
                problems.append(f"/{name}: description {payload['description']!r} differs from en.toml")
            for option in payload["options"]:
                where = f"/{name} {option['name']}"
                if set(option.get("name_localizations", {})) != DISCORD_LOCALIZED:
                    problems.append(f"{where}: no cmd.{name}.{option['name']}.name in every locale")
                template = english.get(f"cmd.{name}.{option['name']}.description")
                if template is not None and template.fields:
                    continue  # built with values: localized once the cog declares it with catalog_str
                if set(option.get("description_localizations", {})) != DISCORD_LOCALIZED:
                    problems.append(f"{where}: description {option['description']!r} differs from en.toml")
    assert not problems, "\n".join(problems)
    validate_commands(payloads)
    assert {p["name"] for p in payloads} >= {"news", "trending", "subscribe", "unsubscribe", "subscriptions"}
    assert {p["name"] for p in payloads} >= {"follow", "unfollow", "following"}


# --- texts written in English below the edge, read back into the member's locale ------------------------------


def test_a_template_reads_its_own_text_back(small: Catalogs) -> None:
    template = CATALOGS.catalog("en")["delivery_error.refused_retrying"]
    text = template.render({"reason": "403 Forbidden: no. really", "todo": "do {this}"})
    assert template.match(text) == {"reason": "403 Forbidden: no. really", "todo": "do {this}"}
    assert template.match(text + " and more") is None and template.match("Discord") is None
    assert small.reread("Hello V", ["greet.hello", "greet.bye"], "ko") == "안녕 V"
    assert small.reread("Hello V", ["greet.hello"], "en-US") == "Hello V"  # English: the text as it is
    assert small.reread("Bye", ["greet.hello", "greet.bye"], "es-419") == "Chau"
    assert small.reread("Hi V", ["greet.hello", "greet.bye"], "ko") is None  # not a text of these keys
    assert small.reread("Hello V", ["greet.hello"], "ko", lambda name, value: value.lower()) == "안녕 v"
    with pytest.raises(I18nError, match="greet.nope"):
        small.reread("Hello V", ["greet.nope"], "ko")


def test_the_key_that_explains_most_of_a_text_wins() -> None:
    keys = ["delivery_error.not_published", "delivery_error.not_published_todo"]
    english = (
        "a post could not be published: 403 Forbidden; it stays posted, unpublished; give the bot Send Messages"
        " in that channel"
    )
    assert CATALOGS.reread(english, keys, "ko") == (
        "게시물을 발행하지 못했어요: 403 Forbidden. 게시물은 발행되지 않은 채로 남아 있어요. "
        "해결 방법: give the bot Send Messages in that channel"
    )


WRITERS = ("onboarding", "subscriptions", "keywords", "delivery", "delivery_queue", "channel_posts")


def string_literals(module: str) -> list[str]:
    """Every string literal of bot/<module>.py, an f-string's literal runs each on their own."""
    tree = ast.parse((ROOT / "bot" / f"{module}.py").read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


async def english_texts_the_writers_write(tmp_path: Path) -> dict[str, str]:
    """What the modules below the edge raise and store, by the key whose English it should be."""
    from bot.channel_posts import forum_requires_tag_error
    from bot.config import DeliveryConfig, SourceConfig
    from bot.delivery import _publish_error
    from bot.delivery_queue import (
        MAX_FORBIDDEN_FAILURES,
        MAX_SEND_ATTEMPTS,
        queue_deliveries,
        record_failed,
        record_forbidden,
        record_transient_failure,
    )
    from bot.keywords import KeywordError, parse_keywords
    from bot.models import ArtistRef, Story
    from bot.onboarding import FeedOnboarding
    from bot.store import Store
    from bot.subscriptions import SubscriptionError, add_subscription
    from bot.timeutil import utcnow

    written: dict[str, str] = {}

    def raised(key: str, error: type[Exception], call: object) -> None:
        with pytest.raises(error) as caught:
            call()  # type: ignore[operator]
        written[key] = str(caught.value)

    raised("keywords.too_long", KeywordError, lambda: parse_keywords("x" * 5000))
    raised("keywords.phrase_too_long", KeywordError, lambda: parse_keywords("x" * 200, option="exclude"))
    raised("keywords.no_letters", KeywordError, lambda: parse_keywords(".*"))
    raised("keywords.too_many_words", KeywordError, lambda: parse_keywords("a b c d e f g h i j k"))
    raised("keywords.too_many", KeywordError, lambda: parse_keywords(",".join(f"w{i}" for i in range(40))))
    forbidden = discord.Forbidden(
        _Response(403, "Forbidden"), {"code": 50013, "message": "Missing Permissions"}
    )
    written["delivery_error.not_published_todo"] = _publish_error("403 Forbidden", forbidden)
    server_error = discord.HTTPException(_Response(500, "Internal Server Error"), "oops")
    written["delivery_error.not_published"] = _publish_error("500 Internal Server Error", server_error)
    written["delivery_error.forum_tag_required"] = forum_requires_tag_error([ArtistRef("bts-v", "V", "BTS")])

    store = await Store.open(tmp_path / "writers.db")
    try:
        [source] = await store.sources.sync_config(
            [SourceConfig("Koreaboo", "https://www.koreaboo.com/feed/")]
        )
        onboarding = FeedOnboarding(
            store,
            None,
            None,
            first_poll=None,
            max_guild_sources=0,
            max_feed_bytes=1,  # type: ignore[arg-type]
        )
        for key, url in (
            ("feed.not_a_url", "ftp://example.com/feed"),
            ("feed.too_many", "https://e.example/f"),
        ):
            with pytest.raises(SubscriptionError) as caught:
                await onboarding.add_feed_source(url, guild_id=1)
            written[key] = str(caught.value)
        with pytest.raises(SubscriptionError) as caught:
            await add_subscription(store, guild_id=1, channel_id=10, source_id=9999)
        written["feed.source_gone"] = str(caught.value)
        await add_subscription(store, guild_id=1, channel_id=10)
        with pytest.raises(SubscriptionError) as caught:
            await add_subscription(store, guild_id=2, channel_id=10)
        written["feed.other_server"] = str(caught.value)
        await store.sources.disable(source.id, "the operator switched it off")
        with pytest.raises(SubscriptionError) as caught:
            await add_subscription(store, guild_id=1, channel_id=11, source_id=source.id)
        written["feed.source_off"] = str(caught.value)

        async def delivery(n: int):
            story = Story(key=f"k{n}", title=f"T{n}", url=f"https://e.example/{n}", source="Koreaboo")
            story.published = utcnow()
            [added] = await store.stories.add_many([story], source_id=source.id)
            await queue_deliveries(store, [added.id], config=DeliveryConfig(), expand=None)
            return next(d for d in await store.deliveries.list() if d.story_id == added.id)

        first = await delivery(1)
        reason = "403 Forbidden (error code: 50013): Missing Permissions"
        written["delivery_error.refused_retrying"] = (await record_forbidden(store, first, reason)).last_error
        for _ in range(MAX_FORBIDDEN_FAILURES - 1):
            paused = await record_forbidden(store, first, reason)
        written["delivery_error.refused_paused"] = paused.last_error
        await add_subscription(store, guild_id=1, channel_id=10)  # resumed
        second = await delivery(2)
        await record_failed(store, second, "400 Bad Request (error code: 50035): Invalid Form Body")
        written["delivery_error.not_posted"] = (
            await store.subscriptions.get(second.subscription_id)
        ).last_error
        third = await delivery(3)
        third.attempts = MAX_SEND_ATTEMPTS
        await record_transient_failure(store, third, "503 Service Unavailable")
        gave_up = (await store.subscriptions.get(third.subscription_id)).last_error
        written["delivery_error.gave_up"] = gave_up.removeprefix("a story could not be posted: ")
    finally:
        await store.close()
    return written


class _Response:
    """What discord.HTTPException reads of an aiohttp response: its status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason


async def test_every_sentence_written_in_english_is_the_catalogs_english(tmp_path: Path) -> None:
    """The writers below the edge write exactly en.toml's English, so that /subscriptions and the refusals can
    show it in the member's locale: each writer's text is read back by its key, or (where a writer cannot be
    run alone) the key's English words are literally in its source."""
    from cogs.subscriptions import WRITTEN_IN_ENGLISH, in_locale

    written = await english_texts_the_writers_write(tmp_path)
    for key, english in written.items():
        assert CATALOGS.reread(english, [key], "ko") is not None, f"{key}: en.toml does not read {english!r}"
        assert in_locale(english, "en-US") == english
        assert in_locale(english, "ja") != english, key
    literals = [literal for module in WRITERS for literal in string_literals(module)]
    checked = set(written) | {"delivery_error.todo_permissions", "delivery_error.todo_resume"}  # nested above
    for key in sorted(set(WRITTEN_IN_ENGLISH) - checked):
        words = [part for part, _ in CATALOGS.catalog("en")[key].parts if part.strip()]
        for part in words:
            assert any(part in literal for literal in literals), f"{key}: {part!r} is in no writer's text"


def test_stored_health_reads_in_every_locale_with_its_values() -> None:
    from cogs.subscriptions import in_locale

    stored = "a story could not be posted: gave up after 8 attempts: 503 Service Unavailable"
    assert in_locale(stored, "ko") == "소식을 올리지 못함: 8번 시도한 끝에 포기: 503 Service Unavailable"
    refused = (
        "Discord refused the post: 403 Forbidden (error code: 50013): Missing Permissions. Paused after 4 refusals:"
        " give the bot View Channel, Create Posts, Send Messages in Threads and Embed Links in that channel, then"
        " run /subscribe again with the same options to resume."
    )
    assert in_locale(refused, "pt-BR") == (
        "O Discord recusou o post: 403 Forbidden (error code: 50013): Missing Permissions. Pausada após 4 recusas"
        " seguidas: dê ao bot Ver canal, Criar postagens, Enviar mensagens em tópicos e Inserir links nesse canal"
        " e depois use `/assinar` de novo com as mesmas opções para retomar."
    )
    keyword = "`exclude`: “.*” has no letters or digits to look for; keywords are plain words or phrases (not patterns), separated by commas"
    assert in_locale(keyword, "es-419").startswith("`excluir`: “.*” no tiene letras")
    assert in_locale("something new nobody wrote a key for", "ko") == "something new nobody wrote a key for"
    assert in_locale("give the bot Admin Powers in that channel", "ko") == (
        "그 채널에서 봇에게 Admin Powers 권한을 주세요"  # an unknown permission name stays as it is
    )
