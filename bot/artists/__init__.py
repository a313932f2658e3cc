"""Artists: the data (kpopnet.json girl groups + the project's own artists.toml), name resolution,
autocomplete, and tagging stories with the artists they are about.

- `data.py`: loading and checking the data into `Artist` records, every name each artist goes by
- `names.py`: how names are compared (folding, the lookup key)
- `index.py`: `ArtistIndex`: get, resolve any name, autocomplete; loaded once per process
- `tagging.py`: `StoryTagger`: the artists a story's text is about

Everything here is plain data and CPU work: no I/O after `ArtistIndex.load()`, no Discord.
"""

from typing import TYPE_CHECKING, Any

from bot.artists.data import ALIAS, DEFAULT_TIER, GIVEN, REAL, STAGE, Artist, ArtistDataError
from bot.artists.index import ArtistIndex, load_artist_index
from bot.artists.names import compact_key, fold, fold_quotes, slugify

if TYPE_CHECKING:
    from bot.artists.tagging import StoryTagger

__all__ = [
    "ALIAS",
    "DEFAULT_TIER",
    "GIVEN",
    "REAL",
    "STAGE",
    "Artist",
    "ArtistDataError",
    "ArtistIndex",
    "StoryTagger",
    "compact_key",
    "fold",
    "fold_quotes",
    "load_artist_index",
    "slugify",
]


def __getattr__(name: str) -> Any:
    # the tagger's module is imported when first asked for: a command that only looks names up never loads it
    if name == "StoryTagger":
        from bot.artists.tagging import StoryTagger

        return StoryTagger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
