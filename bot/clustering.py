"""Story clusters: the same event told by several outlets is one cluster (stories.cluster_id).

Two stories are the same story when
  1. they were published (else first seen) within CLUSTER_WINDOW of each other, and
  2. they share an artist; or, when one of them is untagged, their titles share at least
     MIN_SHARED_TITLE_TERMS content words (artists are the strongest hint two outlets cover one event, and
     untagged stories, about actors or agencies, must make up for it in the headline), and
  3. they say the same thing: `similarity(a, b) >= SAME_STORY_THRESHOLD` (or UNTAGGED_THRESHOLD when untagged).

`similarity` compares the *event words* of the two stories: title and summary lowercased, folded, stripped of
English stop words, of words every K-pop story uses ("fans", "group", "reveals", month names…), of dates and
of the stories' own artist names (shared artists are already rule 2; counting them again would join "V sings
to IU" with "V enlists"), then lightly stemmed, with a small table of words outlets use for one kind of event
("exits"/"departs"/"leaves"). Each word weighs 2 when both headlines have it, else 1; the score is the weighted
overlap (shared weight over the smaller story's weight, which forgives an SCMP one-line teaser next to a
Koreaboo excerpt) blended with the Dice coefficient of character 4-grams of those words, which catches
"enlists"/"enlistment" and "lip-syncing"/"lip-sync" that stemming misses (under MIN_WORD_SCORE of word
overlap the n-grams are skipped: spelling alone never makes two stories one). All of it is plain set
arithmetic with no corpus statistics, so the function is pure and answers the same in a test and in production.
Thresholds were set on the "tuning" stories of tests/fixtures/story_pairs.json; the "holdout" ones check them.

Finding candidates uses an index, not a scan: table cluster_keys (migration 0500) holds, per story, one row per
artist ("a:bts-v") and per headline word ("t:enlist"; "u:enlist" when the story is untagged) with the story's
time, keyed (key, at). A new story looks up only its own keys inside ±CLUSTER_WINDOW, scores the few stories
found with the features kept in cluster_features (parsed once and kept in a per-store cache: they never change),
and joins the best match's cluster, or starts its own (cluster id = its own id: the first story of a cluster
names it). A cluster spans at most CLUSTER_WINDOW around its first story. Clusters are never merged after the
fact, so a cluster id, once given to a delivery, stays valid.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache

from bot.models import Story
from bot.store import ClusterMember, Store
from bot.timeutil import utcnow

log = logging.getLogger(__name__)

CLUSTER_WINDOW = timedelta(hours=48)  # "published within about 48 hours of each other"
SAME_STORY_THRESHOLD = 0.27  # similarity at or above which two stories sharing an artist are one story
UNTAGGED_THRESHOLD = 0.37  # stricter when the artist tagger had nothing to say about one of them
MIN_SHARED_TITLE_TERMS = 2  # untagged stories must share this many headline words to be compared at all
TITLE_WEIGHT = 2.0  # a word in a headline weighs this much, a word only in the summary 1
SUMMARY_CHARS = 600  # summaries are excerpts; past the lead, an excerpt drifts into background
MAX_TITLE_CHARS = 400  # a hostile feed's 100 kB "headline" costs no more than a real one
NGRAM = 4  # character n-gram size for the fuzzy half of the score
MAX_CANDIDATES = 200  # stories scored per new story at most (the index orders them by keys shared)
WORD_SHARE = 0.7  # weight of the word overlap in the blend; the character n-grams get the rest
MIN_WORD_SCORE = 0.1  # below this word overlap the n-grams are not even looked at (and give nothing)
MAX_TITLE_KEYS = 12  # index at most this many title words per story (the longest: the most specific)

# English function words, and words any K-pop story may use whatever the event: sharing them says nothing.
_STOP = frozenset(
    """
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each even ever every few for from further get gets got had
has have having he her here hers herself him himself his how i if in into is it its itself just let like made
make makes me more most much my myself new no nor not now of off on once one only or other our ours out over own
per same she should so some still such than that the their theirs them themselves then there these they this
those through to too under until up upon us very via was way we were what when where which while who whom why
will with would yet you your yours
watch update updated exclusive breaking official officially reportedly report reports reported reveal reveals
revealed revealing says said say saying share shares shared sharing announce announces announced announcement
confirm confirms confirmed confirming release releases released drop drops dropped post posts posted
fan fans netizen netizens army armys blink blinks carat carats kpop k pop idol idols star stars singer singers
group groups girl boy band boyband member members agency label entertainment company music song songs video
videos clip clips news story stories moment moments viral attention buzz react reacts reaction reactions
online social media twitter instagram tiktok youtube weverse korean korea south seoul kst local time today
day days week weeks month months year years recently finally once again yet another best first
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday
here's what's know everything why look looks going around even really actually can't cant won't don't didn't
mv m v teaser
""".split()
)

# Words outlets use interchangeably for one kind of event, folded to one (applied to stems): the same event
# told by Koreaboo ("departs") and SCMP ("exits") must meet on the word that carries it.
_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("leav", "leave", "left", "depart", "departure", "exit", "withdraw", "quit"), "leave"),
    **dict.fromkeys(("enlist", "conscript", "draft"), "enlist"),
    **dict.fromkeys(("discharg", "discharge"), "discharge"),
    **dict.fromkeys(("sing", "sang", "sung", "serenad", "serenade", "vocal"), "sing"),
    **dict.fromkeys(("renew", "sign", "resign"), "sign"),
    **dict.fromkeys(("deal", "contract"), "contract"),
    **dict.fromkeys(("award", "prize", "trophy", "daesang"), "award"),  # not "won": Kim Ji Won
    **dict.fromkeys(("ep", "album", "minialbum"), "album"),
    **dict.fromkeys(("comeback", "return"), "comeback"),
    **dict.fromkeys(("dat", "relationship", "romance", "couple"), "dating"),  # not "date": release dates
    **dict.fromkeys(("injury", "injur", "hospitaliz", "hospitalis", "hiatus"), "health"),
    **dict.fromkeys(("apology", "apologiz", "apologis", "apologize", "apologise"), "apology"),
    **dict.fromkeys(("lawsuit", "sue", "sued", "court", "legal"), "legal"),
    **dict.fromkeys(("sexual", "sex"), "sex"),
    **dict.fromkeys(("view", "viewer"), "view"),
}
# Chart names are one thing: "Hot 100" must not meet "100 million views".
_PHRASES = re.compile(r"\b(hot|billboard|global|artist)\s+(100|200)\b")
# Dates and clock times: stories within the window share them by construction, so they prove nothing.
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec"
_DATES = re.compile(
    rf"\b(?:(?:{_MONTHS})[a-z]*\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})[a-z]*\b"
    r"|\d{1,2}(?::\d\d)?\s*(?:am|pm|a\.m\.|p\.m\.)(?!\w))"
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TOKEN = re.compile(r"[0-9a-z\uac00-\ud7a3]+(?:[.,][0-9]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_POSSESSIVE = re.compile(r"(?<=\w)'s?\b")
_ELLIPSIS = re.compile(r"\[\s*(?:…|\.\.\.|&#8230;)\s*\]")


@dataclass(frozen=True)
class StoryFeatures:
    """What clustering needs of a story, computed once (for stored stories, kept in cluster_features)."""

    at: datetime  # published, else first seen (UTC)
    artists: frozenset[str]  # artist ids
    title_terms: frozenset[str]  # stemmed event words of the headline
    terms: frozenset[str]  # stemmed event words of headline and summary

    @property
    def tagged(self) -> bool:
        return bool(self.artists)

    @cached_property
    def grams(self) -> frozenset[str]:
        return frozenset(_ngrams(self.terms))

    @cached_property
    def total_weight(self) -> float:
        return len(self.terms) + (TITLE_WEIGHT - 1) * len(self.title_terms)


@lru_cache(maxsize=65536)  # news vocabulary is small and repeats: stem each word once
def _stem(word: str) -> str:
    """A deliberately light English stemmer: plural, -ing, -ed, -ment (character n-grams do the rest)."""
    if len(word) <= 3 or not word.isascii() or word.isdigit():
        return word
    for suffix, keep in (("ments", 5), ("ment", 5), ("ings", 5), ("ing", 5), ("ies", 4), ("ied", 4)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep - 2:
            return word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
    if word.endswith("ed") and len(word) > 4:
        return word[:-2]
    if word.endswith("es") and len(word) > 4 and word[-3] in "sxz":
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    text = _ELLIPSIS.sub(" ", text)
    text = _POSSESSIVE.sub("", text)
    text = _THOUSANDS.sub("", _PHRASES.sub(r"\1\2", _DATES.sub(" ", text)))
    if text.isascii():
        return text
    # "rosé" and "rose" are one word; Hangul is kept as it is
    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c) or "\uac00" <= c
    )


def words(text: str) -> list[str]:
    """Lowercased, folded words of `text`, stop words and possessives removed, unstemmed."""
    return [w for w in _TOKEN.findall(_fold(text)) if w not in _STOP]


def artist_words(artists: Iterable[object]) -> frozenset[str]:
    """The words that name these artists (name, group and id parts), to leave out of the event words."""
    found: set[str] = set()
    for artist in artists:
        for text in (
            getattr(artist, "name", ""),
            getattr(artist, "group", None) or "",
            getattr(artist, "id", ""),
        ):
            found.update(_TOKEN.findall(_fold(str(text).replace("-", " "))))
    return frozenset(found)


def event_terms(text: str, exclude: frozenset[str] = frozenset()) -> frozenset[str]:
    stems = (_stem(w) for w in words(text) if w not in exclude)
    return frozenset(_SYNONYMS.get(s, s) for s in stems)


def story_moment(story: Story) -> datetime:
    """When the story happened for clustering: published, else first seen, else now."""
    moment = story.published or story.first_seen or utcnow()
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def features_of(story: Story) -> StoryFeatures:
    exclude = artist_words(story.artists)
    title = (
        story.title
        if len(story.title) <= MAX_TITLE_CHARS
        else story.title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0]
    )
    title_terms = event_terms(title, exclude)
    summary_terms = event_terms(story.summary[:SUMMARY_CHARS], exclude)
    return StoryFeatures(
        at=story_moment(story),
        artists=frozenset(a.id for a in story.artists),
        title_terms=title_terms,
        terms=title_terms | summary_terms,
    )


@lru_cache(maxsize=65536)  # the same words come back in story after story
def _term_grams(term: str) -> tuple[str, ...]:
    padded = f" {term} "
    if len(padded) <= NGRAM:
        return (padded,)
    return tuple(padded[i : i + NGRAM] for i in range(len(padded) - NGRAM + 1))


def _ngrams(terms: Iterable[str]) -> set[str]:
    grams: set[str] = set()
    for term in terms:
        grams.update(_term_grams(term))
    return grams


def similarity(a: StoryFeatures, b: StoryFeatures) -> float:
    """How much two stories say the same thing, 0..1 (see the module docstring). Pure and symmetric."""
    if not a.terms or not b.terms:
        return 0.0
    # a shared word weighs TITLE_WEIGHT when it is in both headlines, else 1
    shared = len(a.terms & b.terms) + (TITLE_WEIGHT - 1) * len(a.title_terms & b.title_terms)
    word_score = shared / min(a.total_weight, b.total_weight)
    if word_score < MIN_WORD_SCORE:  # next to nothing in common: spelling cannot make it the same story
        return WORD_SHARE * word_score
    gram_score = 2 * len(a.grams & b.grams) / (len(a.grams) + len(b.grams))
    return WORD_SHARE * word_score + (1 - WORD_SHARE) * gram_score


def comparable(a: StoryFeatures, b: StoryFeatures) -> bool:
    """Rules 1 and 2: close enough in time, and sharing an artist (or, untagged, headline words)."""
    if abs(a.at - b.at) > CLUSTER_WINDOW:
        return False
    if a.tagged and b.tagged:
        return bool(a.artists & b.artists)
    return len(a.title_terms & b.title_terms) >= MIN_SHARED_TITLE_TERMS


def match_score(a: StoryFeatures, b: StoryFeatures) -> float | None:
    """The similarity of two stories when they are the same story, else None."""
    if not comparable(a, b):
        return None
    score = similarity(a, b)
    threshold = SAME_STORY_THRESHOLD if a.tagged and b.tagged else UNTAGGED_THRESHOLD
    return score if score >= threshold else None


def features_same_story(a: StoryFeatures, b: StoryFeatures) -> bool:
    return match_score(a, b) is not None


def same_story(a: Story, b: Story) -> bool:
    """Whether two stories report the same event (rules 1-3 of the module docstring)."""
    return features_same_story(features_of(a), features_of(b))


# --- the store: candidates by index, one cluster per story ------------------------------------------------------


@dataclass
class _Stored:
    story_id: int
    cluster_id: int
    cluster_at: int
    features: StoryFeatures


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _title_keys(features: StoryFeatures) -> list[str]:
    return sorted(features.title_terms, key=lambda t: (-len(t), t))[:MAX_TITLE_KEYS]


def index_keys(features: StoryFeatures) -> list[str]:
    """The cluster_keys of a story: its artists ("a:"), and its most specific (longest) headline words, marked
    "t:" for a tagged story and "u:" for an untagged one, so that a tagged story looks up headline words only
    among untagged stories (between two tagged stories only a shared artist makes a candidate)."""
    mark = "t" if features.tagged else "u"
    return [f"a:{a}" for a in sorted(features.artists)] + [f"{mark}:{t}" for t in _title_keys(features)]


def lookup_keys(features: StoryFeatures) -> list[str]:
    """The cluster_keys a story looks up: its artists and, among untagged stories, its headline words; an
    untagged story looks up its headline words among all stories."""
    titles = _title_keys(features)
    found = [f"a:{a}" for a in sorted(features.artists)] + [f"u:{t}" for t in titles]
    if not features.tagged:
        found += [f"t:{t}" for t in titles]
    return found


class _StoredCache:
    """Clustered stories read back from the store, by id, most recently used last. A stored story's features,
    cluster and cluster time never change once written (clusters are not merged), so a story that is a
    candidate for many new ones over its 48 hours is read and parsed once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[int, _Stored] = OrderedDict()

    def get(self, story_id: int) -> _Stored | None:
        found = self.items.get(story_id)
        if found is not None:
            self.items.move_to_end(story_id)
        return found

    def put(self, stored: _Stored) -> None:
        self.items[stored.story_id] = stored
        self.items.move_to_end(stored.story_id)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


