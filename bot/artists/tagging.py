"""Tagging a story with the artists it is about: every name found in the title and text (names of several
words, Korean particles, possessives), then the rules that tell a name from a word ("V LIVE", "Rocky V", "joy",
"rain") and one holder of a shared name from another (context from the same story), then a relevance score."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING

from bot.artists.data import DEFAULT_TIER, GIVEN, STAGE, Artist, NameSpellings
from bot.artists.names import compact_key, fold, fold_quotes, is_hangul, shape_key
from bot.models import ArtistRef

if TYPE_CHECKING:  # the index builds its tagger; the tagger reads the index's names
    from bot.artists.index import ArtistIndex


@dataclass(frozen=True, slots=True)
class _Entry:
    """One spelling of one artist's name, and what it takes in running text to mean them."""

    artist_id: str
    kind: int
    shape: str | None  # the text must have this shape (dots/brackets) to match: "d.o", "f(x)"
    exact: str | None  # the text matching this exactly (case included) is strong on its own: "IU", "TWICE"
    weak: bool  # needs context in the story
    word: bool  # an everyday word: lower-case text never matches
    phrase: bool  # an everyday multi-word phrase ("Red Velvet"): needs every word Capitalized
    ntok: int  # tokens in the name as written; text that splits it further must look like a name
    group: bool  # the artist is a group (asked per mention: kept here, not looked up)


@dataclass(slots=True)
class _Occurrence:
    """One name found in a story, with the artists it may mean and, once decided, the ones it does."""

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
    listed: bool = False  # a round-up's entry: a heading, "3. aespa – “Supernova”", "Winner: aespa"
    line: int = -1  # where its line starts, for a name on a short line (a list entry's line)
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

# --- round-ups ---------------------------------------------------------------------------------------------
# Round-ups (monthly comeback lists, song rankings, award winners) name each act once, as an entry of a list:
# a line of its own, or a field of a short line cut by dashes, colons or bars ("3. aespa – “Supernova”",
# "Best Female Group: aespa"). A field holding only names (and glue such as "and", "&", "'s") is an entry.
_ENTRY_LINE_CHARS = 300  # a longer line is prose, not a list entry
_LIST_MARK = re.compile(r"\s*(?:#?\d{1,3}[.):]|[•·*▪►●‣–—-])\s+")  # "10. ", "#3 ", "• " before an entry
_FIELD_SEPARATOR = re.compile(r"\s+[–—-]\s+|\s*[:|]\s+|\s+/\s+")
# a song or album title in quotes: names inside it are no entries ('s and "BTS' V" are no quotes)
_QUOTED = re.compile(r"“[^”\n]*”|\"[^\"\n]*\"|(?<!\w)'[^'\n]*'(?!\w)|«[^»\n]*»|「[^」\n]*」|『[^』\n]*』")
_QUOTE_MARKS = '“”"«»「」『』'  # double quotes only: ' is also the possessive
_QUOTE_MARK = re.compile(f"[{_QUOTE_MARKS}]")
_ENTRY_GLUE = frozenset("and feat ft featuring with x vs of s by".split())
# a collaborator outside the data after a known act: "ROSÉ & Bruno Mars", "G-Dragon feat. Anderson .Paak"
_CREDIT_TAIL = re.compile(r"(?:[&+×]|\b(?:x|and|feat|ft|featuring|with)\b\.?)\s+(?:[A-Z.][\w.'-]*\s*){1,4}")
# what _FIELD_SEPARATOR and _QUOTED look for (single quotes left out: ' is mostly an apostrophe)
_FIELD_MARKS = (" – ", " — ", " - ", ":", "|", " / ", "“", '"', "«", "「", "『")  # fmt: skip
_ENTRY_SLACK = 40  # characters of a field outside its names and titles: ", & Bruno Mars", "10. ", "feat. …"
_WORD = re.compile(r"[^\W_]+")
_ACT_LIST = 3  # names listed together in one field ("Bonsang: IU, aespa, Crush") say each other is an act
_MIN_LISTED = 3  # different names as entries make a round-up (a caption or a "Label: name" line do not)
_NO_NAMES: frozenset[str] = frozenset()


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
    joined = "\x00".join(words)
    keys = joined.lower().replace(".", "").replace(":", "").split("\x00")
    if not all_ascii and not joined.isascii():  # a story's dashes and emoji are in the gaps, not in words
        for i, word in enumerate(words):
            if not word.isascii():
                keys[i] = _token_key(word)
    return keys


