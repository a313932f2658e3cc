"""Artists: the data (kpopnet.json girl groups + the project's own artists.toml), name resolution,
autocomplete, and tagging stories with the artists they are about.

Everything here is plain data and CPU work: no I/O after `ArtistIndex.load()`, no Discord.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
import threading
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import accumulate
from typing import Any, TextIO

from rapidfuzz import fuzz, process

from bot.models import ArtistRef

# Name kinds, best first: what a name is to its artist (also the tie-break order when resolving).
STAGE, ALIAS, REAL, GIVEN = 0, 1, 2, 3
DEFAULT_TIER = 3


class ArtistDataError(Exception):
    """The artist data is inconsistent; the message names the entry and what to fix."""


@dataclass(frozen=True)
class Artist:
    """An idol, a soloist, a group or a sub-unit."""

    id: str
    name: str
    hangul: str | None
    real_name: str | None
    real_name_hangul: str | None
    group_ids: tuple[str, ...]  # idols: every group/unit they are or were in; units: (parent,)
    aliases: tuple[str, ...]
    is_group: bool
    ambiguous: bool  # the stage name alone needs context in a story (short, shared or an everyday word)
    member_ids: tuple[str, ...] = ()  # groups: current members (every member when none is current)
    former_member_ids: tuple[str, ...] = ()
    unit_ids: tuple[str, ...] = ()  # groups: their sub-units
    parent_id: str | None = None  # sub-units: the group they belong to
    main_group_id: str | None = None  # idols: the group named next to them ("V (BTS)")
    main_group_name: str | None = None
    former_group_ids: tuple[str, ...] = ()
    tier: int = DEFAULT_TIER  # 1 = the best-known acts; breaks ties between artists sharing a name
    source: str = "kpopnews"  # "kpopnet" or "kpopnews" (artists.toml)

    def ref(self) -> ArtistRef:
        return ArtistRef(self.id, self.name, None if self.is_group else self.main_group_name)

    @property
    def label(self) -> str:
        """How a person tells them apart: "V (BTS)", "BTS", "IU"."""
        if not self.is_group and self.main_group_name:
            return f"{self.name} ({self.main_group_name})"
        return self.name


# --- name normalisation ---------------------------------------------------------------------------------

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‛": "'", "′": "'", "`": "'", "´": "'", "＇": "'"})
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def fold(text: str) -> str:
    """Lower case, compatibility forms folded, accents dropped (Rosé = Rose), curly quotes straightened."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    decomposed = unicodedata.normalize("NFD", text)
    # drop combining marks but keep Hangul syllables whole (NFD splits them into jamo)
    out = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", out).casefold()


def compact_key(text: str) -> str:
    """The key every name is looked up by: folded, letters and digits only ("(G)I-DLE" -> "gidle")."""
    return "".join(c for c in fold(text) if c.isalnum())


def _shape_key(text: str) -> str:
    """Like compact_key but keeps the dots and brackets that tell "D.O." from "do" and "f(x)" from "FX"."""
    kept = "".join(c for c in fold(text) if c.isalnum() or c in ".:()&")
    return kept.rstrip(".")


def slugify(text: str) -> str:
    text = fold(text)
    text = re.sub(r"[^0-9a-z\uac00-\ud7a3]+", "-", text).strip("-")
    return text or "x"


def _is_hangul(text: str) -> bool:
    return bool(_HANGUL.search(text))


# --- the data --------------------------------------------------------------------------------------------


def _person_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """The _Draft fields an idol and a soloist entry of artists.toml share."""
    return {
        "hangul": entry.get("hangul"),
        "real": entry.get("real"),
        "real_hangul": entry.get("real_hangul"),
        "aliases": list(entry.get("aliases", [])),
        "shared": set(entry.get("shared", [])),
        "ambiguous": bool(entry.get("ambiguous", False)),
        "tier": entry.get("tier"),
    }


@dataclass
class _Draft:
    """A mutable artist while the data is being merged."""

    id: str
    name: str
    is_group: bool
    where: str  # where it was defined, for error messages
    hangul: str | None = None
    real: str | None = None
    real_hangul: str | None = None
    aliases: list[str] = field(default_factory=list)
    shared: set[str] = field(default_factory=set)
    ambiguous: bool = False
    tier: int | None = None
    groups: list[str] = field(default_factory=list)  # ordered, for idols
    former_groups: set[str] = field(default_factory=set)
    members: list[str] = field(default_factory=list)  # for groups
    former_members: set[str] = field(default_factory=set)
    parent: str | None = None
    home_group: str | None = None
    main_group: str | None = None  # explicit override ("" = none)
    debut: str | None = None
    disbanded: bool = False
    source: str = "kpopnews"


_MEMBER_FIELDS = {"id", "name", "hangul", "real", "real_hangul", "aliases", "ambiguous", "shared", "former",
                  "main_group", "tier", "ref"}  # fmt: skip
_GROUP_FIELDS = {
    "id",
    "name",
    "hangul",
    "aliases",
    "debut",
    "tier",
    "members",
    "parent",
    "shared",
    "disbanded",
}
_SOLOIST_FIELDS = {"id", "name", "hangul", "real", "real_hangul", "aliases", "ambiguous", "shared", "tier",
                   "main_group"}  # fmt: skip
_KP_GROUP_FIELDS = {"match", "id", "name", "aliases", "tier", "add_members", "shared"}
_KP_IDOL_FIELDS = {"match", "id", "name", "real", "real_hangul", "aliases", "ambiguous", "shared", "tier",
                   "main_group"}  # fmt: skip


