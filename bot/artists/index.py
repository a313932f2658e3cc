"""The artist index: every artist by id, every name they go by, resolving what a person types to an artist
(any name, small typos, "V (BTS)"), and autocomplete. Built once per process from bot/artists/data.py."""

from __future__ import annotations

import asyncio
import bisect
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from bot.artists.data import (
    STAGE,
    Artist,
    NameSpellings,
    TaggingRules,
    build_artist_data,
    name_spellings,
)
from bot.artists.names import compact_key, is_hangul
from bot.models import ArtistRef

if TYPE_CHECKING:
    from bot.artists.tagging import StoryTagger


# The tables names are looked up in: key -> (artist id, kind), most likely first; shared key -> the artist it
# means when nothing says otherwise; every key more than one artist goes by.
NameTables = tuple[dict[str, list[tuple[str, int]]], dict[str, str], set[str]]


def name_tables(artists: dict[str, Artist], spellings: NameSpellings) -> NameTables:
    query_names: dict[str, list[tuple[str, int]]] = {}
    primary: dict[str, str] = {}
    shared_keys: set[str] = set()
    for key, owners in spellings.items():
        best_kind = {artist_id: min(forms.values()) for artist_id, forms in owners.items()}
        ranked = sorted(best_kind.items(), key=lambda o: (artists[o[0]].tier, o[1], o[0]))
        query_names[key] = ranked
        if len(owners) > 1:
            shared_keys.add(key)
            best = (artists[ranked[0][0]].tier, ranked[0][1])
            second = (artists[ranked[1][0]].tier, ranked[1][1])
            if best < second:
                primary[key] = ranked[0][0]
    return query_names, primary, shared_keys