def _fold_token(word: str) -> str:
    """fold() of one token: plain lower() for ASCII (tokens hold no quotes; NFKC/NFD change no ASCII)."""
    return word.lower() if word.isascii() else fold(word)


_SPLIT = re.compile(f"({_TOKEN.pattern})")
_SPLIT_ASCII = re.compile(r"([0-9A-Za-z]+(?:[.:][0-9A-Za-z]+)*\.?)")  # _SPLIT where only ASCII can occur
# _SPLIT where no Hangul, kana or CJK occurs (most English stories: emoji and dashes are not ASCII); possessive,
# which matches what the greedy pattern matches (its tail is optional: it never backtracks) ~25% faster
_SPLIT_LATIN = re.compile(r"([0-9A-Za-z\u00c0-\u024f]++(?:[.:][0-9A-Za-z\u00c0-\u024f]++)*+\.?)")
_CJK = re.compile(r"[\uac00-\ud7a3\u3040-\u30ff\u4e00-\u9fff]")  # what only _SPLIT's other alternatives match


class _Tokens:
    """The words of a text as (start, end, word), computed with one split and no match objects (speed)."""

    def __init__(self, text: str, cjk: bool | None = None) -> None:
        # the same tokens; on ASCII text the pattern without its non-ASCII alternatives runs ~20% faster
        # `cjk`: whether the text holds Hangul, kana or CJK (None: look)
        if text.isascii():
            split = _SPLIT_ASCII
        elif cjk is False or (cjk is None and _CJK.search(text) is None):
            split = _SPLIT_LATIN
        else:
            split = _SPLIT
        parts = split.split(text)
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


def _looks_title_case(text: str) -> bool:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z']+", text) if len(w) >= 4]
    if len(words) < 3:
        return False
    return sum(1 for w in words if w[0].isupper()) / len(words) >= 0.7


