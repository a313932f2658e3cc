"""Keyword filters of a subscription: plain words or phrases a story must name (any one of them) or must not.

What an admin types is never a pattern: it is cut into words exactly as the story's headline and summary are,
and a keyword matches where its words follow each other there, whole, whatever the case and the accents
("rose" finds "Rosé", "comeback" finds "COMEBACK!" but not "comebacks", "love wins all" finds "Love Wins
All"). Punctuation only separates words, so "f(x)" looks for "f" then "x" and ".*" looks for nothing (refused).
Scripts written without spaces between words are matched inside the story's words: a Hangul keyword at the
start of a word (Korean particles follow it: "뷔" finds "뷔가"), Chinese, Japanese and Thai anywhere in one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.artists import fold

MAX_KEYWORDS = 10  # words or phrases in one option
MAX_KEYWORD_LENGTH = 60  # characters in one of them
MAX_KEYWORD_WORDS = 8  # words in one phrase
MAX_OPTION_LENGTH = 300  # characters of the whole option, as typed (the slash command caps it too)

_SEPARATORS = re.compile(r"[,，、;；\n]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class KeywordError(ValueError):
    """Keywords that cannot be used; the text says why and what to type instead (shown to the admin)."""


def words_of(text: str) -> list[str]:
    """The words of a text as keywords see them: folded (case, accents, width) and split at anything that is
    not a letter or a digit."""
    folded = fold(text or "")
    words: list[str] = []
    current: list[str] = []
    for char in folded:
        if char.isalnum():
            current.append(char)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words


def parse_keywords(text: str | None, *, option: str = "keywords") -> list[str]:
    """The words or phrases of a comma-separated option, cleaned (spaces collapsed, repeats dropped).

    Raises KeywordError when the option is too long, has too many of them, or one has nothing to look for."""
    if text is None or not text.strip():
        return []
    if len(text) > MAX_OPTION_LENGTH:
        raise KeywordError(f"`{option}` is too long: at most {MAX_OPTION_LENGTH} characters in all")
    found: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for part in _SEPARATORS.split(text):
        phrase = " ".join(part.split())
        if not phrase:
            continue
        if len(phrase) > MAX_KEYWORD_LENGTH:
            raise KeywordError(
                f"`{option}`: “{phrase[:40]}…” is too long: at most {MAX_KEYWORD_LENGTH} characters each"
            )
        words = tuple(words_of(phrase))
        if not words:
            raise KeywordError(
                f"`{option}`: “{phrase}” has no letters or digits to look for; keywords are plain words or"
                " phrases (not patterns), separated by commas"
            )
        if len(words) > MAX_KEYWORD_WORDS:
            raise KeywordError(f"`{option}`: “{phrase}” has too many words: at most {MAX_KEYWORD_WORDS}")
        if words not in seen:
            seen.add(words)
            found.append(phrase)
    if len(found) > MAX_KEYWORDS:
        raise KeywordError(f"`{option}` has {len(found)} entries: at most {MAX_KEYWORDS}")
    return found


EXACT, PREFIX, INSIDE = 0, 1, 2  # how a keyword's word matches a story's word

Phrase = tuple[tuple[str, int], ...]  # a keyword: its words, each with how it matches


class StoryWords:
    """A story's headline and summary cut into words, once, for every filter that looks at it."""

    def __init__(self, parts: Sequence[Sequence[str]]) -> None:
        self.parts = [
            tuple(words) for words in parts
        ]  # a phrase never runs from the headline into the summary
        self._where: list[dict[str, list[int]]] | None = None

    @classmethod
    def of(cls, *texts: str) -> StoryWords:
        return cls([words_of(t) for t in texts if t])

    def starts(self, part: int, word: str) -> list[int]:
        """Where `word` stands in a part (for exact words: a phrase can only start there)."""
        if self._where is None:
            self._where = []
            for words in self.parts:
                where: dict[str, list[int]] = {}
                for i, w in enumerate(words):
                    where.setdefault(w, []).append(i)
                self._where.append(where)
        return self._where[part].get(word, [])


def _phrase(keyword: str) -> Phrase:
    words = words_of(keyword)
    return tuple(
        (w, INSIDE if _UNSPACED.search(w) else PREFIX if _HANGUL.search(w) else EXACT) for w in words
    )


def _word_matches(word: str, mode: int, story_word: str) -> bool:
    if mode == EXACT:
        return word == story_word
    if mode == PREFIX:
        return story_word.startswith(word)
    return word in story_word


def _phrase_in(phrase: Phrase, story: StoryWords) -> bool:
    size = len(phrase)
    first, mode = phrase[0]
    for part, words in enumerate(story.parts):
        starts = story.starts(part, first) if mode == EXACT else range(len(words) - size + 1)
        for start in starts:
            if start + size <= len(words) and all(
                _word_matches(w, m, words[start + k]) for k, (w, m) in enumerate(phrase)
            ):
                return True
    return False


@dataclass(frozen=True)
class KeywordFilter:
    """A subscription's `keywords` (any one must be named) and `exclude` (none may be)."""

    required: tuple[Phrase, ...]
    excluded: tuple[Phrase, ...]

    @classmethod
    def build(cls, keywords: Iterable[str], exclude: Iterable[str]) -> KeywordFilter | None:
        """The filter of stored keywords; None when there is nothing to filter on."""
        required = tuple(p for p in (_phrase(k) for k in keywords) if p)
        excluded = tuple(p for p in (_phrase(k) for k in exclude) if p)
        if not required and not excluded:
            return None
        return cls(required, excluded)

    def accepts(self, story: StoryWords) -> bool:
        if any(_phrase_in(phrase, story) for phrase in self.excluded):
            return False
        return not self.required or any(_phrase_in(phrase, story) for phrase in self.required)
