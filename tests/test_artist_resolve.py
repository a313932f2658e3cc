"""Resolving what people type to an artist, and autocomplete."""

import pytest

from bot.artists import ArtistIndex


@pytest.fixture(scope="module")
def index() -> ArtistIndex:
    return ArtistIndex.load()


@pytest.mark.parametrize(
    "query",
    ["V", "v", " V ", "Taehyung", "taehyung", "Tae-hyung", "Tae Hyung", "Kim Taehyung", "KIM TAE-HYUNG",
     "kim tae hyung", "뷔", "김태형", "Taehyng", "Kim Taehyng", "bts-v", "V (BTS)", "BTS V", "BTS's V", "bts’s v"],
)  # fmt: skip
def test_every_name_of_v(index, query):
    assert index.resolve(query).id == "bts-v"


@pytest.mark.parametrize(
    ("query", "artist_id"),
    [
        ("BTS", "bts"), ("bts", "bts"), ("방탄소년단", "bts"), ("Bangtan Boys", "bts"), ("Bangtan", "bts"),
        ("IU", "iu"), ("아이유", "iu"), ("Lee Ji-eun", "iu"), ("Jungkook", "bts-jungkook"),
        ("Jung Kook", "bts-jungkook"), ("정국", "bts-jungkook"), ("Agust D", "bts-suga"), ("jhope", "bts-jhope"),
        ("J-Hope", "bts-jhope"), ("(G)I-DLE", "gidle"), ("GIDLE", "gidle"), ("g i-dle", "gidle"),
        ("여자아이들", "gidle"), ("Rosé", "blackpink-rose"), ("rose", "blackpink-rose"),
        ("Roseanne Park", "blackpink-rose"), ("Lalisa", "blackpink-lisa"), ("SNSD", "girls-generation"),
        ("Girls Generation", "girls-generation"), ("Red Velvet Joy", "red-velvet-joy"),
        ("Joy (Red Velvet)", "red-velvet-joy"), ("Park Sooyoung", "red-velvet-joy"), ("TXT", "txt"),
        ("Tomorrow X Together", "txt"), ("Stray Kidz", "stray-kids"), ("Blakpink", "blackpink"),
        ("Jimin", "bts-jimin"), ("Kim Taehyung", "bts-v"), ("J.Seph", "kard-j-seph"), ("D.O.", "exo-do"),
        ("Doh Kyungsoo", "exo-do"), ("Chaewon", "le-sserafim-kim-chaewon"), ("Go Won", "loona-go-won"),
        ("Park Chaewon", "loona-go-won"), ("ILLIT", "illit"), ("I'll-it", "illit"), ("Mark Tuan", "got7-mark"),
        ("Mark Lee", "nct-127-mark"), ("Mark (GOT7)", "got7-mark"), ("NCT DREAM Mark", "nct-127-mark"),
        ("Winter", "aespa-winter"), ("Karina", "aespa-karina"), ("Taeyeon", "girls-generation-taeyeon"),
        ("Chung Ha", "chungha"), ("BoA", "boa"), ("PSY", "psy"), ("Zico", "block-b-zico"),
    ],
)  # fmt: skip
def test_names_resolve(index, query, artist_id):
    assert index.resolve(query).id == artist_id


def test_a_shared_name_lists_every_holder(index):
    marks = {a.id for a in index.resolve_all("Mark")}
    assert {"nct-127-mark", "got7-mark"} <= marks
    chaewons = [a.id for a in index.resolve_all("Chaewon")]
    assert chaewons[0] == "le-sserafim-kim-chaewon" and len(chaewons) >= 3


@pytest.mark.parametrize("query", ["", "   ", "zzqx", "🥹", "\x00", "x" * 10_000, "((((", "*", "'"])
def test_nonsense_resolves_to_nobody(index, query):
    assert index.resolve(query) is None


def test_resolve_exact_has_no_typo_tolerance(index):
    assert index.resolve_exact("Taehyng") == []
    assert index.resolve("Taehyng").id == "bts-v"


def test_autocomplete_best_first(index):
    labels = [a.label for a in index.suggest("V")]
    assert labels[0] == "V (BTS)"
    assert len(labels) <= 25
    tae = [a.id for a in index.suggest("tae")]
    assert {"girls-generation-taeyeon", "bigbang-taeyang", "shinee-taemin", "nct-127-taeyong"} <= set(tae)
    assert [a.id for a in index.suggest("Taehyung")][0] == "bts-v"
    assert [a.id for a in index.suggest("black")][0] == "blackpink"
    assert [a.id for a in index.suggest("뷔")][0] == "bts-v"
    assert [a.id for a in index.suggest("bts v")][0] == "bts-v"
    assert [a.id for a in index.suggest("Jungkok")][0] == "bts-jungkook"  # a typo still suggests


def test_autocomplete_limits_and_empty_query(index):
    assert len(index.suggest("a", limit=25)) == 25
    assert len(index.suggest("a", limit=3)) == 3
    top = index.suggest("")
    assert top and all(a.is_group and a.tier == 1 for a in top)
    assert index.suggest("zzqx") == []
    for hostile in ("\x00", "🥹" * 50, "(" * 300, "x" * 10_000):
        assert isinstance(index.suggest(hostile), list)


def test_expand_a_group_to_its_members_and_units(index):
    bts = index.expand("bts")
    assert bts[0] == "bts" and len(bts) == 8 and "bts-v" in bts
    nct = set(index.expand("nct"))
    assert {"nct-127", "nct-dream", "wayv", "nct-u", "nct-wish", "nct-127-mark", "nct-dream-jeno"} <= nct
    assert "nct-127-taeil" not in nct  # a former member is not today's group
    assert set(index.expand("seventeen")) >= {"seventeen-bss", "seventeen-hoshi"}
    assert index.expand("bts-v") == ["bts-v"]
    assert index.expand("no-such-artist") == []
