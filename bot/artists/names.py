"""How a name is compared: folding (case, accents, curly quotes), the lookup key every name is found by, slugs."""

from __future__ import annotations

import re
import unicodedata

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‛": "'", "′": "'", "`": "'", "´": "'", "＇": "'"})
_QUOTE_LIST = tuple(chr(c) for c in _QUOTES)
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def fold(text: str) -> str:
    """Lower case, compatibility forms folded, accents dropped (Rosé = Rose), curly quotes straightened."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    decomposed = unicodedata.normalize("NFD", text)
    # drop combining marks but keep Hangul syllables whole (NFD splits them into jamo)
    out = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", out).casefold()


def fold_quotes(text: str) -> str:
    """Curly and prime apostrophes straightened, nothing else changed."""
    # str.replace per quote present: a C search each, ~20x faster than one regex or translate pass over a story
    for quote in _QUOTE_LIST:
        if quote in text:
            text = text.replace(quote, "'")
    return text


def compact_key(text: str) -> str:
    """The key every name is looked up by: folded, letters and digits only ("(G)I-DLE" -> "gidle")."""
    return "".join(c for c in fold(text) if c.isalnum())


def shape_key(text: str) -> str:
    """Like compact_key but keeps the dots and brackets that tell "D.O." from "do" and "f(x)" from "FX"."""
    kept = "".join(c for c in fold(text) if c.isalnum() or c in ".:()&")
    return kept.rstrip(".")


def slugify(text: str) -> str:
    text = fold(text)
    text = re.sub(r"[^0-9a-z\uac00-\ud7a3]+", "-", text).strip("-")
    return text or "x"


def is_hangul(text: str) -> bool:
    """Whether the text holds a Hangul syllable."""
    return bool(_HANGUL.search(text))