class StoryTagger:
    """Finds the artists a story is about in its title, text and feed categories. Names in running text are
    judged by how they are written (case, dots, brackets), by the words around them and by the other artists
    the same story names: a bare "V" is nobody, "BTS's V" is V."""

    def __init__(self, index: ArtistIndex, spellings: NameSpellings) -> None:
        self.artists = index.artists
        self.rules = index.rules
        self.primary = index.primary
        self.shared_keys = index.shared_keys
        self._expand = index.expand
        self._owners = index.owners
        # the data never changes once loaded: what each artist's relatives are is worked out once, not per
        # mention (per-mention expand() calls were a third of tagging a name-heavy story)
        self._expanded: dict[str, tuple[str, ...]] = {}
        self._inside_cache: dict[str, frozenset[str]] = {}
        self._related_cache: dict[str, frozenset[str]] = {}
        # key -> how each spelling of each artist behaves in running text, the artists most likely first
        self._table: dict[str, list[_Entry]] = {}
        for key, owners in spellings.items():
            entries = []
            for artist_id, _ in index.owners(key):
                for surface, kind in owners[artist_id].items():
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

    def _entry(self, artist: Artist, key: str, kind: int, surface: str, shared: bool) -> _Entry:
        rules = self.rules
        hangul = is_hangul(surface)
        tokens = [compact_key(t) for t in re.split(r"[\s\-]+", surface) if compact_key(t)]
        shape_needed = shape_key(surface) != key and (len(key) <= 3 or key in rules.common_words)
        shape = shape_key(surface) if shape_needed else None
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
        ntok = len(_TOKEN.findall(surface))
        return _Entry(artist.id, kind, shape, exact, weak, word, phrase, ntok, artist.is_group)

    def tag_weighted(
        self, title: str, text: str, categories: Sequence[str] = ()
    ) -> list[tuple[ArtistRef, float]]:
        """The artists a story is about, most relevant first, with each one's relevance (title and lead weigh
        more than a passing mention)."""
        title = fold_quotes(title or "")
        text = fold_quotes(text or "")
        occurrences = self._scan(title, "title", 0)
        lead_end = _lead_end(text)
        body_occ = self._scan(text, "body", 0)
        for occ in body_occ:
            if occ.start < lead_end:
                occ.segment = "lead"
        occurrences += _mark_list_entries(text, body_occ)
        category_ids = self._category_artists(categories)
        self._choose(occurrences, category_ids, title, text)
        return self._score(occurrences, category_ids)

    def _category_artists(self, categories: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for category in list(categories)[:50]:
            if not isinstance(category, str):
                continue
            key = compact_key(category[:100])
            candidates = self._owners(key)
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
        cjk = not text.isascii() and _CJK.search(text) is not None
        tokens = _Tokens(text, cjk)
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
        if not cjk or not is_hangul(text):
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
                if j + 1 < n and keys[j + 1] in _ROLE_WORDS and any(e.group for e in entries):
                    occ.bound_to = "member"  # "the BTS singer", "BTS member V": about the member
                found.append(occ)
            resume = j + 1
        self._bind(found, keys, text)
        return found

    def _bind(self, found: list[_Occurrence], keys: list[str], text: str) -> None:
        """Glue group and member mentions that name one person: "BTS's V", "V of BTS", "V (BTS)"."""
        for a, b in zip(found, found[1:], strict=False):
            if b.tok_start - a.tok_end > 4:  # more than 3 words between (most pairs: a cheap test first)
                continue
            if not _GLUE_WORDS.issuperset(keys[a.tok_end + 1 : b.tok_start]):
                continue
            if _QUOTE_MARK.search(text, a.end, b.start):
                continue  # aespa – “Winter Story”: a name in a title is not the member of the act before it
            for group_occ, member_occ in ((a, b), (b, a)):
                groups = [e.artist_id for e in group_occ.entries if e.group]
                members = [e.artist_id for e in member_occ.entries]
                for g in groups:
                    inside = self._inside(g)
                    if any(m in inside for m in members):
                        group_occ.bound_to = "member"
                        member_occ.bound_to = g
                        break
        # "NCT and WayV's Ten", "WayV and NCT member Ten": a group listed before a bound group is bound too
        for a, b in zip(reversed(found[:-1]), reversed(found[1:]), strict=False):
            between = keys[a.tok_end + 1 : b.tok_start]
            if between in ([], ["and"]) and b.bound_to == "member" and a.bound_to is None:
                if any(e.group for e in a.entries):
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
        # the words around are read only where a rule asks for them (most names have no rule: speed)
        excluded_before = self.rules.exclude_before.get(key)
        prev_word = (
            _fold_token(words[i - 1]).rstrip(".") if i > 0 and (excluded_before or len(key) <= 3) else ""
        )
        if excluded_before and prev_word in excluded_before:
            return []
        excluded_after = self.rules.exclude_after.get(key)
        if excluded_after:
            next_word = _fold_token(words[j + 1]).rstrip(".") if j + 1 < n else ""
            if j + 1 < n and gaps[j + 1] == "'" and next_word == "s":
                next_word = _fold_token(words[j + 2]).rstrip(".") if j + 2 < n else ""
            if next_word in excluded_after:
                return []
        if j + 1 < n and gaps[j + 1] == "-" and len(key) == 1:
            return []  # V-neck, V-line, I-95
        if (
            len(key) <= 3
            and key.isascii()
            and prev_word.replace(",", "").isdigit()
            and gaps[i] in (" ", "\u00a0")
            and not words[i - 1].endswith(".")
        ):
            return []  # "1000 IU", "5 V": a unit or a number, not a name (but "4. Key", "December 4\n\nIVE")
        first_alpha = surface[0] if surface[:1].isalpha() else next((c for c in surface if c.isalpha()), "")
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
                        shape_key(surface + (")" if text[end : end + 1] == ")" else "")),
                        shape_key(surface),
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

    def expand(self, artist_id: str) -> tuple[str, ...]:
        """ArtistIndex.expand, kept per artist."""
        found = self._expanded.get(artist_id)
        if found is None:
            found = self._expanded[artist_id] = tuple(self._expand(artist_id))
        return found

    def _inside(self, group_id: str) -> frozenset[str]:
        """Everyone a group holds (units, current and former members), the group itself left out."""
        found = self._inside_cache.get(group_id)
        if found is None:
            inside = set(self.expand(group_id)) | set(self.artists[group_id].former_member_ids)
            inside.discard(group_id)
            found = self._inside_cache[group_id] = frozenset(inside)
        return found

    def _related(self, artist_id: str) -> frozenset[str]:
        """Artists whose mention gives context to this one: its groups, units, fellow members, members."""
        found = self._related_cache.get(artist_id)
        if found is None:
            found = self._related_cache[artist_id] = frozenset(self._work_out_related(artist_id))
        return found

    def _work_out_related(self, artist_id: str) -> set[str]:
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
        by_line: dict[int, set[str]] = {}
        if any(occ.listed for occ in occurrences):
            # a round-up: acts listed side by side are no context for one another ("Best Female Group: aespa"
            # says nothing about "Best Male Artist: Jimin"); an entry's context is its own line and the prose
            evidence = {
                e.artist_id for occ in occurrences if not occ.listed for e in occ.entries
            } | categories
            for occ in occurrences:
                if occ.line >= 0:
                    by_line.setdefault(occ.line, set()).update(e.artist_id for e in occ.entries)
        # whether an artist has context depends only on the artist and the line (evidence is the story's):
        # a name repeated through the story is judged once per line, or once when no line counts
        in_context: dict[tuple[str, int], bool] = {}
        for occ in occurrences:
            ids = list(dict.fromkeys(e.artist_id for e in occ.entries))
            line = occ.line if by_line else -1
            on_line = by_line.get(line, _NO_NAMES)
            with_context = []
            for a in ids:
                if a in strong_self or a in categories:
                    with_context.append(a)
                    continue
                known = in_context.get((a, line))
                if known is None:
                    known = in_context[(a, line)] = self._in_context(a, evidence, on_line)
                if known:
                    with_context.append(a)
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

    def _in_context(self, artist_id: str, evidence: AbstractSet[str], on_line: AbstractSet[str]) -> bool:
        """Whether the story names an artist that gives this one context (its group, a fellow member...)."""
        related = self._related(artist_id)
        return not related.isdisjoint(evidence) or not related.isdisjoint(on_line)

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
        if is_hangul(key) and (len(key) == 1 and occ.surface not in rules.strong_hangul):
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
        listed: set[str] = set()  # artists with an entry of their own in a list
        listed_unbound: set[str] = set()  # ...not as a member's group ("Red Velvet's Joy" is Joy's entry)
        for occ in occurrences:
            for artist_id in occ.chosen:
                per = counts.get(artist_id)
                if per is None:
                    per = counts[artist_id] = {"title": 0, "lead": 0, "body": 0}
                    first[artist_id] = order[occ.segment] * 1_000_000 + occ.start
                per[occ.segment] += 1
                if occ.segment == "title" and occ.bound_to != "member":
                    unbound_top.add(artist_id)
                if occ.listed:
                    listed.add(artist_id)
                    if occ.bound_to != "member":
                        listed_unbound.add(artist_id)
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
                or artist_id in listed
            ):
                scores[artist_id] = score
        # a group whose members are the story is named only when the group itself is (BTS's V -> V)
        for artist_id in list(scores):
            artist = self.artists[artist_id]
            if not artist.is_group:
                continue
            named = self._inside(artist_id) & set(scores)
            whole = len(set(artist.member_ids) & named) >= max(2, 0.75 * len(artist.member_ids))
            if named and artist_id not in unbound_top | listed_unbound and not whole:
                del scores[artist_id]
        ranked = sorted(scores, key=lambda a: (-scores[a], first[a]))
        return [(self.artists[a].ref(), round(scores[a], 3)) for a in ranked]