def _check_fields(entry: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ArtistDataError(f"{where}: expected a table, got {type(entry).__name__}")
    unknown = set(entry) - allowed
    if unknown:
        raise ArtistDataError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    for key in ("name", "hangul", "real", "real_hangul", "id", "match", "parent", "main_group", "ref"):
        if key in entry and not isinstance(entry[key], str):
            raise ArtistDataError(f"{where}: field {key!r} must be a string")
    if "name" in entry and not entry["name"].strip():
        raise ArtistDataError(f"{where}: empty name")
    for key in ("aliases", "shared"):
        if key in entry and (
            not isinstance(entry[key], list) or not all(isinstance(a, str) and a.strip() for a in entry[key])
        ):
            raise ArtistDataError(f"{where}: field {key!r} must be a list of non-empty strings")
    if "tier" in entry and entry["tier"] not in (1, 2, 3):
        raise ArtistDataError(f"{where}: tier must be 1, 2 or 3")
    return entry


@dataclass
class _TaggingRules:
    common_words: frozenset[str]
    given_names: frozenset[str]
    phrase_words: frozenset[str]
    korean_words: frozenset[str]
    strong_hangul: frozenset[str]
    hangul_suffixes: tuple[str, ...]
    exclude_before: dict[str, frozenset[str]]
    exclude_after: dict[str, frozenset[str]]


class _Builder:
    """Merges kpopnet.json and artists.toml into drafts, validating as it goes."""

    def __init__(self) -> None:
        self.drafts: dict[str, _Draft] = {}

    def add(self, draft: _Draft) -> _Draft:
        if not re.fullmatch(r"[0-9a-z\uac00-\ud7a3][0-9a-z\uac00-\ud7a3-]*", draft.id):
            raise ArtistDataError(f"{draft.where}: id {draft.id!r} must be a lower-case slug (a-z, 0-9, -)")
        if draft.id in self.drafts:
            raise ArtistDataError(
                f"{draft.where}: id {draft.id!r} is already used by {self.drafts[draft.id].where}; give it an `id`"
            )
        self.drafts[draft.id] = draft
        return draft

    # kpopnet ------------------------------------------------------------------------------------------

    def load_kpopnet(self, data: dict[str, Any], corrections: dict[str, Any]) -> None:
        {g["id"]: g for g in data["groups"]}
        idols = {i["id"]: i for i in data["idols"]}
        group_fix: dict[str, dict[str, Any]] = {}
        for n, fix in enumerate(corrections.get("group", [])):
            where = f"artists.toml [[kpopnet.group]] #{n + 1}"
            _check_fields(fix, _KP_GROUP_FIELDS, where)
            if "match" not in fix:
                raise ArtistDataError(f"{where}: `match` (the kpopnet group name) is required")
            if fix["match"] in group_fix:
                raise ArtistDataError(
                    f"{where}: group {fix['match']!r} is corrected twice; merge the entries"
                )
            group_fix[fix["match"]] = fix | {"_where": where}
        idol_fix: dict[str, dict[str, Any]] = {}
        for n, fix in enumerate(corrections.get("idol", [])):
            where = f"artists.toml [[kpopnet.idol]] #{n + 1} ({fix.get('match')!r})"
            _check_fields(fix, _KP_IDOL_FIELDS, where)
            if "match" not in fix or "/" not in fix["match"]:
                raise ArtistDataError(f"{where}: `match` must be 'Group/Idol' (or '/Idol' for no group)")
            idol_fix[fix["match"]] = fix | {"_where": where}

        group_slug: dict[str, str] = {}
        by_group_name = {g["name"]: g for g in data["groups"]}
        for name in group_fix:
            if name not in by_group_name:
                raise ArtistDataError(f"{group_fix[name]['_where']}: no kpopnet group is named {name!r}")
        for g in sorted(data["groups"], key=lambda g: g["id"]):
            fix = group_fix.get(g["name"], {})
            slug = fix.get("id") or slugify(fix.get("name") or g["name"])
            draft = self.add(
                _Draft(
                    id=slug,
                    name=fix.get("name") or g["name"],
                    is_group=True,
                    where=f"kpopnet group {g['name']!r}",
                    hangul=g.get("name_original") or None,
                    aliases=_split_alias(g.get("name_alias")) + list(fix.get("aliases", [])),
                    shared=set(fix.get("shared", [])),
                    tier=fix.get("tier"),
                    debut=g.get("debut_date"),
                    disbanded=bool(g.get("disband_date")),
                    source="kpopnet",
                )
            )
            group_slug[g["id"]] = slug
            if fix.get("name") and fix["name"] != g["name"]:
                draft.aliases.append(g["name"])
        for g in data["groups"]:
            if g.get("parent_id"):
                if g["parent_id"] not in group_slug:
                    raise ArtistDataError(f"kpopnet group {g['name']!r}: parent {g['parent_id']} is unknown")
                self.drafts[group_slug[g["id"]]].parent = group_slug[g["parent_id"]]

        # which (group name, idol name) pairs exist, to apply corrections and to report unknown ones
        membership: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for g in data["groups"]:
            for m in g["members"]:
                if m["idol_id"] not in idols:
                    raise ArtistDataError(f"kpopnet group {g['name']!r}: member {m['idol_id']} is unknown")
                membership.setdefault(m["idol_id"], []).append((g, m))
        used_fixes: set[str] = set()
        for idol in sorted(data["idols"], key=lambda i: i["id"]):
            links = membership.get(idol["id"], [])
            fix: dict[str, Any] = {}
            for g, _ in links:
                key = f"{g['name']}/{idol['name']}"
                if key in idol_fix:
                    fix = idol_fix[key]
                    used_fixes.add(key)
            if not links and f"/{idol['name']}" in idol_fix:
                fix = idol_fix[f"/{idol['name']}"]
                used_fixes.add(f"/{idol['name']}")
            main = self._kpopnet_main_group(links, fix, group_slug)
            name = fix.get("name") or idol["name"]
            slug = fix.get("id") or (f"{main}-{slugify(name)}" if main else slugify(name))
            if slug in self.drafts and not fix.get("id"):
                slug = f"{slug}-{slugify(idol['real_name'])}"
            real = fix.get("real") or idol.get("real_name") or None
            if real and real.startswith("unknown"):
                real = None
            real_hangul = fix.get("real_hangul") or idol.get("real_name_original") or None
            if real_hangul and real_hangul.startswith("unknown"):
                real_hangul = None
            aliases = _split_alias(idol.get("name_alias")) + list(fix.get("aliases", []))
            if fix.get("name") and fix["name"] != idol["name"]:
                aliases.append(idol["name"])
            draft = self.add(
                _Draft(
                    id=slug,
                    name=name,
                    is_group=False,
                    where=f"kpopnet idol {idol['name']!r} ({idol['id']})",
                    hangul=idol.get("name_original") or None,
                    real=real,
                    real_hangul=real_hangul,
                    aliases=aliases,
                    # kpopnet's own aliases are its data, not our choice: a clash there is simply shared
                    shared=set(fix.get("shared", [])) | set(_split_alias(idol.get("name_alias"))),
                    ambiguous=bool(fix.get("ambiguous", False)),
                    tier=fix.get("tier"),
                    main_group=main if main is not None else "",
                    source="kpopnet",
                )
            )
            for g, m in links:
                gid = group_slug[g["id"]]
                draft.groups.append(gid)
                group = self.drafts[gid]
                group.members.append(slug)
                if not m.get("current", True):
                    draft.former_groups.add(gid)
                    group.former_members.add(slug)
        unused = set(idol_fix) - used_fixes
        if unused:
            key = sorted(unused)[0]
            raise ArtistDataError(f"{idol_fix[key]['_where']}: no kpopnet idol matches {key!r}")
        for name, fix in group_fix.items():
            gid = group_slug[by_group_name[name]["id"]]
            for n, member in enumerate(fix.get("add_members", [])):
                self._member(gid, member, f"{fix['_where']} add_members #{n + 1}")

    def _kpopnet_main_group(
        self, links: list[tuple[dict[str, Any], dict[str, Any]]], fix: dict[str, Any], slugs: dict[str, str]
    ) -> str | None:
        if "main_group" in fix:
            return fix["main_group"] or None

        def rank(link: tuple[dict[str, Any], dict[str, Any]]) -> tuple[int, int, str]:
            g, m = link
            japanese = 1 if re.search(r"\d\d$", g["name"]) else 0  # AKB48 and friends: not the K-pop act
            if m.get("current", True) and not g.get("disband_date"):
                state = 0
            elif g.get("disband_date"):
                state = 1
            else:
                state = 2
            return (japanese, state, (g.get("debut_date") or "9999"))

        main_links = [link for link in links if not link[0].get("parent_id")] or links
        if not main_links:
            return None
        return slugs[min(main_links, key=rank)[0]["id"]]

    # artists.toml -------------------------------------------------------------------------------------

    def _member(self, group_id: str, entry: Any, where: str) -> None:
        _check_fields(entry, _MEMBER_FIELDS, where)
        group = self.drafts[group_id]
        if "ref" in entry:
            if set(entry) - {"ref", "former"}:
                raise ArtistDataError(f"{where}: a `ref` member takes only `former`")
            self._refs.append((group_id, entry["ref"], bool(entry.get("former")), where))
            return
        if "name" not in entry:
            raise ArtistDataError(f"{where}: a member needs `name` (or `ref` to an artist defined elsewhere)")
        draft = self.add(
            _Draft(
                id=entry.get("id") or f"{group_id}-{slugify(entry['name'])}",
                name=entry["name"].strip(),
                is_group=False,
                where=f"{where} ({entry['name']!r})",
                **_person_fields(entry),
                home_group=group_id,
                main_group=entry.get("main_group"),
            )
        )
        draft.groups.append(group_id)
        group.members.append(draft.id)
        if entry.get("former"):
            draft.former_groups.add(group_id)
            group.former_members.add(draft.id)

    def load_toml(self, data: dict[str, Any]) -> None:
        self._refs: list[tuple[str, str, bool, str]] = []
        for n, entry in enumerate(data.get("soloist", [])):
            where = f"artists.toml [[soloist]] #{n + 1} ({entry.get('name')!r})"
            _check_fields(entry, _SOLOIST_FIELDS, where)
            if "name" not in entry:
                raise ArtistDataError(f"{where}: `name` is required")
            self.add(
                _Draft(
                    id=entry.get("id") or slugify(entry["name"]),
                    name=entry["name"].strip(),
                    is_group=False,
                    where=where,
                    **_person_fields(entry),
                    main_group=entry.get("main_group", ""),
                )
            )
        groups = data.get("group", [])
        for n, entry in enumerate(groups):
            where = f"artists.toml [[group]] #{n + 1} ({entry.get('name')!r})"
            _check_fields(entry, _GROUP_FIELDS, where)
            if "name" not in entry or "id" not in entry:
                raise ArtistDataError(f"{where}: a group needs `id` and `name`")
            self.add(
                _Draft(
                    id=entry["id"],
                    name=entry["name"].strip(),
                    is_group=True,
                    where=where,
                    hangul=entry.get("hangul"),
                    aliases=list(entry.get("aliases", [])),
                    shared=set(entry.get("shared", [])),
                    tier=entry.get("tier"),
                    debut=entry.get("debut"),
                    disbanded=bool(entry.get("disbanded", False)),
                    parent=entry.get("parent"),
                )
            )
        for n, entry in enumerate(groups):
            where = f"artists.toml [[group]] #{n + 1} ({entry['name']!r})"
            members = entry.get("members", [])
            if not isinstance(members, list):
                raise ArtistDataError(f"{where}: `members` must be a list")
            for m, member in enumerate(members):
                self._member(entry["id"], member, f"{where} member #{m + 1}")

    def resolve_refs(self) -> None:
        for group_id, ref, former, where in self._refs:
            idol = self.drafts.get(ref)
            if idol is None or idol.is_group:
                close = process.extractOne(ref, [d for d in self.drafts if not self.drafts[d].is_group])
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ArtistDataError(f"{where}: `ref = {ref!r}` names no idol{hint}")
            group = self.drafts[group_id]
            if ref in group.members:
                raise ArtistDataError(f"{where}: {ref!r} is listed twice in {group_id!r}")
            group.members.append(ref)
            idol.groups.append(group_id)
            if former:
                group.former_members.add(ref)
                idol.former_groups.add(group_id)
        for draft in self.drafts.values():
            if draft.parent is not None and (
                draft.parent not in self.drafts or not self.drafts[draft.parent].is_group
            ):
                raise ArtistDataError(f"{draft.where}: parent {draft.parent!r} is no group")
            if draft.main_group and draft.main_group not in self.drafts:
                raise ArtistDataError(f"{draft.where}: main_group {draft.main_group!r} is no group")

    # finish -----------------------------------------------------------------------------------------------

    def freeze(self, rules: _TaggingRules) -> dict[str, Artist]:
        drafts = self.drafts
        # a parent cycle would make expand() loop: refuse it here
        for draft in drafts.values():
            seen = {draft.id}
            parent = draft.parent
            while parent:
                if parent in seen:
                    raise ArtistDataError(f"{draft.where}: sub-unit parents form a cycle through {parent!r}")
                seen.add(parent)
                parent = drafts[parent].parent
        units: dict[str, list[str]] = {}
        for draft in drafts.values():
            if draft.parent:
                units.setdefault(draft.parent, []).append(draft.id)

        def top(group_id: str) -> str:
            while drafts[group_id].parent:
                group_id = drafts[group_id].parent  # type: ignore[assignment]
            return group_id

        artists: dict[str, Artist] = {}
        for draft in drafts.values():
            if draft.is_group:
                current = [m for m in draft.members if m not in draft.former_members]
                members = current or list(draft.members)  # disbanded groups: everyone who was in it
                tier = draft.tier or (drafts[draft.parent].tier if draft.parent else None) or DEFAULT_TIER
                artists[draft.id] = Artist(
                    id=draft.id,
                    name=draft.name,
                    hangul=draft.hangul,
                    real_name=None,
                    real_name_hangul=None,
                    group_ids=(draft.parent,) if draft.parent else (),
                    aliases=tuple(dict.fromkeys(draft.aliases)),
                    is_group=True,
                    ambiguous=False,
                    member_ids=tuple(dict.fromkeys(members)),
                    former_member_ids=tuple(
                        m for m in draft.members if m in draft.former_members and current
                    ),
                    unit_ids=tuple(sorted(units.get(draft.id, []))),
                    parent_id=draft.parent,
                    tier=tier,
                    source=draft.source,
                )
                continue
            if draft.main_group is not None:
                main = draft.main_group or None
            elif draft.home_group:
                main = draft.home_group
            else:
                main = None
            if main and drafts[main].parent and draft.home_group == main:
                main = main  # a unit as home group (NCT 127): named as it is
            group_tiers = [
                artists_tier
                for g in draft.groups
                if (artists_tier := drafts[g].tier or (drafts[top(g)].tier if drafts[g].parent else None))
            ]
            tier = draft.tier or (min(group_tiers) if group_tiers and main else None) or DEFAULT_TIER
            if draft.main_group == "" and draft.tier is None and group_tiers:
                tier = min(group_tiers)
            artists[draft.id] = Artist(
                id=draft.id,
                name=draft.name,
                hangul=draft.hangul,
                real_name=draft.real,
                real_name_hangul=draft.real_hangul,
                group_ids=tuple(dict.fromkeys(draft.groups)),
                aliases=tuple(dict.fromkeys(draft.aliases)),
                is_group=False,
                ambiguous=draft.ambiguous,
                main_group_id=main,
                main_group_name=drafts[main].name if main else None,
                former_group_ids=tuple(g for g in draft.groups if g in draft.former_groups),
                tier=tier,
                source=draft.source,
            )
        return artists


def _split_alias(text: str | None) -> list[str]:
    if not text:
        return []
    return [a.strip() for a in text.split(",") if a.strip()]


def _load_rules(data: dict[str, Any]) -> _TaggingRules:
    tagging = data.get("tagging", {})
    before: dict[str, set[str]] = {}
    after: dict[str, set[str]] = {}
    for n, rule in enumerate(tagging.get("exclude", [])):
        where = f"artists.toml [[tagging.exclude]] #{n + 1}"
        _check_fields(rule, {"names", "before", "after"}, where)
        for name in rule.get("names", []):
            key = compact_key(name)
            before.setdefault(key, set()).update(fold(w) for w in rule.get("before", []))
            after.setdefault(key, set()).update(fold(w) for w in rule.get("after", []))
    return _TaggingRules(
        common_words=frozenset(compact_key(w) for w in tagging.get("common_words", [])),
        given_names=frozenset(compact_key(w) for w in tagging.get("given_names", [])),
        phrase_words=frozenset(compact_key(w) for w in tagging.get("phrase_words", [])),
        korean_words=frozenset(tagging.get("korean_words", [])),
        strong_hangul=frozenset(tagging.get("strong_hangul", [])),
        hangul_suffixes=tuple(sorted(tagging.get("hangul_suffixes", []), key=len, reverse=True)),
        exclude_before={k: frozenset(v) for k, v in before.items()},
        exclude_after={k: frozenset(v) for k, v in after.items()},
    )


# --- the name tables ---------------------------------------------------------------------------------------

_KOREAN_SURNAMES = frozenset(
    "kim lee yi park pak choi choe jung jeong chung kang cho jo yoon yun jang chang lim im han oh shin sin seo "
    "suh kwon hwang ahn an song yoo yu ryu hong jeon jun go ko moon mun yang son sohn bae baek paik heo huh "
    "nam noh roh ha kwak gwak sung seong cha joo ju woo wu koo gu min ok yook yuk na ji jin chae do doh pyo "
    "bang byun byeon won hyun chu ma gong seok eom uhm um ki"
    .split()
)  # fmt: skip


def _given_name(real: str | None, real_native: str | None) -> str | None:
    """The given name of a real name written family name first ("Kim Taehyung" -> "Taehyung")."""
    if not real or not real_native:
        return None
    native_latin = all(ord(c) < 0x250 for c in real_native if not c.isspace())
    parts = real.replace("-", "").split()
    if native_latin or len(parts) < 2:
        return None
    if _is_hangul(real_native) and fold(parts[0]) not in _KOREAN_SURNAMES:
        return None
    given = " ".join(parts[1:])
    return given if len(compact_key(given)) >= 3 else None


@dataclass(frozen=True)
class _Entry:
    artist_id: str
    kind: int
    shape: str | None  # the text must have this shape (dots/brackets) to match: "d.o", "f(x)"
    exact: str | None  # the text matching this exactly (case included) is strong on its own: "IU", "TWICE"
    weak: bool  # needs context in the story
    word: bool  # an everyday word: lower-case text never matches
    phrase: bool  # an everyday multi-word phrase ("Red Velvet"): needs every word Capitalized
    ntok: int  # tokens in the name as written; text that splits it further must look like a name


@dataclass
class _Occurrence:
    start: int
    end: int
    tok_start: int
    tok_end: int
    segment: str  # "title", "lead", "body"
    surface: str
    key: str
    entries: list[_Entry]
    title_case: bool = False  # in a Title Case headline, capitals say nothing
    introduced: bool = False  # right after "singer", "rapper", "member": the text says it is a person
    chosen: list[str] = field(default_factory=list)
    bound_to: str | None = (
        None  # "member": a group glued to a member ("BTS's V"); else the group it is glued to
    )


_TOKEN = re.compile(
    r"[0-9A-Za-z\u00c0-\u024f]+(?:[.:][0-9A-Za-z\u00c0-\u024f]+)*\.?|[\uac00-\ud7a3]+|[\u3040-\u30ff\u4e00-\u9fff]+"
)
_JOINABLE_GAP = re.compile(r"^[ \t\-'()*★☆&+/_:.]{0,3}$")
_CONTRACTION_TAILS = frozenset({"s", "t", "ve", "re", "ll", "d", "m"})
_ROLE_WORDS = frozenset(
    "member members leader maknae vocalist vocalists rapper rappers singer singers dancer dancers idol idols "
    "star stars frontman duo unit trio boy girl youngest oldest eldest fellow main lead sub".split()
)
_INTRO_WORDS = frozenset(
    "singer rapper soloist idol vocalist member star artist producer songstress musician leader maknae "
    "singers rappers members".split()
)
_GLUE_WORDS = _ROLE_WORDS | {"s", "of", "from", "the"}
_SENTENCE_STOPWORDS = frozenset(
    "a an and as at but by for from if in into like meanwhile of on or so the then when while with after "
    "before since though although because during also even just only once".split()
)
_MAX_NGRAM = 6


_KEY_CACHE: dict[str, str] = {}


def _token_key(token: str) -> str:
    """compact_key for one token, fast for plain ASCII words (almost all of an English story)."""
    if token.isascii():
        return token.lower().replace(".", "").replace(":", "")
    key = _KEY_CACHE.get(token)
    if key is None:
        key = compact_key(token)
        if len(_KEY_CACHE) < 50_000:
            _KEY_CACHE[token] = key
    return key


def _token_keys(words: list[str], all_ascii: bool = False) -> list[str]:
    """_token_key of every word, the ASCII ones lowered and stripped in one pass over the joined text (speed)."""
    if not words:
        return []
    keys = "\x00".join(words).lower().replace(".", "").replace(":", "").split("\x00")
    if not all_ascii:
        for i, word in enumerate(words):
            if not word.isascii():
                keys[i] = _token_key(word)
    return keys


def _fold_token(word: str) -> str:
    """fold() of one token: plain lower() for ASCII (tokens hold no quotes; NFKC/NFD change no ASCII)."""
    return word.lower() if word.isascii() else fold(word)


_SPLIT = re.compile(f"({_TOKEN.pattern})")
_SPLIT_ASCII = re.compile(r"([0-9A-Za-z]+(?:[.:][0-9A-Za-z]+)*\.?)")  # _SPLIT where only ASCII can occur


class _Tokens:
    """The words of a text as (start, end, word), computed with one split and no match objects (speed)."""

    def __init__(self, text: str) -> None:
        # the same tokens; on ASCII text the pattern without its non-ASCII alternatives runs ~20% faster
        parts = (_SPLIT_ASCII if text.isascii() else _SPLIT).split(text)
        self.words = parts[1::2]
        self.gaps = parts[0::2]
        self.offsets = [0, *accumulate(map(len, parts))]

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, i: int) -> tuple[int, int, str]:
        if i < 0:
            raise IndexError(i)
        return (self.offsets[2 * i + 1], self.offsets[2 * i + 2], self.words[i])

    def span(self, i: int, j: int) -> list[tuple[int, int, str]]:
        return [self[k] for k in range(i, j)]


