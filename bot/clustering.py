"""Story clusters: the same event told by several outlets is one cluster (stories.cluster_id).

Two stories are the same story when
  1. they were published (else first seen) within CLUSTER_WINDOW of each other, and
  2. their headlines do not name different kinds of event (_KINDS: "enters the Hot 100" and "passes 100
     million views" are two events, whatever song they share), and
  3. they share an artist; or, when one of them is untagged or a roundup, their titles share at least
     MIN_SHARED_TITLE_TERMS content words (artists are the strongest hint two outlets cover one event;
     untagged stories, about actors or agencies, must make up for it in the headline; and a roundup, "Watch:
     SEVENTEEN, ENHYPEN, And More Perform At …", names a few of the acts of a show, so another act's story of
     that show is found by the show's name), and
  4. they say the same thing: `similarity(a, b) >= SAME_STORY_THRESHOLD` when they share an artist, else
     UNTAGGED_THRESHOLD.

`similarity` compares the *event words* of the two stories: title and summary lowercased, folded, stripped of
English stop words, of words every K-pop story uses ("fans", "group", "reveals", month names…), of dates and
of the stories' own artist names (shared artists are already rule 3; counting them again would join "V sings
to IU" with "V enlists"), then lightly stemmed, with a small table of words outlets use for one kind of event
("exits"/"departs"/"leaves"). Each word weighs 2 when both headlines have it, else 1; the score is the weighted
overlap (shared weight over the smaller story's weight, which forgives an SCMP one-line teaser next to a
Koreaboo excerpt) blended with the Dice coefficient of character 4-grams of those words, which catches
"enlists"/"enlistment" and "lip-syncing"/"lip-sync" that stemming misses (under MIN_WORD_SCORE of word
overlap the n-grams are skipped: spelling alone never makes two stories one). All of it is plain set
arithmetic with no corpus statistics, so the function is pure and answers the same in a test and in production.
Thresholds and kinds were set on the "tuning" stories of tests/fixtures/story_pairs.json; the "holdout" ones
check them.

A cluster is a group of stories linked by "same story": a new story joins every cluster it is the same story
as, and those clusters become one (the smallest cluster id survives; `ClusterTable.merge` re-points what
deliveries and trending keep by cluster). So the clusters do not depend on the order in which feeds answer,
with one exception: a cluster spans at most CLUSTER_WINDOW, so a chain of similar stories longer than that is
cut, and where it is cut can depend on the order.

Finding candidates uses an index, not a scan: table cluster_keys (migration 0500) holds, per story, one row per
artist ("a:bts-v") and per headline word ("t:enlist"; "u:enlist" when the story is untagged or a roundup) with
the story's time, keyed (key, at). A new story looks up only its own keys: per key, the NEAR_PER_SIDE stories
nearest in time before it and after it within ±CLUSTER_WINDOW (a short walk down the index however busy the
artist), and scores at most MAX_CANDIDATES of those found (the most keys shared first, then the nearest in time).

Stories are clustered a batch at a time (what the poller stored of a feed, or more), with the result of
clustering them one by one in id order: features computed in one worker thread; the index read for the whole
batch in a few statements (ClusterTable.near), the stored candidates' features once (kept compactly, as hashes,
in a per-store cache: they never change; their clusters are read from the store, since a merge changes them);
every comparison, with the stored stories and between the batch's own, in one more worker thread; then the
clusters worked out in memory and written a few statements at a time (each merge in its place).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import unicodedata
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache

from bot.models import Story
from bot.store import ClusterMember, ClusterSpan, Store
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
# Candidates: per key of a story, the NEAR_PER_SIDE stories with that key nearest in time before it and after
# it; of those, MAX_CANDIDATES at most (the most keys shared, then the nearest in time). The labelled set needs at
# most 6 per key and 7 in all; on bench_cluster's dense synthetic news (the busiest artist: ~2 stories an hour)
# 30/120 joined more of each event's coverage and left more new events alone than 50/200, 100/400 or the
# former "newest 200 of the window" (which a busy day of one artist filled with other events).
MAX_CANDIDATES = 120
NEAR_PER_SIDE = 30
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
# The kind of event a headline names. Two headlines about one artist that name kinds of event, none in common,
# tell two events ("NewJeans' Super Shy enters the Hot 100" and "… passes 100 million views"): shared song titles
# and names must not join them. Applied to event words (stems, after _SYNONYMS).
_KINDS: dict[str, str] = {
    **dict.fromkeys(("military", "enlist", "discharge", "soldier"), "military"),
    **dict.fromkeys(("billboard", "hot100", "billboard200", "chart", "oricon"), "chart"),
    **dict.fromkeys(("stream", "spotify"), "streams"),
    **dict.fromkeys(("view",), "views"),
    **dict.fromkeys(("leave",), "leave"),
    **dict.fromkeys(("contract", "sign"), "contract"),
    **dict.fromkeys(("dating",), "dating"),
    **dict.fromkeys(("health",), "health"),
    **dict.fromkeys(("apology",), "apology"),
    **dict.fromkeys(("legal", "complaint", "police", "investigation", "breach"), "legal"),
    **dict.fromkeys(("conference", "press"), "press"),
    **dict.fromkeys(("tour", "concert", "encore"), "tour"),
    **dict.fromkeys(("comeback", "album", "single", "tracklist"), "comeback"),
    **dict.fromkeys(("ambassador", "muse"), "ambassador"),
    **dict.fromkeys(("hug", "fanmeeting", "fansign"), "fans"),
    # an award show is a stage: a win and a performance there are one occasion; not "win" ("Love Wins All")
    **dict.fromkeys(
        ("perform", "performance", "stage", "sing", "medley", "festival", "award", "bonsang"), "show"
    ),
}
# Where a headline turns to the background ("… Hugs 1,000 Fans After Military Discharge"): what follows is not
# the kind of event it reports.
_BACKGROUND = re.compile(r"\s(?:after|following|amid|ahead of|despite)\s", re.IGNORECASE)
# Quoted titles (songs, albums, shows: “Love Wins All”, ‘ROMANCE : UNTOLD’) name no kind of event.
_QUOTED = re.compile(r"“[^”]*”|‘[^’]*’|\"[^\"]*\"|(?<!\w)'[^']*'(?!\w)")
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
_ROUNDUP = re.compile(r",\s*(?:and|&)\s+more\b|^\s*watch\b.*\b(?:and|&)\s+more\b", re.IGNORECASE)
_ELLIPSIS = re.compile(r"\[\s*(?:…|\.\.\.|&#8230;)\s*\]")


@dataclass(frozen=True)
class StoryFeatures:
    """What clustering needs of a story, computed once (for stored stories, kept in cluster_features)."""

    at: datetime  # published, else first seen (UTC)
    artists: frozenset[str]  # artist ids
    title_terms: frozenset[str]  # stemmed event words of the headline
    terms: frozenset[str]  # stemmed event words of headline and summary
    roundup: bool = False  # a headline that lists acts and then "…, And More": the show is its event
    kinds: frozenset[str] = frozenset()  # the kinds of event its headline names (_KINDS)

    @property
    def tagged(self) -> bool:
        return bool(self.artists)

    @property
    def by_artist(self) -> bool:
        """Whether its candidates are the stories sharing an artist with it (else: sharing headline words)."""
        return self.tagged and not self.roundup

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


def is_roundup(title: str) -> bool:
    """Whether a headline lists acts and then "…, And More" ("Watch: SEVENTEEN, ENHYPEN, And More Perform At
    …", "…; Performances By TXT, LE SSERAFIM, And More"): the acts it names are a few of many, so a story
    about another act at the same show is the same event."""
    return bool(_ROUNDUP.search(title))


def event_kinds(title: str, exclude: frozenset[str] = frozenset()) -> frozenset[str]:
    """The kinds of event a headline names, its background ("… after …") and quoted titles left out."""
    foreground = _QUOTED.sub(" ", _BACKGROUND.split(title, maxsplit=1)[0])
    return frozenset(_KINDS[t] for t in event_terms(foreground, exclude) if t in _KINDS)


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
        roundup=is_roundup(title),
        kinds=event_kinds(title, exclude),
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
    """Rules 1 to 3: close in time, no different kinds of event, and sharing an artist (or, untagged or a
    roundup, headline words)."""
    if abs(a.at - b.at) > CLUSTER_WINDOW:
        return False
    if a.kinds and b.kinds and not a.kinds & b.kinds:  # the headlines name different kinds of event
        return False
    if a.artists & b.artists:
        return True
    if a.by_artist and b.by_artist:
        return False
    return len(a.title_terms & b.title_terms) >= MIN_SHARED_TITLE_TERMS


def match_score(a: StoryFeatures, b: StoryFeatures) -> float | None:
    """The similarity of two stories when they are the same story, else None."""
    if not comparable(a, b):
        return None
    score = similarity(a, b)
    threshold = SAME_STORY_THRESHOLD if a.artists & b.artists else UNTAGGED_THRESHOLD
    return score if score >= threshold else None


def features_same_story(a: StoryFeatures, b: StoryFeatures) -> bool:
    return match_score(a, b) is not None


def same_story(a: Story, b: Story) -> bool:
    """Whether two stories report the same event (rules 1-3 of the module docstring)."""
    return features_same_story(features_of(a), features_of(b))


# --- the store: candidates by index, one cluster per story ------------------------------------------------------


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _title_keys(features: StoryFeatures) -> list[str]:
    return sorted(features.title_terms, key=lambda t: (-len(t), t))[:MAX_TITLE_KEYS]


def index_keys(features: StoryFeatures) -> list[str]:
    """The cluster_keys of a story: its artists ("a:"), and its most specific (longest) headline words, marked
    "t:" for a tagged story and "u:" for an untagged one or a roundup, so that a tagged story looks up headline
    words only among untagged stories and roundups (between two other tagged stories only a shared artist makes
    a candidate)."""
    mark = "t" if features.by_artist else "u"
    return [f"a:{a}" for a in sorted(features.artists)] + [f"{mark}:{t}" for t in _title_keys(features)]


def lookup_keys(features: StoryFeatures) -> list[str]:
    """The cluster_keys a story looks up: its artists and, among untagged stories and roundups, its headline
    words; an untagged story or a roundup looks up its headline words among all stories."""
    titles = _title_keys(features)
    found = [f"a:{a}" for a in sorted(features.artists)] + [f"u:{t}" for t in titles]
    if not features.by_artist:
        found += [f"t:{t}" for t in titles]
    return found


# --- compact features: what is kept of a clustered story and scored -----------------------------------------

WINDOW_SECONDS = int(CLUSTER_WINDOW.total_seconds())
_WINDOW_US = WINDOW_SECONDS * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@lru_cache(maxsize=65536)  # the same words come back in story after story
def _term_gram_hashes(term: str) -> tuple[int, ...]:
    return tuple(hash(gram) for gram in _term_grams(term))


def _hashes(values: Iterable[str]) -> array[int]:
    return array("q", sorted({hash(v) for v in values}))


class Compact:
    """A story's features as kept for scoring: its words and character n-grams as sorted 64-bit hashes (Python's
    str hash: per process, as the cache is) in arrays, a fifth of the memory of frozensets of strings. Two
    distinct words of one comparison share a hash with a probability of about 2^-50, so the scores are those of
    the strings (tests/test_clustering.py compares them on the labelled pairs)."""

    __slots__ = ("at_us", "epoch", "artists", "title", "terms", "grams", "by_artist", "kinds", "weight")

    def __init__(self, at_us: int, epoch: int, features: StoryFeatures | ClusterMember) -> None:
        self.at_us = at_us  # the story's time in microseconds (a stored story's: whole seconds)
        self.epoch = epoch  # and in whole seconds, as the index and the spans keep it
        self.artists = tuple(sorted(sys.intern(a) for a in features.artists))
        self.kinds = tuple(sorted(sys.intern(k) for k in features.kinds))
        if isinstance(features, ClusterMember):
            title, terms = features.title_terms, features.title_terms | features.body_terms
            roundup = features.roundup
        else:
            title, terms, roundup = features.title_terms, features.terms, features.roundup
        self.title = _hashes(title)
        self.terms = _hashes(terms)
        self.grams = array("q", sorted({h for term in terms for h in _term_gram_hashes(term)}))
        self.by_artist = bool(self.artists) and not roundup
        self.weight = len(terms) + (TITLE_WEIGHT - 1) * len(title)

    @property
    def ngrams(self) -> int:
        return len(self.grams)


def compact_of(features: StoryFeatures) -> Compact:
    return Compact((features.at - _EPOCH) // _MICROSECOND, _epoch(features.at), features)


def _compact_from(member: ClusterMember) -> Compact:
    return Compact(member.at * 1_000_000, member.at, member)


class Probe:
    """A story's compact features as sets, made for one batch: a candidate is compared with several of the
    batch's stories, and a set meets a set several times faster than it walks an array. Its n-grams are made
    only when a comparison gets that far."""

    __slots__ = (
        "at_us",
        "artists",
        "title",
        "terms",
        "by_artist",
        "kinds",
        "weight",
        "ngrams",
        "_compact",
        "_grams",
    )

    def __init__(self, compact: Compact) -> None:
        self.at_us = compact.at_us
        self.artists = frozenset(compact.artists)
        self.kinds = frozenset(compact.kinds)
        self.title = frozenset(compact.title)
        self.terms = frozenset(compact.terms)
        self.by_artist = compact.by_artist
        self.weight = compact.weight
        self.ngrams = len(compact.grams)
        self._compact = compact
        self._grams: frozenset[int] | None = None

    @property
    def grams(self) -> frozenset[int]:
        if self._grams is None:
            self._grams = frozenset(self._compact.grams)
        return self._grams


def compact_score(a: Probe, b: Probe | Compact) -> float | None:
    """`match_score` of two stories on their compact features: the same rules, the same arithmetic."""
    return _compare(a, b, exact=True)


def compact_matches(a: Probe, b: Probe | Compact) -> bool:
    """Whether two stories are the same story (`compact_score` is not None), without counting the n-grams when
    they cannot change the answer."""
    return _compare(a, b, exact=False) is not None


def _compare(a: Probe, b: Probe | Compact, *, exact: bool) -> float | None:
    # `b` as sets (a candidate met again in the batch) or as arrays (met once: making sets would cost more)
    if abs(a.at_us - b.at_us) > _WINDOW_US:
        return None
    if a.kinds and b.kinds and a.kinds.isdisjoint(b.kinds):
        return None
    if a.artists.isdisjoint(b.artists):
        if a.by_artist and b.by_artist:
            return None
        if len(a.title.intersection(b.title)) < MIN_SHARED_TITLE_TERMS:
            return None
        threshold = UNTAGGED_THRESHOLD
    else:
        threshold = SAME_STORY_THRESHOLD
    if not a.terms or not b.terms:
        return None  # similarity 0: under either threshold
    shared = len(a.terms.intersection(b.terms)) + (TITLE_WEIGHT - 1) * len(a.title.intersection(b.title))
    word_score = shared / min(a.weight, b.weight)
    if word_score < MIN_WORD_SCORE:
        score = WORD_SHARE * word_score
    # the score lies between WORD_SHARE * word_score (no n-gram shared) and that + 1 - WORD_SHARE (all)
    elif WORD_SHARE * word_score + (1 - WORD_SHARE) < threshold:
        return None
    elif not exact and WORD_SHARE * word_score >= threshold:
        return WORD_SHARE * word_score  # the same story whatever the n-grams say: not the score
    else:
        gram_score = 2 * len(a.grams.intersection(b.grams)) / (a.ngrams + b.ngrams)
        score = WORD_SHARE * word_score + (1 - WORD_SHARE) * gram_score
    return score if score >= threshold else None


class _FeatureCache:
    """Clustered stories' compact features, by story id, most recently used last. What a stored story says never
    changes (its cluster may, by a merge, so clusters are always read from the store), so a story that is a
    candidate for many new ones over its 48 hours is read and parsed once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[int, Compact] = OrderedDict()

    def get(self, story_id: int) -> Compact | None:
        found = self.items.get(story_id)
        if found is not None:
            self.items.move_to_end(story_id)
        return found

    def put(self, story_id: int, features: Compact) -> None:
        self.items[story_id] = features
        self.items.move_to_end(story_id)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