def _mark_list_entries(text: str, occurrences: list[_Occurrence]) -> list[_Occurrence]:
    """In a round-up (_MIN_LISTED names as entries: see _ENTRY_LINE_CHARS), mark the names that are list entries;
    a name whose next field is a quoted title ("Key – “Pleasure Shop”") is introduced: the line says it is an act.
    Returns the occurrences that name an act: in a round-up, a name inside a listed title ("Winter Story") is none."""
    entries: list[tuple[_Occurrence, bool]] = []
    in_titles: list[_Occurrence] = []
    line_start = line_end = -1
    line: list[_Occurrence] = []
    for occ in occurrences:  # in text order: each line is found once, so the pass stays linear
        if occ.start > line_end:
            _line_entries(text, line_start, line_end, line, entries, in_titles)
            line_start = text.rfind("\n", 0, occ.start) + 1
            line_end = text.find("\n", occ.start)
            line_end = len(text) if line_end == -1 else line_end
            line = []
        line.append(occ)
    _line_entries(text, line_start, line_end, line, entries, in_titles)
    if len({occ.key for occ, _ in entries}) < _MIN_LISTED:
        return occurrences
    for occ, is_act in entries:
        occ.listed = True
        occ.introduced = occ.introduced or is_act
    skip = {id(occ) for occ in in_titles}
    return [occ for occ in occurrences if id(occ) not in skip]


