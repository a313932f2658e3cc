"""The artist data: it loads, it is consistent, it covers the acts fans ask about, and bad data is refused
with an error that names the entry."""

import hashlib
import json
from importlib import resources

import pytest

from bot.artists import ArtistDataError, ArtistIndex, compact_key
from bot.models import ArtistRef

DATA = resources.files("bot").joinpath("data")


@pytest.fixture(scope="module")
def index() -> ArtistIndex:
    return ArtistIndex.load()


@pytest.fixture(scope="module")
def kpopnet() -> dict:
    return json.loads(DATA.joinpath("kpopnet.min.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def own() -> str:
    return DATA.joinpath("artists.toml").read_text(encoding="utf-8")


def test_kpopnet_is_shipped_unchanged_with_its_licence(kpopnet):
    assert len(kpopnet["idols"]) == 835 and len(kpopnet["groups"]) == 182
    raw = DATA.joinpath("kpopnet.min.json").read_bytes()
    assert (
        hashlib.sha256(raw).hexdigest() == "e0c0065845b8c339daf1eb64cb8353bdfd99ad492cdcc20c242a5cb6060efcd2"
    )
    licence = DATA.joinpath("KPOPNET_COPYING").read_text(encoding="utf-8")
    assert "kpopnet.json 2.0.5" in licence and "CC0 1.0 Universal" in licence


def test_coverage_counts(index):
    groups = [a for a in index if a.is_group]
    people = [a for a in index if not a.is_group]
    print(f"\nartist data: {len(groups)} groups and sub-units, {len(people)} idols and soloists")
    assert len(groups) >= 150
    assert len(people) >= 1000


REQUIRED = {
    "BTS": "bts", "EXO": "exo", "SEVENTEEN": "seventeen", "Stray Kids": "stray-kids", "NCT 127": "nct-127",
    "NCT DREAM": "nct-dream", "WayV": "wayv", "NCT U": "nct-u", "NCT WISH": "nct-wish", "ENHYPEN": "enhypen",
    "TXT": "txt", "ATEEZ": "ateez", "BIGBANG": "bigbang", "SHINee": "shinee", "Super Junior": "super-junior",
    "GOT7": "got7", "MONSTA X": "monsta-x", "2PM": "2pm", "INFINITE": "infinite", "BTOB": "btob",
    "TREASURE": "treasure", "ZEROBASEONE": "zerobaseone", "RIIZE": "riize", "BOYNEXTDOOR": "boynextdoor",
    "TWS": "tws", "THE BOYZ": "the-boyz", "iKON": "ikon", "WINNER": "winner", "DAY6": "day6", "KARD": "kard",
    "TWICE": "twice", "BLACKPINK": "blackpink", "Red Velvet": "red-velvet", "aespa": "aespa", "IVE": "ive",
    "NewJeans": "newjeans", "LE SSERAFIM": "le-sserafim", "ITZY": "itzy", "(G)I-DLE": "gidle",
    "MAMAMOO": "mamamoo", "IU": "iu", "BoA": "boa", "PSY": "psy", "Taeyeon": "girls-generation-taeyeon",
    "Chungha": "chungha", "Sunmi": "sunmi", "Jessi": "jessi", "Zico": "block-b-zico", "Jay Park": "jay-park",
    "Crush": "crush",
}  # fmt: skip


@pytest.mark.parametrize(("name", "artist_id"), sorted(REQUIRED.items()))
def test_the_biggest_acts_are_there(index, name, artist_id):
    assert index.resolve(name).id == artist_id


def test_biggest_groups_have_their_members(index):
    sizes = {"bts": 7, "seventeen": 13, "twice": 9, "blackpink": 4, "exo": 9, "enhypen": 7, "txt": 5}
    for group_id, size in sizes.items():
        assert len(index.get(group_id).member_ids) == size, group_id
    kard = {index.get(m).name for m in index.get("kard").member_ids}
    assert kard == {"J.Seph", "BM", "Jeon Somin", "Jeon Jiwoo"}  # kpopnet's two plus the two it lacks


def test_ids_are_unique_readable_slugs(index):
    ids = [a.id for a in index]
    assert len(ids) == len(set(ids))
    for artist_id in ids:
        assert artist_id == artist_id.lower() and " " not in artist_id
    for artist_id in ("bts", "bts-v", "iu", "blackpink-lisa", "twice-nayeon", "red-velvet-joy"):
        assert index.get(artist_id) is not None, artist_id


def test_ids_are_deterministic(kpopnet, own):
    first = ArtistIndex.from_data(kpopnet, own)
    second = ArtistIndex.from_data(json.loads(json.dumps(kpopnet)), own)
    assert sorted(first.artists) == sorted(second.artists)


def test_membership_is_consistent_both_ways(index):
    for artist in index:
        if artist.is_group:
            for member in (*artist.member_ids, *artist.former_member_ids):
                assert member in index.artists, (artist.id, member)
                assert artist.id in index.get(member).group_ids, (artist.id, member)
            for unit in artist.unit_ids:
                assert index.get(unit).parent_id == artist.id
            if artist.parent_id:
                assert index.get(artist.parent_id).is_group
        else:
            for group in artist.group_ids:
                assert group in index.artists and index.get(group).is_group, (artist.id, group)
            if artist.main_group_id:
                assert artist.main_group_id in artist.group_ids, artist.id


def test_refs_follow_the_contract(index):
    assert index.get("bts-v").ref() == ArtistRef("bts-v", "V", "BTS")
    assert index.get("iu").ref() == ArtistRef("iu", "IU", None)
    assert index.get("bts").ref() == ArtistRef("bts", "BTS", None)
    assert index.get("nct-127").ref().group is None  # a unit is a group
    assert index.get("bts-v").label == "V (BTS)" and index.get("iu").label == "IU"
    assert index.get("jay-park").ref().group is None  # a soloist, though once in 2PM
    assert index.get("le-sserafim-sakura").main_group_name == "LE SSERAFIM"


def test_no_name_silently_means_two_artists(index):
    """Every name shared by several artists is known as shared: tagging then needs context (or takes the
    best-known holder), and a search offers the others."""
    shared = [key for key, owners in index._query_names.items() if len({a for a, _ in owners}) > 1]
    assert shared, "the data has shared names (three Chaewons): the check must see them"
    for key in shared:
        assert key in index.shared_keys
        primary = index.primary.get(key)
        for entry in index.tagger._table[key]:
            if entry.artist_id != primary:
                assert entry.weak, (key, entry.artist_id)
    assert {"chaewon", "mark", "jimin", "kimtaehyung"} <= set(shared)


def test_ambiguous_names_need_context(index):
    for artist_id in (
        "bts-v",
        "red-velvet-joy",
        "shinee-key",
        "rain",
        "mamamoo-solar",
        "wayv-ten",
        "exo-kai",
    ):
        artist = index.get(artist_id)
        entries = [e for e in index.tagger._table[compact_key(artist.name)] if e.artist_id == artist_id]
        assert entries and all(e.weak for e in entries), artist_id


def _broken(own: str, old: str, new: str) -> str:
    assert old in own
    return own.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ('aliases = ["Taehyung",', 'aliases = ["Jimin", "Taehyung",', "alias 'Jimin' of 'bts-v'"),
        ('{ ref = "exo-chen" }', '{ ref = "exo-chenn" }', "names no idol; did you mean 'exo-chen'?"),
        ('id = "exo-sc"', 'id = "exo-cbx"', "id 'exo-cbx' is already used"),
        ('match = "AKMU"', 'match = "AKMUU"', "no kpopnet group is named 'AKMUU'"),
        (
            'match = "Blackpink/Rose"',
            'match = "Blackpink/Rosie"',
            "no kpopnet idol matches 'Blackpink/Rosie'",
        ),
        ('parent = "exo"\ndebut = "2016', 'parent = "nobody"\ndebut = "2016', "parent 'nobody' is no group"),
        ('hangul = "방탄소년단"', 'hangeul = "방탄소년단"', "unknown field(s) ['hangeul']"),
        (
            'tier = 1\nmembers = [\n    { name = "RM"',
            'tier = 9\nmembers = [\n    { name = "RM"',
            "tier must be",
        ),
        ('[[group]]\nid = "bts"', '[[group]\nid = "bts"', "not valid TOML"),
    ],
)
def test_bad_data_is_refused_naming_the_entry(kpopnet, own, old, new, says):
    with pytest.raises(ArtistDataError) as caught:
        ArtistIndex.from_data(kpopnet, _broken(own, old, new))
    assert says in str(caught.value)


def test_a_parent_cycle_is_refused(kpopnet, own):
    broken = own.replace('id = "nct"\nname = "NCT"', 'id = "nct"\nname = "NCT"\nparent = "nct-127"', 1)
    with pytest.raises(ArtistDataError, match="cycle"):
        ArtistIndex.from_data(kpopnet, broken)


def test_kpopnet_in_the_wrong_shape_is_refused(own):
    with pytest.raises(ArtistDataError, match="groups"):
        ArtistIndex.from_data({"idols": []}, own)
