"""The built artist index kept on disk, so a short command (`kpopnews search V`) does not merge and check the
whole artist data again: building takes ~100 ms of CPU, reading the kept form ~10 ms.

The kept form is what the index is built from and what building it costs: the Artist records, the tagging
rules and every name's spellings, as plain values in `marshal` format (no code runs when it is read). It is
keyed by a checksum of the two data files and of the modules that build from them, so any change to the data
or to the way it is merged makes a new one; a file that cannot be read or written is simply not used (the index
is built as before). Where: $KPOPNEWS_CACHE_DIR, else $XDG_CACHE_HOME/kpopnews, else ~/.cache/kpopnews."""

from __future__ import annotations

import logging
import marshal
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.artists.data import Artist, NameSpellings, TaggingRules

if TYPE_CHECKING:
    from bot.artists.index import NameTables

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "KPOPNEWS_CACHE_DIR"
FORMAT = 1  # bump when the kept form changes shape
_DATA = Path(__file__).resolve().parent.parent / "data"
_SOURCES = ("kpopnet.min.json", "artists.toml")
# the modules that turn the data into an index: a change to any of them is a change of the index
_BUILDERS = ("data.py", "names.py", "index.py", "cache.py")
_ARTIST_FIELDS = tuple(f.name for f in fields(Artist))
_RULES_FIELDS = tuple(f.name for f in fields(TaggingRules))
STALE_AFTER = 7 * 86400  # seconds: a kept form of other data unused this long is deleted


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kpopnews"


def packaged_bytes() -> tuple[bytes, bytes]:
    """The two shipped data files as bytes: kpopnet.min.json and artists.toml."""
    return (_DATA / _SOURCES[0]).read_bytes(), (_DATA / _SOURCES[1]).read_bytes()


def cache_key(sources: tuple[bytes, bytes]) -> str:
    """A checksum of the data and of the code that builds the index from it (CRC-32 and length of each part:
    a cache key against accidental change, not a defence against a forger who can write the cache folder)."""
    here = Path(__file__).resolve().parent
    parts = [*sources, *((here / name).read_bytes() for name in _BUILDERS)]
    return "-".join(f"{zlib.crc32(p):08x}{len(p):x}" for p in parts)


@dataclass(frozen=True)
class KeptIndex:
    """What an index is set up from, as read back: its artists, tagging rules and name tables, and a function
    giving every name's spellings (decoded only when called: only the tagger needs them)."""

    artists: dict[str, Artist]
    rules: TaggingRules
    names: NameTables
    spellings: Callable[[], NameSpellings]


def _path(key: str) -> Path:
    return cache_dir() / f"artist-index-{key}.marshal"


def read(key: str) -> KeptIndex | None:
    """The kept index for this key, or None (missing, another key, unreadable)."""
    path = _path(key)
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        fmt, stored_key, artist_rows, rules_row, names, spellings_blob = marshal.loads(raw)
        if fmt != FORMAT or stored_key != key:
            return None
        artists = {row[0]: Artist(*row) for row in artist_rows}
        rules = TaggingRules(*rules_row)
        query_names, primary, shared_keys = names
    except (ValueError, EOFError, TypeError) as exc:  # a torn or foreign file: build instead
        log.debug("artist index cache %s unusable: %s", path, exc)
        return None

    def spellings() -> NameSpellings:
        found: NameSpellings = marshal.loads(spellings_blob)
        return found

    return KeptIndex(artists, rules, (query_names, primary, shared_keys), spellings)


def write(
    key: str, artists: dict[str, Artist], rules: TaggingRules, names: NameTables, spellings: NameSpellings
) -> None:
    """Keep the index for the next process; quietly nothing when the folder is not writable."""
    path = _path(key)
    payload: Any = (
        FORMAT,
        key,
        [tuple(getattr(a, f) for f in _ARTIST_FIELDS) for a in artists.values()],
        tuple(getattr(rules, f) for f in _RULES_FIELDS),
        names,
        marshal.dumps(spellings),  # a blob of its own: decoded only for the tagger
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(marshal.dumps(payload))
        os.replace(temporary, path)  # readers see the old file or the whole new one, never half of it
    except (OSError, ValueError) as exc:
        log.debug("artist index cache not written to %s: %s", path.parent, exc)
        return
    # the kept forms of earlier data or code: another checkout may still use one, so only old ones go
    for old in path.parent.glob("artist-index-*.marshal"):
        try:
            if old != path and time.time() - old.stat().st_mtime > STALE_AFTER:
                old.unlink()
        except OSError:
            pass
