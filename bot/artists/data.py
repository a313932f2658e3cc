"""The artist data: kpopnet.json (girl groups and their idols) merged with the project's own
bot/data/artists.toml into Artist records, every name each artist goes by, and the consistency checks that refuse
bad data with an error naming the entry and what to fix."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.artists.names import compact_key, fold, is_hangul, slugify
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


# --- merging the two sources --------------------------------------------------------------------------------------------


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
class TaggingRules:
    """The [tagging] table of artists.toml: the words and contexts that tell a name from an everyday word."""

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
            fix = {}  # this idol's correction, if any
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
                from rapidfuzz import process  # only to name a likely fix in the error

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

    def freeze(self) -> dict[str, Artist]:
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


def load_rules(data: dict[str, Any]) -> TaggingRules:
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
    return TaggingRules(
        common_words=frozenset(compact_key(w) for w in tagging.get("common_words", [])),
        given_names=frozenset(compact_key(w) for w in tagging.get("given_names", [])),
        phrase_words=frozenset(compact_key(w) for w in tagging.get("phrase_words", [])),
        korean_words=frozenset(tagging.get("korean_words", [])),
        strong_hangul=frozenset(tagging.get("strong_hangul", [])),
        hangul_suffixes=tuple(sorted(tagging.get("hangul_suffixes", []), key=len, reverse=True)),
        exclude_before={k: frozenset(v) for k, v in before.items()},
        exclude_after={k: frozenset(v) for k, v in after.items()},
    )


# --- every name an artist goes by ---------------------------------------------------------------------------------------

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
    if is_hangul(real_native) and fold(parts[0]) not in _KOREAN_SURNAMES:
        return None
    given = " ".join(parts[1:])
    return given if len(compact_key(given)) >= 3 else None


def name_forms(artist: Artist) -> Iterable[tuple[str, int]]:
    """Every name the artist goes by, with its kind (STAGE, ALIAS, REAL, GIVEN)."""
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


# name key -> artist id -> every spelling of that key the artist goes by -> its kind (insertion order kept)
NameSpellings = dict[str, dict[str, dict[str, int]]]


def name_spellings(artists: dict[str, Artist], shared_ok: dict[str, set[str]]) -> NameSpellings:
    """Every name of every artist by its compact_key; raises ArtistDataError for a name without letters and
    for an alias that takes another artist's name without saying so (`shared`)."""
    spellings: NameSpellings = {}
    for artist in artists.values():
        for surface, kind in name_forms(artist):
            key = compact_key(surface)
            if not key:
                raise ArtistDataError(f"artist {artist.id!r}: name {surface!r} has no letters or digits")
            of_artist = spellings.setdefault(key, {}).setdefault(artist.id, {})
            of_artist[surface] = min(kind, of_artist.get(surface, kind))
    # an alias (a choice the data makes) that takes another artist's name must say so
    problems: list[str] = []
    for key, owners in spellings.items():
        if len(owners) < 2:
            continue
        best = {artist_id: min(forms.values()) for artist_id, forms in owners.items()}
        for artist_id, kind in best.items():
            if kind != ALIAS:
                continue
            surface = next(s for s, k in owners[artist_id].items() if k == kind)
            others = [o for o, k in best.items() if o != artist_id and k != GIVEN]
            if others and key not in shared_ok.get(artist_id, set()):
                problems.append(f"alias {surface!r} of {artist_id!r} is also a name of {sorted(others)}")
    if problems:
        raise ArtistDataError(
            "; ".join(problems[:20])
            + ": list such an alias in the artist's `shared` (a name it truly shares) or drop it"
        )
    return spellings


# --- loading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtistData:
    """The merged and checked data an ArtistIndex is built from."""

    artists: dict[str, Artist]
    rules: TaggingRules
    shared_ok: dict[str, set[str]]  # artist id -> the name keys it may share with another artist


def packaged_sources() -> tuple[dict[str, Any], str]:
    """The two shipped sources: kpopnet.json (parsed) and the text of artists.toml."""
    # imported here: ArtistIndex.load reads the files itself (bot/artists/cache.py) and never needs it
    from importlib import resources

    data = resources.files("bot").joinpath("data")
    kpopnet = json.loads(data.joinpath("kpopnet.min.json").read_text(encoding="utf-8"))
    return kpopnet, data.joinpath("artists.toml").read_text(encoding="utf-8")


def build_artist_data(kpopnet: dict[str, Any], artists_toml: str) -> ArtistData:
    """Merge the two sources into artists; raises ArtistDataError naming what to fix."""
    import tomllib  # only when building: a process that reads the kept index never parses TOML

    try:
        own = tomllib.loads(artists_toml)
    except tomllib.TOMLDecodeError as exc:
        raise ArtistDataError(f"artists.toml is not valid TOML: {exc}") from None
    if not isinstance(kpopnet, dict) or not {"groups", "idols"} <= set(kpopnet):
        raise ArtistDataError("kpopnet.min.json must be an object with `groups` and `idols`")
    rules = load_rules(own)
    builder = _Builder()
    builder.load_kpopnet(kpopnet, own.get("kpopnet", {}))
    builder.load_toml(own)
    builder.resolve_refs()
    artists = builder.freeze()
    shared_ok = {d.id: {compact_key(s) for s in d.shared} for d in builder.drafts.values()}
    return ArtistData(artists, rules, shared_ok)