# Clustered stories kept parsed per store (~1.2 KB each): the last hours of news, the stories most often
# candidates; older candidates are read from the store with the rest of the batch's, in its one query. Bounded
# low so a busy bot's memory stays flat (20,000 took 24 MB and a day and more to fill).
CACHE_SIZE = 5_000
_caches: weakref.WeakKeyDictionary[Store, _FeatureCache] = weakref.WeakKeyDictionary()


def _cache(store: Store) -> _FeatureCache:
    cache = _caches.get(store)
    if cache is None:
        cache = _caches[store] = _FeatureCache(CACHE_SIZE)
    return cache


# --- clustering a batch ------------------------------------------------------------------------------------


@dataclass
class _New:
    """A story of the batch being clustered, prepared in one worker thread."""

    story_id: int
    features: StoryFeatures
    compact: Compact
    lookup: list[str]  # lookup_keys
    keys: list[str]  # index_keys


def _prepare(stories: list[Story]) -> list[_New]:
    found = []
    for story in stories:
        assert story.id is not None
        features = features_of(story)
        found.append(
            _New(story.id, features, compact_of(features), lookup_keys(features), index_keys(features))
        )
    return found


def _nearest(rows: Iterable[tuple[int, int]], at: int) -> list[tuple[int, int]]:
    """Of (at, story id) rows within the window of a story at `at`: the NEAR_PER_SIDE nearest at or before it
    (latest first, then the highest id) and after it (earliest first, then the lowest id), as the index gives
    them (ClusterTable.near)."""
    low, high = at - WINDOW_SECONDS, at + WINDOW_SECONDS
    before = sorted((r for r in rows if low <= r[0] <= at), key=lambda r: (-r[0], -r[1]))[:NEAR_PER_SIDE]
    after = sorted(r for r in rows if at < r[0] <= high)[:NEAR_PER_SIDE]
    return before + after