def _tokens(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


def _looks_title_case(text: str) -> bool:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z']+", text) if len(w) >= 4]
    if len(words) < 3:
        return False
    return sum(1 for w in words if w[0].isupper()) / len(words) >= 0.7


class ArtistIndex:
    """Every artist, every name they go by, and the matchers built on them."""

    _cached: ArtistIndex | None = None
    _lock = threading.Lock()

    def __init__(self, artists: dict[str, Artist], rules: _TaggingRules, shared_ok: dict[str, set[str]]):
        self.artists = artists
        self.rules = rules
        self._build_names(shared_ok)

    # --- loading -----------------------------------------------------------------------------------------

    @classmethod
    def load(cls) -> ArtistIndex:
        """The packaged data, loaded once per process (thread-safe)."""
        if cls._cached is None:
            with cls._lock:
                if cls._cached is None:
                    data = resources.files("bot").joinpath("data")
                    kpopnet = json.loads(data.joinpath("kpopnet.min.json").read_text(encoding="utf-8"))
                    own = data.joinpath("artists.toml").read_text(encoding="utf-8")
                    cls._cached = cls.from_data(kpopnet, own)
        return cls._cached

    @classmethod
    def from_data(cls, kpopnet: dict[str, Any], artists_toml: str) -> ArtistIndex:
        """Build from the two sources (tests use this with altered data); raises ArtistDataError."""
        try:
            own = tomllib.loads(artists_toml)
        except tomllib.TOMLDecodeError as exc:
            raise ArtistDataError(f"artists.toml is not valid TOML: {exc}") from None
        if not isinstance(kpopnet, dict) or not {"groups", "idols"} <= set(kpopnet):
            raise ArtistDataError("kpopnet.min.json must be an object with `groups` and `idols`")
        rules = _load_rules(own)
        builder = _Builder()
        builder.load_kpopnet(kpopnet, own.get("kpopnet", {}))
        builder.load_toml(own)
        builder.resolve_refs()
        artists = builder.freeze(rules)
        shared_ok = {d.id: {compact_key(s) for s in d.shared} for d in builder.drafts.values()}
        return cls(artists, rules, shared_ok)

    # --- name tables -------------------------------------------------------------------------------------

    def _forms(self, artist: Artist) -> Iterable[tuple[str, int]]:
        yield artist.name, STAGE
        if artist.hangul:
            yield artist.hangul, STAGE
        for alias in artist.aliases:
            yield alias, ALIAS
        if artist.real_name and len(artist.real_name.split()) >= 2:
            yield artist.real_name, REAL
        if artist.real_name_hangul and len(compact_key(artist.real_name_hangul)) >= 2:
            yield artist.real_name_hangul, REAL
        given = _given_name(artist.real_name, artist.real_name_hangul)
        if given:
            yield given, GIVEN
        stage_given = (
            _given_name(artist.name, artist.real_name_hangul) if artist.name == artist.real_name else None
        )
        if stage_given and stage_given != given:
            yield stage_given, GIVEN

    def _build_names(self, shared_ok: dict[str, set[str]]) -> None:
        raw: dict[str, dict[str, tuple[int, str]]] = {}  # key -> artist id -> (best kind, surface)
        surfaces: dict[tuple[str, str], dict[str, int]] = {}  # (key, artist) -> every spelling -> its kind
        for artist in self.artists.values():
            for surface, kind in self._forms(artist):
                key = compact_key(surface)
                if not key:
                    raise ArtistDataError(f"artist {artist.id!r}: name {surface!r} has no letters or digits")
                current = raw.setdefault(key, {}).get(artist.id)
                if current is None or kind < current[0]:
                    raw[key][artist.id] = (kind, surface)
                spellings = surfaces.setdefault((key, artist.id), {})
                spellings[surface] = min(kind, spellings.get(surface, kind))
        # an alias (a choice the data makes) that takes another artist's name must say so
        problems: list[str] = []
        for key, owners in raw.items():
            if len(owners) < 2:
                continue
            for artist_id, (kind, surface) in owners.items():
                if kind != ALIAS:
                    continue
                artist = self.artists[artist_id]
                others = [o for o, (k, _) in owners.items() if o != artist_id and k != GIVEN]
                if others and key not in shared_ok.get(artist_id, set()):
                    problems.append(f"alias {surface!r} of {artist_id!r} is also a name of {sorted(others)}")
        if problems:
            raise ArtistDataError(
                "; ".join(problems[:20])
                + ": list such an alias in the artist's `shared` (a name it truly shares) or drop it"
            )
        self._query_names: dict[str, list[tuple[str, int]]] = {}
        self._table: dict[str, list[_Entry]] = {}
        self.primary: dict[str, str] = {}  # shared key -> the artist it means when nothing says otherwise
        self.shared_keys: set[str] = set()
        for key, owners in raw.items():
            ranked = sorted(owners.items(), key=lambda o: (self.artists[o[0]].tier, o[1][0], o[0]))
            self._query_names[key] = [(aid, kind) for aid, (kind, _) in ranked]
            if len(owners) > 1:
                self.shared_keys.add(key)
                best = (self.artists[ranked[0][0]].tier, ranked[0][1][0])
                second = (self.artists[ranked[1][0]].tier, ranked[1][1][0])
                if best < second:
                    self.primary[key] = ranked[0][0]
            entries = []
            for artist_id, _ in ranked:
                for surface, kind in surfaces[(key, artist_id)].items():
                    entries.append(self._entry(self.artists[artist_id], key, kind, surface, len(owners) > 1))
            self._table[key] = entries
        self._prefixes: set[str] = set()
        for key in self._table:
            for i in range(1, len(key) + 1):
                self._prefixes.add(key[:i])
        # a Hangul token may start a name with only its first syllable ("뷔가": the particle is not the name)
        self._hangul_prefixes = frozenset(
            p for p in self._prefixes if len(p) == 1 and "\uac00" <= p <= "\ud7a3"
        )
        self._sorted_keys = sorted(self._query_names)
        self._fuzzy_keys = [k for k in self._sorted_keys if len(k) >= 3]
        self._short_suggestions: dict[tuple[str, int], list[Artist]] = {}

    def _entry(self, artist: Artist, key: str, kind: int, surface: str, shared: bool) -> _Entry:
        rules = self.rules
        hangul = _is_hangul(surface)
        tokens = [compact_key(t) for t in re.split(r"[\s\-]+", surface) if compact_key(t)]
        shape_needed = _shape_key(surface) != key and (len(key) <= 3 or key in rules.common_words)
        shape = _shape_key(surface) if shape_needed else None
        word = not hangul and len(tokens) == 1 and key in rules.common_words
        phrase = not hangul and len(tokens) > 1 and all(t in rules.phrase_words for t in tokens)
        weak = shared
        if hangul:
            if len(key) == 1 and surface.strip() not in rules.strong_hangul:
                weak = True
            if surface.replace(" ", "") in rules.korean_words:
                weak = True
        else:
            if kind == STAGE and artist.ambiguous:
                weak = True
            if key in rules.common_words or key in rules.given_names:
                weak = True
            if len(key) == 1:
                weak = True
            if phrase:
                weak = True
            if kind == GIVEN and (len(key) <= 4 or artist.tier >= DEFAULT_TIER):
                weak = True  # a given name alone ("Gyeongju") is often a word or a place
        exact = None
        letters = [c for c in surface if c.isalpha()]
        if (
            not hangul
            and letters
            and surface not in (surface.lower(), surface.capitalize())
            and len(key) >= 2
        ):
            exact = surface  # IU, TWICE, SEVENTEEN: the display form is itself evidence
            if len(key) <= 2 and not weak:
                weak = True  # a bare 2-letter name counts only in its exact upper-case form
        return _Entry(artist.id, kind, shape, exact, weak, word, phrase, len(_TOKEN.findall(surface)))

    # --- lookups -------------------------------------------------------------------------------------------

    def get(self, artist_id: str) -> Artist | None:
        return self.artists.get(artist_id)

    def __len__(self) -> int:
        return len(self.artists)

    def __iter__(self):  # type: ignore[no-untyped-def]
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

    def _candidates(self, key: str) -> list[tuple[str, int]]:
        found = self._query_names.get(key)
        if found:
            return found
        if key and _is_hangul(key):
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
        exact = self._candidates(key)
        if exact:
            return [self.artists[a] for a, _ in exact]
        split = self._split_group_member(query)
        if split:
            return split
        if fuzzy and len(key) >= 4:
            cutoff = 85 if len(key) >= 6 else 80
            best = process.extractOne(key, self._fuzzy_keys, scorer=fuzz.ratio, score_cutoff=cutoff)
            if best:
                return [self.artists[a] for a, _ in self._query_names[best[0]]]
        return []

    def _within_group(self, name: str, group: str) -> list[Artist]:
        groups = [a for a, _ in self._candidates(compact_key(group)) if self.artists[a].is_group]
        if not groups:
            return []
        members: set[str] = set()
        for g in groups:
            members.update(self.expand(g))
            members.update(self.artists[g].former_member_ids)
        return [self.artists[a] for a, _ in self._candidates(compact_key(name)) if a in members]

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
        for artist_id, kind in self._candidates(key):
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
        return [ref for ref, _ in self.tag_weighted(title, text, categories)]

    def tag_weighted(
        self, title: str, text: str, categories: Sequence[str] = ()
    ) -> list[tuple[ArtistRef, float]]:
        """Like tag(), with each artist's relevance (title and lead weigh more than a passing mention)."""
        title = fold_quotes(title or "")
        text = fold_quotes(text or "")
        occurrences = self._scan(title, "title", 0)
        lead_end = _lead_end(text)
        body_occ = self._scan(text, "body", 0)
        for occ in body_occ:
            if occ.start < lead_end:
                occ.segment = "lead"
        occurrences += body_occ
        category_ids = self._category_artists(categories)
        self._choose(occurrences, category_ids, title, text)
        return self._score(occurrences, category_ids)

    def _category_artists(self, categories: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for category in list(categories)[:50]:
            if not isinstance(category, str):
                continue
            key = compact_key(category[:100])
            candidates = self._candidates(key)
            if not candidates:
                continue
            # a category names the artist outright, but a shared name still needs its best reading
            if len(candidates) == 1 or key in self.primary:
                found.add(self.primary.get(key, candidates[0][0]))
            else:
                found.update(
                    a for a, _ in candidates if self.artists[a].tier == self.artists[candidates[0][0]].tier
                )
        return found

    def _scan(self, text: str, segment: str, offset: int) -> list[_Occurrence]:
        """Every name in the text: longest match first, names spanning several tokens included."""
        if not text:
            return []
        tokens = _Tokens(text)
        gaps = tokens.gaps  # gaps[i]: the text just before token i
        keys = _token_keys(tokens.words, text.isascii())
        n = len(keys)
        # "'s", "'t", "'re"...: a contraction's tail is no name and the word it ends is no name either
        tails: set[int] = set()
        contracted: set[int] = set()
        if "'" in text:
            i = 0
            while True:
                try:
                    i = gaps.index("'", i + 1)  # a C-level search: most gaps are spaces
                except ValueError:
                    break
                if i < n and keys[i] in _CONTRACTION_TAILS:
                    tails.add(i)
                    if keys[i] != "s":
                        contracted.add(i - 1)
        prefixes = self._prefixes
        hangul_prefixes = self._hangul_prefixes
        # one pass with set lookups picks the few tokens a name can start at (speed: most words are not)
        table = self._table
        # Most of those are short words that only begin a name ("the", "red"): a start survives when it is a
        # name itself, Hangul (a particle may follow), or the next token continues a name. The rest would find
        # nothing in the n-gram walk below; the sentinel after the last token continues nothing.
        if not keys:
            return []
        after = [*keys[1:], "\x00"]
        if text.isascii() or not _HANGUL.search(text):
            starts = [
                i
                for i, first, nxt in zip(range(n), keys, after, strict=True)
                if first in prefixes
                and (first in table or first + nxt in prefixes or "\uac00" <= nxt[:1] <= "\ud7a3")
            ]
        else:
            starts = [
                i
                for i, first, nxt in zip(range(n), keys, after, strict=True)
                if (first in prefixes or first[:1] in hangul_prefixes)
                and (
                    first in table
                    or "\uac00" <= first[:1] <= "\ud7a3"
                    or first + nxt in prefixes
                    or "\uac00" <= nxt[:1] <= "\ud7a3"
                )
            ]
        if not starts:
            return []
        title_case = segment == "title" and _looks_title_case(text)
        suffixes = self.rules.hangul_suffixes
        offsets = tokens.offsets
        found: list[_Occurrence] = []
        resume = 0
        for i in starts:
            if i < resume or i in tails or i in contracted:
                continue
            best: tuple[int, str] | None = None
            joined = ""
            for j in range(i, min(n, i + _MAX_NGRAM)):
                if j > i:
                    gap = gaps[j]
                    if gap != " " and not _JOINABLE_GAP.match(gap) or j in tails and j + 1 >= n:
                        break
                joined += keys[j]
                if joined in table and j not in tails:
                    best = (j, joined)
                elif "\uac00" <= keys[j][:1] <= "\ud7a3":
                    for suffix in suffixes:
                        if joined.endswith(suffix) and joined[: -len(suffix)] in table:
                            best = (j, joined[: -len(suffix)])
                            break
                if joined not in prefixes:
                    break
            if best is None:
                continue
            j, key = best
            start, end = offsets[2 * i + 1], offsets[2 * j + 2]  # tokens[i][0], tokens[j][1]
            surface = text[start:end]
            if surface.endswith(".") and not table[key][0].shape:
                surface, end = surface[:-1], end - 1
            entries = self._valid_entries(text, tokens, keys, i, j, key, surface, title_case)
            if entries:
                occ = _Occurrence(
                    start + offset, end + offset, i, j, segment, surface, key, entries, title_case
                )
                occ.introduced = i > 0 and keys[i - 1] in _INTRO_WORDS
                if (
                    j + 1 < n
                    and keys[j + 1] in _ROLE_WORDS
                    and any(self.artists[e.artist_id].is_group for e in entries)
                ):
                    occ.bound_to = "member"  # "the BTS singer", "BTS member V": about the member
                found.append(occ)
            resume = j + 1
        self._bind(found, keys)
        return found

    def _bind(self, found: list[_Occurrence], keys: list[str]) -> None:
        """Glue group and member mentions that name one person: "BTS's V", "V of BTS", "V (BTS)"."""
        for a, b in zip(found, found[1:], strict=False):
            between = keys[a.tok_end + 1 : b.tok_start]
            if len(between) > 3 or not all(w in _GLUE_WORDS for w in between):
                continue
            for group_occ, member_occ in ((a, b), (b, a)):
                groups = [e.artist_id for e in group_occ.entries if self.artists[e.artist_id].is_group]
                members = [e.artist_id for e in member_occ.entries]
                for g in groups:
                    inside = set(self.expand(g)) | set(self.artists[g].former_member_ids)
                    inside.discard(g)
                    if any(m in inside for m in members):
                        group_occ.bound_to = "member"
                        member_occ.bound_to = g
                        break
        # "NCT and WayV's Ten", "WayV and NCT member Ten": a group listed before a bound group is bound too
        for a, b in zip(reversed(found[:-1]), reversed(found[1:]), strict=False):
            between = keys[a.tok_end + 1 : b.tok_start]
            if between in ([], ["and"]) and b.bound_to == "member" and a.bound_to is None:
                if any(self.artists[e.artist_id].is_group for e in a.entries):
                    a.bound_to = "member"

    def _valid_entries(
        self,
        text: str,
        tokens: _Tokens,
        keys: list[str],
        i: int,
        j: int,
        key: str,
        surface: str,
        title_case: bool,
    ) -> list[_Entry]:
        entries = self._table[key]
        words, gaps = tokens.words, tokens.gaps  # gaps[k]: the text between tokens k-1 and k
        n = len(words)
        prev_word = _fold_token(words[i - 1]).rstrip(".") if i > 0 else ""
        next_word = _fold_token(words[j + 1]).rstrip(".") if j + 1 < n else ""
        if j + 1 < n and gaps[j + 1] == "'" and next_word == "s":
            next_word = _fold_token(words[j + 2]).rstrip(".") if j + 2 < n else ""
        if prev_word in self.rules.exclude_before.get(key, ()):
            return []
        if next_word in self.rules.exclude_after.get(key, ()):
            return []
        if j + 1 < n and gaps[j + 1] == "-" and len(key) == 1:
            return []  # V-neck, V-line, I-95
        if len(key) <= 3 and key.isascii() and prev_word.replace(",", "").isdigit():
            return []  # "1000 IU", "5 V": a unit or a number, not a name
        first_alpha = next((c for c in surface if c.isalpha()), "")
        capitalized = first_alpha.isupper()
        text_ntok = j - i + 1
        # computed once per mention, and only when an entry asks (a shared name has many entries)
        split_ok: bool | None = None
        shapes: tuple[str, str] | None = None
        phrase_ok: bool | None = None
        letter_ok: bool | None = None
        out = []
        for entry in entries:
            if text_ntok > entry.ntok:
                if split_ok is None:
                    split_ok = all(
                        (t[2][:1].isupper() or not t[2][:1].isascii())
                        and _fold_token(t[2]) not in _SENTENCE_STOPWORDS
                        for t in tokens.span(i, j + 1)
                    )
                if not split_ok:
                    continue  # "and a" is not "Anda"; "Tae Hyung" may be "Taehyung"
            if entry.shape is not None:
                if shapes is None:
                    end = tokens[j][1]
                    shapes = (
                        _shape_key(surface + (")" if text[end : end + 1] == ")" else "")),
                        _shape_key(surface),
                    )
                if shapes[0] != entry.shape and shapes[1] != entry.shape:
                    continue
            if (entry.word or entry.phrase) and not capitalized and surface != entry.exact:
                continue
            if entry.phrase and not title_case:
                if phrase_ok is None:
                    words = [w for w in re.split(r"[\s\-]+", surface) if w and w[0].isalpha()]
                    phrase_ok = all(w[0].isupper() for w in words)
                if not phrase_ok:
                    continue
            if len(key) == 1 and key.isascii():
                if letter_ok is None:
                    letter_ok = surface.isupper() and not self._roman_numeral(text, tokens, i, title_case)
                if not letter_ok:
                    continue
            out.append(entry)
        return out

    def _roman_numeral(self, text: str, tokens: _Tokens, i: int, title_case: bool) -> bool:
        """A lone capital letter after a Capitalized word that is no name: "Rocky V", "Part V"."""
        if i == 0 or title_case:
            return False
        prev_start, prev_end, prev = tokens[i - 1]
        if text[prev_end : tokens[i][0]] != " " or not prev[:1].isupper() or prev.isupper():
            return False
        if compact_key(prev) in self._table or _fold_token(prev) in _SENTENCE_STOPWORDS:
            return False
        before = text[:prev_start].rstrip()
        return bool(before) and before[-1] not in ".!?:\"'(\n"

    def _related(self, artist_id: str) -> set[str]:
        """Artists whose mention gives context to this one: its groups, units, fellow members, members."""
        artist = self.artists[artist_id]
        related: set[str] = set()
        groups = list(artist.group_ids)
        if artist.is_group:
            related.update(artist.member_ids)
            related.update(artist.former_member_ids)
            related.update(artist.unit_ids)
            if artist.parent_id:
                related.add(artist.parent_id)
            groups = [artist_id]
        family = self._family(artist.main_group_id) if not artist.is_group else {artist_id}
        for gid in groups:
            group = self.artists[gid]
            related.add(gid)
            if group.parent_id:
                related.add(group.parent_id)
            if artist.is_group or gid in family or not family:
                # fellow members count from the artist's own group and its units, not project groups
                related.update(group.member_ids)
                related.update(group.former_member_ids)
        related.discard(artist_id)
        return related

    def _family(self, group_id: str | None) -> set[str]:
        if not group_id:
            return set()
        top = group_id
        while self.artists[top].parent_id:
            top = self.artists[top].parent_id  # type: ignore[assignment]
        return set(self.expand(top)) & {
            a.id for a in map(self.artists.get, self.expand(top)) if a and a.is_group
        }

    def _choose(self, occurrences: list[_Occurrence], categories: set[str], title: str, text: str) -> None:
        """Decide which artist each name means: weak and shared names need context from the same story."""
        mentioned: dict[str, int] = {}  # artist -> number of occurrences naming it (any strength)
        strong_self: set[str] = set()  # artists named by an unambiguous name somewhere
        for occ in occurrences:
            for entry in occ.entries:
                mentioned[entry.artist_id] = mentioned.get(entry.artist_id, 0) + 1
                if self._is_strong(occ, entry, as_primary=False):
                    strong_self.add(entry.artist_id)
        evidence = set(mentioned) | categories
        for occ in occurrences:
            ids = list(dict.fromkeys(e.artist_id for e in occ.entries))
            with_context = [
                a for a in ids if a in strong_self or a in categories or (self._related(a) & evidence)
            ]
            if not with_context and occ.introduced:
                with_context = ids[:1] if len(ids) == 1 or occ.key in self.primary else []
            if occ.bound_to and occ.bound_to != "member" and len(with_context) > 1:
                bound = [a for a in with_context if occ.bound_to in self._related(a)]
                with_context = bound or with_context
            if with_context:
                occ.chosen = with_context
                continue
            strong = [e.artist_id for e in occ.entries if self._is_strong(occ, e)]
            if strong:
                occ.chosen = strong[:1]

    def _is_strong(self, occ: _Occurrence, entry: _Entry, *, as_primary: bool = True) -> bool:
        """Whether this name alone says it is this artist; `as_primary=False` leaves out the best-known
        holder of a shared name, which yields to another holder that the story gives context for."""
        if entry.exact is not None and occ.surface == entry.exact:
            # the display form (IU, TWICE, "Red Velvet" in running text) is evidence, unless a Title Case
            # headline would have produced it anyway
            informative = not occ.title_case or entry.exact != entry.exact.title()
            if informative and (
                occ.key not in self.shared_keys or as_primary and self.primary.get(occ.key) == entry.artist_id
            ):
                return True
        if not entry.weak:
            return True
        if as_primary and occ.key in self.primary and self.primary[occ.key] == entry.artist_id:
            # the best-known holder of a shared name, if the name is not weak for another reason
            return not self._weak_for_self(occ, entry)
        return False

    def _weak_for_self(self, occ: _Occurrence, entry: _Entry) -> bool:
        artist = self.artists[entry.artist_id]
        key = occ.key
        rules = self.rules
        if entry.word or entry.phrase or len(key) <= 2:
            return True
        if key in rules.given_names or (entry.kind == STAGE and artist.ambiguous):
            return True
        if _is_hangul(key) and (len(key) == 1 and occ.surface not in rules.strong_hangul):
            return True
        if entry.kind == GIVEN and (len(key) <= 4 or artist.tier >= DEFAULT_TIER):
            return True
        return False

    def _score(self, occurrences: list[_Occurrence], categories: set[str]) -> list[tuple[ArtistRef, float]]:
        weights = {"title": 5.0, "lead": 3.0, "body": 1.0}
        caps = {"title": 2, "lead": 2, "body": 5}
        counts: dict[str, dict[str, int]] = {}
        unbound_top: set[str] = set()  # groups named on their own in the title or lead
        first: dict[str, int] = {}
        order = {"title": 0, "lead": 1, "body": 2}
        for occ in occurrences:
            for artist_id in occ.chosen:
                per = counts.setdefault(artist_id, {"title": 0, "lead": 0, "body": 0})
                per[occ.segment] += 1
                first.setdefault(artist_id, order[occ.segment] * 1_000_000 + occ.start)
                if occ.segment == "title" and occ.bound_to != "member":
                    unbound_top.add(artist_id)
        for artist_id in categories:
            counts.setdefault(artist_id, {"title": 0, "lead": 0, "body": 0})
            first.setdefault(artist_id, 3_000_000)
        # members named anywhere in a story whose subject is their group (the title names it) are in it
        subject_members: set[str] = set()
        for group_id in unbound_top:
            if self.artists[group_id].is_group:
                subject_members.update(self.expand(group_id))
        scores: dict[str, float] = {}
        for artist_id, per in counts.items():
            score = sum(weights[s] * min(per[s], caps[s]) for s in per)
            if artist_id in categories:
                score += 3.0
            if (
                per["title"]
                or per["lead"]
                or per["body"] >= 2
                or artist_id in categories
                or (per["body"] and artist_id in subject_members)
            ):
                scores[artist_id] = score
        # a group whose members are the story is named only when the group itself is (BTS's V -> V)
        for artist_id in list(scores):
            artist = self.artists[artist_id]
            if not artist.is_group:
                continue
            inside = set(self.expand(artist_id)) | set(artist.former_member_ids)
            inside.discard(artist_id)
            named = inside & set(scores)
            whole = len(set(artist.member_ids) & named) >= max(2, 0.75 * len(artist.member_ids))
            if named and artist_id not in unbound_top and not whole:
                del scores[artist_id]
        ranked = sorted(scores, key=lambda a: (-scores[a], first[a]))
        return [(self.artists[a].ref(), round(scores[a], 3)) for a in ranked]


_QUOTE_CHARS = re.compile("[" + "".join(chr(c) for c in _QUOTES) + "]")


def fold_quotes(text: str) -> str:
    # a regex, not str.translate: translate with a dict walks every character in Python-level lookups
    return _QUOTE_CHARS.sub("'", text)


def _lead_end(text: str) -> int:
    """Where the lead ends: the first sentence that ends past 40 characters, within the first paragraph."""
    start = len(text) - len(text.lstrip())
    para = text.find("\n", start)
    limit = para if para != -1 else len(text)
    stop = re.compile(r"[.!?][\"')\]]*(?=\s|$)")
    found = stop.search(text, start + 40, limit)
    if found:
        limit = found.end()
    return min(limit, start + 400)


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