CACHE_SIZE = 20_000  # clustered stories kept parsed per store: a few days of news from every outlet
_caches: weakref.WeakKeyDictionary[Store, _StoredCache] = weakref.WeakKeyDictionary()


def _cache(store: Store) -> _StoredCache:
    cache = _caches.get(store)
    if cache is None:
        cache = _caches[store] = _StoredCache(CACHE_SIZE)
    return cache


def _stored(member: ClusterMember) -> _Stored:
    features = StoryFeatures(
        at=datetime.fromtimestamp(member.at, UTC),
        artists=member.artists,
        title_terms=member.title_terms,
        terms=member.title_terms | member.body_terms,
    )
    return _Stored(member.story_id, member.cluster_id, member.cluster_at, features)


async def _candidates(store: Store, features: StoryFeatures) -> list[_Stored]:
    """Stored stories that share an artist, or enough headline words, with `features`, within the window."""
    at = _epoch(features.at)
    window = int(CLUSTER_WINDOW.total_seconds())
    ids = await store.clusters.candidates(
        lookup_keys(features),
        low=at - window,
        high=at + window,
        min_shared_keys=MIN_SHARED_TITLE_TERMS,
        limit=MAX_CANDIDATES,
    )
    cache = _cache(store)
    found: list[_Stored] = []
    missing: list[int] = []
    for story_id in ids:
        stored = cache.get(story_id)
        if stored is None:
            missing.append(story_id)
        else:
            found.append(stored)
    for member in await store.clusters.members(missing) if missing else []:
        stored = _stored(member)
        cache.put(stored)
        found.append(stored)
    return found