def match_batch(
    new: list[_New], near: dict[tuple[str, int], list[tuple[int, int]]], stored: dict[int, Compact]
) -> list[list[int]]:
    """For each story of `new` (in id order), the ids of the stories it is the same story as, among its
    candidates: per key of its own, the stories with that key nearest in time to it (`near`: the stored ones,
    by (key, its time); and the stories of `new` before it, as if stored), those sharing an artist key or
    MIN_SHARED_TITLE_TERMS keys, the most keys first, then the nearest in time, then the newest,
    MAX_CANDIDATES at most. So a batch clusters as its stories one by one. Pure CPU work, for a worker thread."""
    probes: dict[int, Probe] = {}  # the candidates' sets, made once for the batch
    met: set[int] = set()  # stored candidates compared once so far
    earlier: dict[str, list[tuple[int, int]]] = {}  # the batch's stories clustered so far, by key
    found: list[list[int]] = []
    for item in new:
        at = item.compact.epoch
        counts: dict[int, int] = {}
        distance: dict[int, int] = {}
        by_artist: set[int] = set()
        for key in item.lookup:
            rows = near.get((key, at), [])
            if key in earlier:
                rows = _nearest([*rows, *earlier[key]], at)
            artist = key.startswith("a:")
            for row_at, story_id in rows:
                counts[story_id] = counts.get(story_id, 0) + 1
                distance[story_id] = abs(row_at - at)
                if artist:
                    by_artist.add(story_id)
        chosen = [s for s, n in counts.items() if n >= MIN_SHARED_TITLE_TERMS or s in by_artist]
        if len(chosen) > MAX_CANDIDATES:
            chosen.sort(key=lambda s: (-counts[s], distance[s], -s))
            del chosen[MAX_CANDIDATES:]
        probe = Probe(item.compact)
        matched = []
        for story_id in chosen:
            other: Probe | Compact | None = probes.get(story_id)
            if other is None:
                other = stored.get(story_id)
                if other is None:
                    continue
                if story_id in met:  # the second time: as sets from now on
                    other = probes[story_id] = Probe(other)
                else:
                    met.add(story_id)
            if compact_matches(probe, other):
                matched.append(story_id)
        found.append(matched)
        # the next stories of the batch find this one as if it were stored
        probes[item.story_id] = probe
        for key in item.keys:
            earlier.setdefault(key, []).append((at, item.story_id))
    return found