class ArtistIndex:
    """Every artist and every name they go by: get, resolve a name (typos allowed), autocomplete. Tagging
    stories is the StoryTagger's (bot/artists/tagging.py), reached through tag()."""

    _cached: ArtistIndex | None = None
    _lock = threading.Lock()

    def __init__(self, artists: dict[str, Artist], rules: TaggingRules, shared_ok: dict[str, set[str]]):
        spellings = name_spellings(artists, shared_ok)
        self._setup(artists, rules, name_tables(artists, spellings), lambda: spellings)

    def _setup(
        self,
        artists: dict[str, Artist],
        rules: TaggingRules,
        names: NameTables,
        spellings: Callable[[], NameSpellings],
    ) -> None:
        """`spellings` gives every name's spellings when the tagger is built (the kept form decodes them only
        then: a search never needs them)."""
        self.artists = artists
        self.rules = rules
        self._query_names, self.primary, self.shared_keys = names
        self._sorted_keys = sorted(self._query_names)
        self._fuzzy_keys = [k for k in self._sorted_keys if len(k) >= 3]
        self._short_suggestions: dict[tuple[str, int], list[Artist]] = {}
        self._spellings = spellings
        self._tagger: StoryTagger | None = None
        self._tagger_lock = threading.Lock()

    @property
    def tagger(self) -> StoryTagger:
        """The story tagger, built on first use (thread-safe): a search never tags, and building it takes
        ~60 ms of a short command's start."""
        if self._tagger is None:
            with self._tagger_lock:
                if self._tagger is None:
                    from bot.artists.tagging import StoryTagger

                    self._tagger = StoryTagger(self, self._spellings())
        return self._tagger

    # --- loading -----------------------------------------------------------------------------------------

    @classmethod
    def load(cls, *, tagging: bool = True) -> ArtistIndex:
        """The packaged data, loaded once per process (thread-safe), from the kept form when there is one
        (bot/artists/cache.py). `tagging=False` leaves the tagger to be built on first use: for a command
        that only looks names up (a search); by default it is ready, so no first story pays for it."""
        if cls._cached is None:
            with cls._lock:
                if cls._cached is None:
                    cls._cached = cls._load_packaged()
        if tagging:
            cls._cached.tagger  # noqa: B018 (built now, off the event loop: load() runs in a thread)
        return cls._cached

    @classmethod
    def _load_packaged(cls) -> ArtistIndex:
        from bot.artists import cache

        sources = cache.packaged_bytes()
        key = cache.cache_key(sources)
        index = cls.__new__(cls)
        kept = cache.read(key)
        if kept is not None:
            index._setup(kept.artists, kept.rules, kept.names, kept.spellings)
            return index
        data = build_artist_data(json.loads(sources[0]), sources[1].decode("utf-8"))
        spellings = name_spellings(data.artists, data.shared_ok)
        names = name_tables(data.artists, spellings)
        cache.write(key, data.artists, data.rules, names, spellings)
        index._setup(data.artists, data.rules, names, lambda: spellings)
        return index

    @classmethod
    def from_data(cls, kpopnet: dict[str, Any], artists_toml: str) -> ArtistIndex:
        """Build from the two sources (tests use this with altered data); raises ArtistDataError."""
        data = build_artist_data(kpopnet, artists_toml)
        return cls(data.artists, data.rules, data.shared_ok)

    # --- lookups -------------------------------------------------------------------------------------------

    def get(self, artist_id: str) -> Artist | None:
        return self.artists.get(artist_id)

    def __len__(self) -> int:
        return len(self.artists)

    def __iter__(self) -> Iterator[Artist]:
        return iter(self.artists.values())

    def expand(self, artist_id: str) -> list[str]:
        """A group -> itself, its sub-units and their current members; anyone else -> itself."""
        artist = self.artists.get(artist_id)
        if artist is None:
            return []
        out: dict[str, None] = {artist_id: None}
        stack = [artist]
        while stack:
            current = stack.pop()
            if not current.is_group:
                continue
            for member in current.member_ids:
                out.setdefault(member, None)
            for unit in current.unit_ids:
                if unit not in out:
                    out[unit] = None
                    stack.append(self.artists[unit])
        return list(out)

    def owners(self, key: str) -> list[tuple[str, int]]:
        """The artists a name key (compact_key) belongs to, with what the name is to each, most likely first;
        a Korean particle after a Hangul name is looked through ("뷔가" -> 뷔)."""
        found = self._query_names.get(key)
        if found:
            return found
        if key and is_hangul(key):
            for suffix in self.rules.hangul_suffixes:
                if key.endswith(suffix) and key[: -len(suffix)] in self._query_names:
                    return self._query_names[key[: -len(suffix)]]
        return []

    def resolve(self, query: str) -> Artist | None:
        """The artist a person means by any of its names; small typos allowed. None if nobody close."""
        found = self.resolve_all(query)
        return found[0] if found else None

    def resolve_exact(self, query: str) -> list[Artist]:
        """Like resolve_all, without typo tolerance: only artists the query names exactly."""
        return self.resolve_all(query, fuzzy=False)

    def resolve_all(self, query: str, *, fuzzy: bool = True) -> list[Artist]:
        """Every artist the query names, most likely first (one, unless a name is shared)."""
        query = (query or "").strip()[:200]
        if not query:
            return []
        if query in self.artists:
            return [self.artists[query]]
        labelled = re.fullmatch(r"(.+?)\s*\((.+)\)\s*", query)  # "V (BTS)", as autocomplete shows it
        if labelled:
            within = self._within_group(labelled.group(1), labelled.group(2))
            if within:
                return within
        key = compact_key(query)
        exact = self.owners(key)
        if exact:
            return [self.artists[a] for a, _ in exact]
        split = self._split_group_member(query)
        if split:
            return split
        if fuzzy and len(key) >= 4:
            from rapidfuzz import fuzz, process  # only for a name not found as typed

            cutoff = 85 if len(key) >= 6 else 80
            best = process.extractOne(key, self._fuzzy_keys, scorer=fuzz.ratio, score_cutoff=cutoff)
            if best:
                return [self.artists[a] for a, _ in self._query_names[best[0]]]
        return []

    def _within_group(self, name: str, group: str) -> list[Artist]:
        groups = [a for a, _ in self.owners(compact_key(group)) if self.artists[a].is_group]
        if not groups:
            return []
        members: set[str] = set()
        for g in groups:
            members.update(self.expand(g))
            members.update(self.artists[g].former_member_ids)
        return [self.artists[a] for a, _ in self.owners(compact_key(name)) if a in members]

    def _split_group_member(self, query: str) -> list[Artist]:
        """ "BTS V", "Red Velvet Joy", "BTS's V": a group followed by one of its members."""
        words = re.sub(r"['’]s\b", "", query).split()
        for cut in range(1, len(words)):
            found = self._within_group(" ".join(words[cut:]), " ".join(words[:cut]))
            if found:
                return found
        return []

    def suggest(self, query: str, limit: int = 25) -> list[Artist]:
        """Autocomplete: artists whose names start with, contain or look like the query, best first."""
        limit = max(1, min(limit, 100))
        key = compact_key((query or "")[:100])
        if len(key) <= 2 and " " not in (query or "").strip():
            # one or two letters match thousands of names; the answer never changes, so keep it
            memo = self._short_suggestions.get((key, limit))
            if memo is None:
                memo = self._suggest(query, key, limit)
                if len(self._short_suggestions) < 20_000:
                    self._short_suggestions[(key, limit)] = memo
            return list(memo)
        return self._suggest(query, key, limit)

    def _suggest(self, query: str, key: str, limit: int) -> list[Artist]:
        scored: dict[str, tuple[int, int, int, int, str]] = {}

        def offer(klass: int, artist_id: str, kind: int, extra: int = 0) -> None:
            artist = self.artists[artist_id]
            rank = (klass, artist.tier, kind, extra, artist.label.casefold())
            if artist_id not in scored or rank < scored[artist_id]:
                scored[artist_id] = rank

        if not key:
            for artist in self.artists.values():
                if artist.tier == 1 and (artist.is_group and not artist.parent_id):
                    offer(0, artist.id, STAGE)
            return self._ranked(scored, limit)
        for artist_id, kind in self.owners(key):
            offer(0, artist_id, kind)
        if " " in query.strip() or "(" in query:  # "bts v", "V (BTS)": a member named with the group
            for artist in self.resolve_exact(query):
                offer(0, artist.id, STAGE)
        start = bisect.bisect_left(self._sorted_keys, key)
        for i in range(start, len(self._sorted_keys)):
            k = self._sorted_keys[i]
            if not k.startswith(key):
                break
            for artist_id, kind in self._query_names[k]:
                offer(1, artist_id, kind, len(k))
        if len(scored) < limit and len(key) >= 2:
            for k in self._sorted_keys:
                if key in k and not k.startswith(key):
                    for artist_id, kind in self._query_names[k]:
                        offer(2, artist_id, kind, len(k))
        if len(scored) < limit and len(key) >= 3:
            from rapidfuzz import fuzz, process

            for k, score, _ in process.extract(
                key, self._fuzzy_keys, scorer=fuzz.ratio, limit=limit, score_cutoff=65
            ):
                for artist_id, kind in self._query_names[k]:
                    offer(3, artist_id, kind, 100 - int(score))
        return self._ranked(scored, limit)

    def _ranked(self, scored: dict[str, tuple[int, int, int, int, str]], limit: int) -> list[Artist]:
        order = sorted(scored, key=lambda a: scored[a])
        return [self.artists[a] for a in order[:limit]]

    # --- tagging -------------------------------------------------------------------------------------------

    def tag(self, title: str, text: str, categories: Sequence[str] = ()) -> list[ArtistRef]:
        """The artists a story is about, most relevant first."""
        return [ref for ref, _ in self.tagger.tag_weighted(title, text, categories)]

    def tag_weighted(
        self, title: str, text: str, categories: Sequence[str] = ()
    ) -> list[tuple[ArtistRef, float]]:
        """Like tag(), with each artist's relevance (title and lead weigh more than a passing mention)."""
        return self.tagger.tag_weighted(title, text, categories)


async def load_artist_index(
    err: TextIO | None = None, *, without: str = "stories get no artists"
) -> ArtistIndex | None:
    """The packaged index, loaded off the event loop; None with a one-line warning on `err` when the data
    cannot be loaded (`without` says what the user loses), so a data mistake never stops the bot."""
    try:
        return await asyncio.to_thread(ArtistIndex.load)
    except Exception as exc:
        if err is not None:
            print(f"kpopnews: warning: artist data cannot be loaded ({exc}); {without}", file=err)
        return None
