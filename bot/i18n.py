"""Every fixed word the bot shows, in the member's or the server's language, from bot/locales/<locale>.toml.

One TOML file per locale, nested tables flattened to dotted keys (`[news] header = …` is `news.header`).
English (`en.toml`) is the reference: every other file has the same keys (tests/test_i18n.py), and a key
missing from a locale falls back to English. Keys under `cmd.` are slash command definitions: a `…name` key
follows Discord's name rule, a `…description` key and a `…choice.<value>` key are 1–100 characters; a file
breaking that, or any malformed file, fails to load with an error naming the file and key.

Placeholders are `{name}` (an identifier; `{{` and `}}` are literal braces). Values are inserted as they are,
never read as templates, so feed and user text may contain braces. Where a count changes the words, a key
comes as `<key>_one` and `<key>_other` and `plural()` picks one.

Code below the edge that has no locale (an error it raises, a health sentence it stores) writes English, exactly
as en.toml says it; `reread` turns such a text back into its key and values, and so into the member's locale.

Locales are Discord's codes (`interaction.locale`, `guild.preferred_locale`, `discord.Locale` itself):
es-ES and es read es-419; en-US, en-GB and any locale without a file read English (pt-PT too: no file is
close enough). No Discord import here: the edge passes its locale in and gets plain text back.
"""

from __future__ import annotations

import re
import string
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bot.text import discord_len

LOCALES_DIR = Path(__file__).parent / "locales"
DEFAULT_LOCALE = "en"
LOCALES = ("en", "ko", "es-419", "pt-BR", "id", "ja")  # one file each in LOCALES_DIR
# Discord locales read from another file than their own code (anything else without a file reads English)
LOCALE_ALIASES = {"es-es": "es-419", "es": "es-419", "en-us": "en", "en-gb": "en"}

NAME_LIMIT = 32  # Discord: a command, option or localized name
DESCRIPTION_LIMIT = 100  # Discord: a command or option description, and a choice name
# Discord's name rule is ^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$, lowercase where a letter has a case.
_NAME_PUNCTUATION = frozenset("-_'")
_DEVANAGARI_THAI = ((0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x0E00, 0x0E7F))


class I18nError(Exception):
    """A locale file is malformed, or a text was asked for wrongly; the message names the file or key."""


@dataclass(frozen=True)
class Template:
    """One catalog text, parsed once: literal runs and the placeholders between them."""

    source: str
    parts: tuple[tuple[str, str | None], ...]  # (literal text, placeholder after it or None)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(field for _, field in self.parts if field is not None)

    @property
    def fixed_text(self) -> str:
        """The words without the placeholders: what a translation adds to the values' length."""
        return "".join(literal for literal, _ in self.parts)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """What this template renders to, each placeholder a named group (a repeated one must repeat)."""
        out: list[str] = []
        seen: set[str] = set()
        for literal, field in self.parts:
            out.append(re.escape(literal))
            if field is not None:
                out.append(f"(?P={field})" if field in seen else f"(?P<{field}>.*?)")
                seen.add(field)
        return re.compile("".join(out), re.DOTALL)

    def match(self, rendered: str) -> dict[str, str] | None:
        """The values that render this template as `rendered`, or None when it is not this template's text."""
        found = self.pattern.fullmatch(rendered)
        return found.groupdict() if found is not None else None

    def render(self, values: Mapping[str, object], *, where: str = "") -> str:
        out: list[str] = []
        for literal, field in self.parts:
            out.append(literal)
            if field is not None:
                if field not in values:
                    raise I18nError(f"{where or self.source!r} needs a value for {{{field}}}")
                out.append(str(values[field]))  # inserted as is: braces in it are just characters
        return "".join(out)