def _line_entries(
    text: str,
    start: int,
    end: int,
    occurrences: list[_Occurrence],
    entries: list[tuple[_Occurrence, bool]],
    in_titles: list[_Occurrence],
) -> None:
    """Add the names of one line that are entries to `entries`, each with whether the line says it is an act
    (a quoted title goes with it, or it is listed with other acts), and, when the line has entries, its names
    inside quoted titles to `in_titles`. Linear in the line: names, titles and fields are in order."""
    if not occurrences or end - start > _ENTRY_LINE_CHARS:
        return
    for occ in occurrences:
        occ.line = start
    if end - start - sum(o.end - o.start for o in occurrences) > _ENTRY_SLACK:
        line = text[start:end]
        if not any(cut in line for cut in _FIELD_MARKS):
            return  # one field with too much besides its names: prose (the common case; str.find is fast)
    quoted = [m.span() for m in _QUOTED.finditer(text, start, end)]
    quote_starts = [q_start for q_start, _ in quoted]

    def in_quotes(at: int) -> bool:
        k = bisect.bisect_right(quote_starts, at) - 1
        return k >= 0 and at < quoted[k][1]

    mark = _LIST_MARK.match(text, start, end)
    fields: list[tuple[int, int]] = []
    field_start = mark.end() if mark else start
    for separator in _FIELD_SEPARATOR.finditer(text, field_start, end):
        if not in_quotes(separator.start()):
            fields.append((field_start, separator.start()))
            field_start = separator.end()
    fields.append((field_start, end))
    found: list[tuple[_Occurrence, bool]] = []
    o = q = 0
    for k, (f_start, f_end) in enumerate(fields):
        names = []
        while o < len(occurrences) and occurrences[o].start < f_end:
            occ = occurrences[o]
            o += 1
            if occ.start >= f_start and occ.end <= f_end and not in_quotes(occ.start):
                names.append(occ)
        titles = []
        while q < len(quoted) and quoted[q][0] < f_end:
            if quoted[q][0] >= f_start:
                titles.append(quoted[q])
            q += 1
        if not names:
            continue
        covered = sum(n.end - n.start for n in names) + sum(q_end - q_start for q_start, q_end in titles)
        if f_end - f_start - covered > _ENTRY_SLACK:
            continue  # too much other text for glue and a collaborator's name: prose (the common case, fast)
        rest, at = [], f_start
        for span_start, span_end in sorted([(n.start, n.end) for n in names] + titles):
            rest.append(text[at:span_start] if span_start > at else "")
            at = max(at, span_end)
        rest.append(text[at:f_end])
        if any(w.lower() not in _ENTRY_GLUE for w in _WORD.findall(_CREDIT_TAIL.sub(" ", " ".join(rest)))):
            continue  # other words in the field: prose, or a name inside a longer phrase
        after = fields[k + 1][0] if k + 1 < len(fields) else end
        is_act = bool(titles) or after in quote_starts[q : q + 1]
        is_act = is_act or len({n.key for n in names}) >= _ACT_LIST
        found += [(occ, is_act) for occ in names]
    if found:
        entries += found
        in_titles += [occ for occ in occurrences if in_quotes(occ.start)]


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