def _parse_and_match(
    new: list[_New],
    near: dict[tuple[str, int], list[tuple[int, int]]],
    cached: dict[int, Compact],
    members: list[ClusterMember],
) -> tuple[list[list[int]], dict[int, Compact]]:
    """`match_batch`, the stored candidates read from the store made compact first; and those."""
    parsed = {member.story_id: _compact_from(member) for member in members}
    return match_batch(new, near, {**cached, **parsed}), parsed


def clusters_to_join(at: int, linked: Iterable[ClusterSpan]) -> list[ClusterSpan]:
    """Which of the clusters a story at `at` is the same story as it joins: all of them, as long as together they
    span at most CLUSTER_WINDOW; past that, the earliest first (a chain of similar stories is cut at 48 hours)."""
    window = CLUSTER_WINDOW.total_seconds()
    low = high = at
    chosen: list[ClusterSpan] = []
    for span in sorted(linked, key=lambda s: (s.first_at, s.cluster_id)):
        if max(high, span.last_at) - min(low, span.first_at) <= window:
            chosen.append(span)
            low, high = min(low, span.first_at), max(high, span.last_at)
    return chosen


@dataclass
class _Step:
    """What clustering one story of the batch writes: a merge first (when it links clusters), then its row."""

    member: ClusterMember
    keys: list[str]
    merge: tuple[int, list[int]] | None