def parse_template(source: str, *, where: str) -> Template:
    """`source` as a Template; I18nError for anything but plain `{identifier}` placeholders."""
    try:
        pieces = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise I18nError(f"{where}: {exc} (write {{{{ and }}}} for a literal brace)") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in pieces:
        if field is not None and (not field.isidentifier() or spec or conversion):
            shown = (
                "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            )
            raise I18nError(
                f"{where}: placeholder {shown} must be a plain name like {{count}}"
                " (no positions, attributes, indexes, conversions or formats)"
            )
        parts.append((literal, field))
    return Template(source, tuple(parts))


def valid_command_name(name: str) -> bool:
    """Whether Discord accepts `name` as a slash command, option or localized name."""
    if not 1 <= len(name) <= NAME_LIMIT or name != name.lower():
        return False
    return all(
        ch in _NAME_PUNCTUATION
        or unicodedata.category(ch)[0] in "LN"
        or any(low <= ord(ch) <= high for low, high in _DEVANAGARI_THAI)
        for ch in name
    )


def _check_discord_rule(key: str, template: Template, where: str) -> None:
    """Command definitions break the whole sync when one is refused: refuse them here first."""
    if not key.startswith("cmd."):
        return
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "name":
        if template.fields or not valid_command_name(template.source):
            raise I18nError(
                f"{where}: {template.source!r} is not a valid Discord command or option name "
                f"(1-{NAME_LIMIT} characters, lowercase, letters, numbers, - _ ' only, no placeholders)"
            )
    elif (leaf == "description" or ".choice." in key) and not 1 <= discord_len(
        template.fixed_text
    ) <= DESCRIPTION_LIMIT:
        raise I18nError(f"{where}: Discord allows 1-{DESCRIPTION_LIMIT} characters here")


def _flatten(table: Mapping[str, object], prefix: str, path: Path, out: dict[str, Template]) -> None:
    for name, value in table.items():
        key = f"{prefix}{name}"
        where = f"{path.name}: {key}"
        if isinstance(value, Mapping):
            _flatten(value, f"{key}.", path, out)
        elif isinstance(value, str):
            if not value:
                raise I18nError(f"{where} is empty: leave the key out to fall back to English")
            template = parse_template(value, where=where)
            _check_discord_rule(key, template, where)
            out[key] = template
        else:
            raise I18nError(f"{where} must be text in quotes, not {type(value).__name__}")


def load_catalog_file(path: Path) -> dict[str, Template]:
    """One locale file, checked: every key to its Template. I18nError names the file and what is wrong."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise I18nError(f"cannot read the locale file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise I18nError(f"{path}: not valid TOML: {exc}") from None
    catalog: dict[str, Template] = {}
    _flatten(data, "", path, catalog)
    return catalog


def resolve_locale(locale: object, available: Iterable[str] = LOCALES) -> str:
    """The catalog that `locale` reads: its own file, an alias (es-ES → es-419), the same bare language
    (ko-KR → ko), else English. `locale` is a code or anything whose str() is one (discord.Locale); None is English."""
    if locale is None:
        return DEFAULT_LOCALE
    code = str(locale).strip().replace("_", "-").lower()
    by_code = {name.lower(): name for name in available}
    if code in by_code:
        return by_code[code]
    alias = LOCALE_ALIASES.get(code)
    if alias is not None and alias.lower() in by_code:
        return by_code[alias.lower()]
    language = code.split("-", 1)[0]
    return by_code.get(language, DEFAULT_LOCALE)


class Catalogs:
    """The locale files of one folder, each loaded once on first use (or all at once with `load_all`)."""

    def __init__(self, directory: Path = LOCALES_DIR, locales: Iterable[str] = LOCALES) -> None:
        self.directory = directory
        self.locales = tuple(locales)
        self._loaded: dict[str, dict[str, Template]] = {}

    def catalog(self, locale: str) -> Mapping[str, Template]:
        """The keys of one locale file (`locale` exactly as in `self.locales`)."""
        found = self._loaded.get(locale)
        if found is None:
            if locale not in self.locales:
                raise I18nError(f"no locale file for {locale!r}: the locales are {', '.join(self.locales)}")
            found = load_catalog_file(self.directory / f"{locale}.toml")
            self._loaded[locale] = found
        return found

    def load_all(self) -> None:
        """Read and check every locale file now (at start-up: a malformed file stops the start, loudly)."""
        for locale in self.locales:
            self.catalog(locale)

    def _template(self, key: str, locale: object) -> tuple[Template, str]:
        resolved = resolve_locale(locale, self.locales)
        template = self.catalog(resolved).get(key)
        if template is None:
            template = self.catalog(DEFAULT_LOCALE).get(key)
            if template is None:
                raise I18nError(f"no text {key!r} in {DEFAULT_LOCALE}.toml")
            resolved = DEFAULT_LOCALE
        return template, resolved

    def text(self, key: str, locale: object = None, /, **values: object) -> str:
        """The text `key` in `locale` (English where that locale lacks it), its placeholders filled."""
        template, resolved = self._template(key, locale)
        return template.render(values, where=f"{resolved}.toml: {key}")

    def plural(self, key: str, count: int, locale: object = None, /, **values: object) -> str:
        """`key_one` when count is 1, else `key_other`, with {count} filled."""
        suffix = "_one" if count == 1 else "_other"
        return self.text(key + suffix, locale, count=count, **values)

    def join_list(self, items: Iterable[str], locale: object = None, /) -> str:
        """ "A, B and C" as the locale writes a list (list.separator, list.pair, list.last)."""
        words = list(items)
        if len(words) <= 1:
            return "".join(words)
        if len(words) == 2:
            return self.text("list.pair", locale, first=words[0], second=words[1])
        rest = self.text("list.separator", locale).join(words[:-1])
        return self.text("list.last", locale, rest=rest, last=words[-1])

    def reread(
        self,
        rendered: str,
        keys: Iterable[str],
        locale: object,
        /,
        value: Callable[[str, str], object] | None = None,
    ) -> str | None:
        """`rendered`, a text one of `keys` gave in English, in `locale` with the same values (each passed
        through `value(name, text)` first); None when no key's English reads it. The key whose English explains
        most of the text wins; an English locale gets `rendered` back as it is."""
        english = self.catalog(DEFAULT_LOCALE)
        templates: list[tuple[str, Template]] = []
        for key in keys:
            if key not in english:
                raise I18nError(f"no text {key!r} in {DEFAULT_LOCALE}.toml")
            templates.append((key, english[key]))
        templates.sort(key=lambda found: -len(found[1].fixed_text))
        for key, template in templates:
            found = template.match(rendered)
            if found is None:
                continue
            if resolve_locale(locale, self.locales) == DEFAULT_LOCALE:
                return rendered
            values: dict[str, object] = dict(found)
            if value is not None:
                values = {name: value(name, text) for name, text in found.items()}
            return self.text(key, locale, **values)
        return None

    def keys(self, prefix: str) -> list[str]:
        """The English catalog's keys that start with `prefix` (`"health."`), in file order."""
        return [key for key in self.catalog(DEFAULT_LOCALE) if key.startswith(prefix)]

    def localized(self, key: str, locale: object, /, **values: object) -> str | None:
        """The locale's own text for `key`, or None where it would be English (an English locale, a locale
        without a file, a key the file lacks): for Discord's localizations, which fall back by themselves."""
        resolved = resolve_locale(locale, self.locales)
        if resolved == DEFAULT_LOCALE:
            return None
        template = self.catalog(resolved).get(key)
        if template is None:
            return None
        return template.render(values, where=f"{resolved}.toml: {key}")


CATALOGS = Catalogs()  # the shipped locale files; tests make their own over a temporary folder
text = CATALOGS.text
plural = CATALOGS.plural
join_list = CATALOGS.join_list
localized = CATALOGS.localized
reread = CATALOGS.reread
load_all = CATALOGS.load_all