def best_match(features: StoryFeatures, candidates: Iterable[_Stored]) -> _Stored | None:
    """The stored story most like `features` among those it is the same story as (ties: the oldest cluster)."""
    window = CLUSTER_WINDOW.total_seconds()
    best: tuple[float, int] | None = None
    chosen: _Stored | None = None
    at = features.at.timestamp()
    for candidate in candidates:
        if abs(candidate.cluster_at - at) > window:  # the cluster began too long before (or after) this story
            continue
        score = match_score(features, candidate.features)
        if score is None:
            continue
        rank = (score, -candidate.cluster_id)
        if best is None or rank > best:
            best, chosen = rank, candidate
    return chosen


async def assign_clusters(
    store: Store, stories: list[Story], *, now: datetime | None = None
) -> dict[int, int]:
    """Give each stored story (story.id set) its cluster: the cluster of the most similar stored story that is
    the same story, else its own (cluster id = its id). Stories already clustered keep their cluster. Writes
    stories.cluster_id, cluster_features and cluster_keys, sets story.cluster_id, and returns {story id: cluster
    id}. Stories of one batch can join each other; they are taken in id order, so the first one names the
    cluster. `now` stands in for a story with neither a publication date nor a first-seen time."""
    todo = sorted((s for s in stories if s.id is not None), key=lambda s: s.id or 0)
    if len(todo) != len(stories):
        log.warning(
            "assign_clusters: %d stories without an id were skipped (store them first)",
            len(stories) - len(todo),
        )
    if not todo:
        return {}
    moment = now or utcnow()
    result = await store.clusters.clusters_of([s.id for s in todo if s.id is not None])
    cache = _cache(store)
    added: list[int] = []
    try:
        async with store.transaction():
            for story in todo:
                assert story.id is not None
                if story.id in result:
                    story.cluster_id = result[story.id]
                    continue
                if story.published is None and story.first_seen is None:
                    story.first_seen = moment
                # the text work and the scoring are CPU-bound: a worker thread keeps the event loop answering
                features = await asyncio.to_thread(features_of, story)
                match = await asyncio.to_thread(best_match, features, await _candidates(store, features))
                at = _epoch(features.at)
                cluster_id, cluster_at = (match.cluster_id, match.cluster_at) if match else (story.id, at)
                member = ClusterMember(
                    story_id=story.id,
                    cluster_id=cluster_id,
                    at=at,
                    cluster_at=cluster_at,
                    artists=features.artists,
                    title_terms=features.title_terms,
                    body_terms=features.terms - features.title_terms,
                )
                await store.clusters.add(member, index_keys(features))
                story.cluster_id = cluster_id
                result[story.id] = cluster_id
                cache.put(_Stored(story.id, cluster_id, cluster_at, features))
                added.append(story.id)
    except BaseException:
        for story_id in added:  # a rolled-back id may be given to another story: forget what it was
            cache.items.pop(story_id, None)
        raise
    return result


async def cluster_unclustered(store: Store, *, batch: int = 500, now: datetime | None = None) -> int:
    """Cluster every stored story that has no cluster yet (stored before clustering existed), oldest first."""
    done = 0
    last = 0
    while True:
        ids = await store.clusters.unclustered_ids(last, batch)
        if not ids:
            return done
        stories = await store.stories.get_many(ids)
        await assign_clusters(store, stories, now=now)
        done += len(stories)
        last = ids[-1]