def plan_batch(
    new: list[_New], matches: list[list[int]], spans: dict[int, ClusterSpan], held: set[int]
) -> tuple[list[_Step], dict[int, int], dict[int, int]]:
    """Cluster the batch in memory, story by story in id order, as if each were written before the next: the
    steps to write, {story id: its final cluster} and {cluster id: its first story's time} of the clusters the
    batch touched. `spans` are the clusters of the matched stored stories (by story id)."""
    merged_into: dict[int, int] = {}
    span: dict[int, tuple[int, int]] = {}
    cluster_of: dict[int, int] = {}
    for story_id, stored in spans.items():
        cluster_of[story_id] = stored.cluster_id
        span[stored.cluster_id] = (stored.first_at, stored.last_at)

    def current(cluster_id: int) -> int:
        while cluster_id in merged_into:
            cluster_id = merged_into[cluster_id]
        return cluster_id

    steps: list[_Step] = []
    for item, found in zip(new, matches, strict=True):
        story_id, at, features = item.story_id, item.compact.epoch, item.features
        linked = {current(cluster_of[m]) for m in found if m in cluster_of}
        joined = clusters_to_join(at, [ClusterSpan(c, *span[c]) for c in sorted(linked)])
        cluster_id = min([story_id, *(s.cluster_id for s in joined)])
        others = [s.cluster_id for s in joined if s.cluster_id != cluster_id]
        if story_id != cluster_id and story_id in held:
            others.append(story_id)  # delivered before it was clustered, under its own id: that follows too
        first = min([at, *(s.first_at for s in joined)])
        last = max([at, *(s.last_at for s in joined)])
        for other in others:
            merged_into[other] = cluster_id
            span.pop(other, None)
        span[cluster_id] = (first, last)
        cluster_of[story_id] = cluster_id
        member = ClusterMember(
            story_id=story_id,
            cluster_id=cluster_id,
            at=at,
            cluster_at=first,
            artists=features.artists,
            title_terms=features.title_terms,
            body_terms=features.terms - features.title_terms,
            roundup=features.roundup,
            kinds=features.kinds,
        )
        steps.append(_Step(member, item.keys, (cluster_id, others) if others else None))
    final = {item.story_id: current(cluster_of[item.story_id]) for item in new}
    return steps, final, {c: span[c][0] for c in set(final.values())}


