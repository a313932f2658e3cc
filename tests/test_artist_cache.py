"""The artist index kept on disk (bot/artists/cache.py): read back it is the same index as one built from the
data, any change to the data makes a new one, and a cache that cannot be read or written only costs time."""

import pytest

from bot.artists import ArtistIndex, cache
from bot.artists import index as index_module

SAMPLE = [
    ("BTS's V and IU wow fans in Love Wins All", "Taehyung and IU star in the video.", ["BTS", "IU"]),
    ("뷔가 돌아왔다", "방탄소년단 뷔의 새 앨범", []),
    ("Rosé tops the chart", "BLACKPINK's Rosé and Bruno Mars", ["BLACKPINK"]),
    ("V LIVE shuts down", "The V LIVE app closes its doors.", []),
]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(folder))
    return folder


def load_fresh() -> ArtistIndex:
    """What ArtistIndex.load does in a new process (the per-process copy is not looked at)."""
    return ArtistIndex._load_packaged()


def refuse_building(monkeypatch) -> None:
    def build(*args, **kwargs):
        raise AssertionError("the index was built, not read from the cache")

    monkeypatch.setattr(index_module, "build_artist_data", build)


def test_the_kept_index_is_the_built_index(cache_dir, monkeypatch):
    built = load_fresh()
    [kept_file] = cache_dir.glob("artist-index-*.marshal")
    refuse_building(monkeypatch)
    kept = load_fresh()
    assert kept.artists == built.artists
    assert kept.rules == built.rules
    assert kept._query_names == built._query_names
    assert kept.primary == built.primary and kept.shared_keys == built.shared_keys
    for query in ("V", "Taehyung", "뷔", "bts v", "V (BTS)", "Taehyng", "Jisoo", "aespa", "zzqx"):
        assert kept.resolve_all(query) == built.resolve_all(query), query
        assert kept.suggest(query) == built.suggest(query), query
    assert kept._tagger is None  # a search never builds it
    for title, text, categories in SAMPLE:
        assert kept.tag_weighted(title, text, categories) == built.tag_weighted(title, text, categories)
    assert kept.tag(*SAMPLE[0]) and kept._tagger is not None
    assert kept_file.exists()


def test_load_builds_the_tagger_unless_asked_not_to(cache_dir, monkeypatch):
    monkeypatch.setattr(ArtistIndex, "_cached", None)
    names_only = ArtistIndex.load(tagging=False)
    assert names_only._tagger is None
    assert ArtistIndex.load() is names_only and names_only._tagger is not None


def test_other_data_or_code_is_another_key(cache_dir):
    kpopnet, toml = cache.packaged_bytes()
    key = cache.cache_key((kpopnet, toml))
    assert cache.cache_key((kpopnet, toml)) == key
    assert cache.cache_key((kpopnet, toml.replace(b"[[group]]", b"[[group]] ", 1))) != key
    assert cache.cache_key((kpopnet[:-1] + b" ", toml)) != key
    load_fresh()
    assert cache.read(key) is not None
    assert cache.read(cache.cache_key((kpopnet, toml + b"\n"))) is None  # nothing kept for that data


def test_a_torn_or_foreign_cache_file_is_rebuilt(cache_dir):
    built = load_fresh()
    [kept_file] = cache_dir.glob("artist-index-*.marshal")
    whole = kept_file.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not marshal at all", b""):
        kept_file.write_bytes(damaged)
        again = load_fresh()
        assert again.artists == built.artists and again.resolve_all("V") == built.resolve_all("V")
        assert kept_file.read_bytes() == whole  # written anew


def test_an_unwritable_cache_folder_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker / "cache"))
    index = load_fresh()
    assert [a.id for a in index.resolve_all("V")][:1] == ["bts-v"]
