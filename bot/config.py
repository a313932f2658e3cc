"""Configuration: TOML file (contract keys) + DISCORD_TOKEN, validated into plain dataclasses."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

DEFAULT_CONFIG_PATH = Path("config.toml")
DATABASE_URL_ENV = "KPOPNEWS_DATABASE_URL"  # wins over storage.url


class ConfigError(Exception):
    """A configuration problem, said in one line naming the key and why (exit status 2)."""


@dataclass(frozen=True)
class SourceConfig:
    name: str
    url: str
    color: int | None = None  # embed colour; None = derived from the name


# Feeds worth shipping (../shared/docs/sources.md): used when the configuration names no [[sources]].
# config.example.toml lists the same, with what each feed carries.
DEFAULT_SOURCES: tuple[SourceConfig, ...] = (
    SourceConfig("Koreaboo", "https://www.koreaboo.com/feed/", 0xE4007F),
    SourceConfig("Soompi", "https://www.soompi.com/feed", 0x00A0E9),
    SourceConfig("SCMP K-pop: BTS", "https://www.scmp.com/rss/503065/feed", 0x001246),
    SourceConfig("SCMP K-pop: TWICE", "https://www.scmp.com/rss/503571/feed", 0x001246),
    SourceConfig("SCMP K-pop: NCT", "https://www.scmp.com/rss/503702/feed", 0x001246),
    SourceConfig("SCMP K-pop: aespa", "https://www.scmp.com/rss/517709/feed", 0x001246),
    SourceConfig("NME K-pop", "https://www.nme.com/tag/k-pop/feed", 0xD2001E),
)


@dataclass(frozen=True)
class DiscordConfig:
    token: str = field(default="", repr=False)  # never shown in logs or reprs
    api_base: str = ""  # REST base with version path; empty = Discord's own
    gateway_url: str = ""  # gateway URL; empty = Discord's own
    shard_count: int = 0  # shards of the whole bot, all processes together; 0 = Discord's recommended count
    shard_ids: tuple[int, ...] = ()  # the shards this process runs; empty = all of them


@dataclass(frozen=True)
class StorageConfig:
    database: str = "kpopnews.db"  # the SQLite file, used when `url` is empty
    url: str = field(default="", repr=False)  # postgresql://…: may carry a password, never shown
    # days a story's clean text is kept after it was first stored (for `kpopnews retag`); 0 = for ever
    keep_text_days: float = 30.0

    @property
    def target(self) -> str:
        """Where the store lives: the PostgreSQL URL if one is set, else the SQLite file."""
        return self.url or self.database


@dataclass(frozen=True)
class PollingConfig:
    interval_seconds: float = 300.0
    timeout_seconds: float = 20.0  # total time for one feed or page request
    connect_timeout_seconds: float = 10.0
    max_feed_bytes: int = 10 * 1024 * 1024
    max_page_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 32  # feeds fetched at once, all hosts together
    per_host_concurrency: int = 2
    max_failures: int = 10  # consecutive failures before a source is disabled
    fetch_article_pages: bool = True  # fetch the page when a feed gives only an excerpt
    article_pages_per_poll: int = (
        20  # article pages one poll of a feed fetches at most (newest stories first)
    )


@dataclass(frozen=True)
class DeliveryConfig:
    max_age_hours: float = 24.0  # older stories are stored but never posted
    max_guild_sources: int = 10  # feeds one server may add from Discord
    max_dms_per_day: int = (
        10  # story DMs per follower per UTC day; past it, the day's summary DM takes the rest
    )


@dataclass(frozen=True)
class Config:
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    polling: PollingConfig = field(default_factory=PollingConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    sources: tuple[SourceConfig, ...] = DEFAULT_SOURCES
    path: Path | None = None  # the file it was read from, if any


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (or ./config.toml when it exists, else defaults); DISCORD_TOKEN and KPOPNEWS_DATABASE_URL
    from `env` win."""
    environ: Mapping[str, str] = os.environ if env is None else env
    raw: dict[str, Any] = {}
    used: Path | None = None
    if path is not None:
        used = Path(path)
        if not used.is_file():
            raise ConfigError(f"config file {used} not found")
    elif DEFAULT_CONFIG_PATH.is_file():
        used = DEFAULT_CONFIG_PATH
    if used is not None:
        import tomllib  # only with a file to read: a command run without one never loads the parser

        try:
            raw = tomllib.loads(used.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {used} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {used} is not valid TOML: {exc}") from None
    config = parse_config(raw, path=used)
    database_url = environ.get(DATABASE_URL_ENV, "").strip()
    if database_url:
        check_database_url(database_url, DATABASE_URL_ENV)
        config = _replace(config, storage=_replace(config.storage, url=database_url))
    token = environ.get("DISCORD_TOKEN")
    if token:
        config = _replace(config, discord=_replace(config.discord, token=token.strip()))
    return config


def parse_config(raw: dict[str, Any], *, path: Path | None = None) -> Config:
    known = {"discord", "storage", "polling", "delivery", "sources"}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown configuration key {key!r} (known: {', '.join(sorted(known))})")
    discord = _section(raw, "discord", DiscordConfig)
    for key in ("api_base", "gateway_url"):
        value = getattr(discord, key)
        if value and not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ConfigError(f"discord.{key} must be a URL, got {value!r}")
    _check_shards(discord)
    storage = _section(raw, "storage", StorageConfig)
    if not storage.database:
        raise ConfigError("storage.database must name a file")
    if storage.url:
        check_database_url(storage.url, "storage.url")
    if storage.keep_text_days < 0:
        raise ConfigError(
            f"storage.keep_text_days must be ≥ 0 (0: kept for ever), got {storage.keep_text_days}"
        )
    polling = _section(raw, "polling", PollingConfig)
    if polling.interval_seconds < 1:
        raise ConfigError(f"polling.interval_seconds must be ≥ 1, got {polling.interval_seconds}")
    for key in ("timeout_seconds", "connect_timeout_seconds"):
        if getattr(polling, key) <= 0:
            raise ConfigError(f"polling.{key} must be > 0")
    for key in (
        "max_feed_bytes",
        "max_page_bytes",
        "concurrency",
        "per_host_concurrency",
        "max_failures",
        "article_pages_per_poll",
    ):
        if getattr(polling, key) < 1:
            raise ConfigError(f"polling.{key} must be ≥ 1")
    if polling.max_redirects < 0:
        raise ConfigError("polling.max_redirects must be ≥ 0")
    delivery = _section(raw, "delivery", DeliveryConfig)
    if delivery.max_age_hours <= 0:
        raise ConfigError("delivery.max_age_hours must be > 0")
    if delivery.max_dms_per_day < 0:
        raise ConfigError("delivery.max_dms_per_day must be ≥ 0 (0: only the daily summary)")
    sources = DEFAULT_SOURCES
    if "sources" in raw:
        sources = _sources(raw["sources"])
    return Config(discord, storage, polling, delivery, sources, path)


def _check_shards(discord: DiscordConfig) -> None:
    if discord.shard_count < 0:
        raise ConfigError(
            f"discord.shard_count must be ≥ 0 (0 = Discord's recommended count), got {discord.shard_count}"
        )
    if not discord.shard_ids:
        return
    if discord.shard_count == 0:
        raise ConfigError(
            "discord.shard_ids needs discord.shard_count: the number of shards of all processes together"
        )
    for shard_id in discord.shard_ids:
        if (
            not isinstance(shard_id, int)
            or isinstance(shard_id, bool)
            or not 0 <= shard_id < discord.shard_count
        ):
            raise ConfigError(
                f"discord.shard_ids: {shard_id!r} is not a shard of {discord.shard_count} (0 to {discord.shard_count - 1})"
            )
    if len(set(discord.shard_ids)) != len(discord.shard_ids):
        raise ConfigError(f"discord.shard_ids lists a shard twice: {list(discord.shard_ids)}")


def is_postgres_url(text: str) -> bool:
    return text.lower().startswith(("postgresql://", "postgres://"))


def mask_url(url: str) -> str:
    """The URL as it may be shown: its password replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment).geturl()


def check_database_url(url: str, key: str) -> None:
    """A PostgreSQL URL with a database name, or a ConfigError in one line (the password never shown)."""
    shown = mask_url(url)
    if not is_postgres_url(url):
        raise ConfigError(
            f"{key} must be a postgresql:// URL (e.g. postgresql://kpopnews@host:5432/kpopnews), got {shown!r}"
        )
    try:
        parts = urlsplit(url)
        if "," not in parts.netloc:  # host1:5432,host2:5432 is valid, but no single port
            parts.port  # noqa: B018  # a port that is no number raises here
    except ValueError as exc:
        raise ConfigError(f"{key} {shown!r} is not a valid URL: {exc}") from None
    if not parts.path.strip("/"):
        raise ConfigError(f"{key} {shown!r} names no database: add /DBNAME after the host")


def _sources(value: Any) -> tuple[SourceConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError("sources must be an array of tables ([[sources]] with name and url)")
    result: list[SourceConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"sources[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table with name and url")
        unknown = set(item) - {"name", "url", "color"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: color, name, url)")
        url = item.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"{where}.url is required (a feed URL or a local file path)")
        name = item.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name must be a string")
        color = item.get("color")
        if color is not None:
            if isinstance(color, str) and color.startswith("#"):
                try:
                    color = int(color[1:], 16)
                except ValueError:
                    raise ConfigError(f"{where}.color must be a number or '#rrggbb'") from None
            if not isinstance(color, int) or isinstance(color, bool) or not 0 <= color <= 0xFFFFFF:
                raise ConfigError(f"{where}.color must be a number or '#rrggbb'")
        url = url.strip()
        if url in seen:
            raise ConfigError(f"{where}.url {url} is listed twice")
        seen.add(url)
        result.append(SourceConfig(name.strip() or url, url, color))
    return tuple(result)


def _section(raw: dict[str, Any], name: str, cls: type) -> Any:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{name} must be a table ([{name}])")
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in section.items():
        if not hasattr(defaults, key):
            known = ", ".join(sorted(f for f in defaults.__dataclass_fields__))
            raise ConfigError(f"unknown key {name}.{key} (known: {known})")
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is tuple and isinstance(value, list):  # TOML arrays: kept immutable
            value = tuple(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise ConfigError(f"{name}.{key} must be {_kind(expected)}, got {value!r}")
        if expected is float and not math.isfinite(value):  # TOML allows nan/inf; no timer can use them
            raise ConfigError(f"{name}.{key} must be a finite number, got {value!r}")
        values[key] = value
    return cls(**values)


def _kind(t: type) -> str:
    return {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        tuple: "an array",
    }.get(t, t.__name__)


def _replace(obj: Any, **changes: Any) -> Any:
    return replace(obj, **changes)