async def _write(store: Store, steps: list[_Step], times: dict[int, int]) -> bool:
    """Write the batch's steps: the rows in one go between merges (a merge sees the rows of the stories before
    it, as one by one), then each touched cluster's time. Whether clusters merged."""
    pending: list[_Step] = []

    async def flush() -> None:
        await store.clusters.add_many([s.member for s in pending], [s.keys for s in pending])
        pending.clear()

    merged = False
    for step in steps:
        if step.merge is not None:
            await flush()
            await store.clusters.merge(*step.merge)
            merged = True
        pending.append(step)
    await flush()
    await store.clusters.set_cluster_times(times)
    return merged


async def assign_clusters(
    store: Store, stories: list[Story], *, now: datetime | None = None
) -> dict[int, int]:
    """Give each stored story (story.id set) its cluster, and return {story id: cluster id}.

    A story joins every cluster it is the same story as (rules 1-4 with any of its stories), and those clusters
    become one (`ClusterTable.merge`), as long as the whole spans at most CLUSTER_WINDOW; else it starts its own.
    A cluster is named by its smallest story id. So the clusters are the groups of stories linked by "same
    story", whatever order the stories arrive in (see the module docstring for the one exception). Stories
    already clustered keep their cluster. Writes stories.cluster_id, cluster_features and cluster_keys in one
    transaction (or the caller's), and sets story.cluster_id. `now` stands in for a story with neither a
    publication date nor a first-seen time.

    The batch is clustered together, with the result of clustering its stories one by one in id order: their
    features computed in one worker thread, the index read once per 48 hours the batch spans, the stored
    candidates' features once, every comparison (with the stored stories and between the batch's own) in one
    more worker thread, and the rows written a few statements at a time."""
    todo = sorted((s for s in stories if s.id is not None), key=lambda s: s.id or 0)
    if len(todo) != len(stories):
        log.warning(
            "assign_clusters: %d stories without an id were skipped (store them first)",
            len(stories) - len(todo),
        )
    if not todo:
        return {}
    moment = now or utcnow()
    for story in todo:
        if story.published is None and story.first_seen is None:
            story.first_seen = moment
    # the text work is CPU-bound: done in a worker thread, before the write lock is taken
    prepared = await asyncio.to_thread(_prepare, todo)
    ids = [item.story_id for item in prepared]
    cache = _cache(store)
    async with store.transaction():
        result, held = await store.clusters.clusters_and_held(ids)
        new = [item for item in prepared if item.story_id not in result]
        if new:
            wanted = sorted({(key, item.compact.epoch) for item in new for key in item.lookup})
            near: dict[tuple[str, int], list[tuple[int, int]]] = {}
            for n, row_at, story_id in await store.clusters.near(
                wanted, window=WINDOW_SECONDS, per_side=NEAR_PER_SIDE
            ):
                near.setdefault(wanted[n], []).append((row_at, story_id))
            stored: dict[int, Compact] = {}
            missing: list[int] = []
            for story_id in {story_id for rows in near.values() for _, story_id in rows}:
                cached = cache.get(story_id)
                if cached is None:
                    missing.append(story_id)
                else:
                    stored[story_id] = cached
            members = await store.clusters.members(sorted(missing)) if missing else []
            # making the candidates' features and scoring is CPU-bound: a worker thread keeps the event loop
            # answering (the cache is only touched here, on the loop)
            matches, parsed = await asyncio.to_thread(_parse_and_match, new, near, stored, members)
            for story_id, features in parsed.items():
                stored[story_id] = features
                cache.put(story_id, features)
            matched = sorted({m for found in matches for m in found if m in stored})
            spans = await store.clusters.spans_by_story(matched) if matched else {}
            steps, final, times = plan_batch(new, matches, spans, held)
            if await _write(store, steps, times):  # a merge renamed clusters given before
                result = await store.clusters.clusters_of(ids)
            else:
                result.update(final)
    # only once written: a rolled-back id may be given to another story
    for item in new:
        cache.put(item.story_id, item.compact)
    for story in todo:
        story.cluster_id = result.get(story.id or 0)
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
