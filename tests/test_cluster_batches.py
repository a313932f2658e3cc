"""Clustering in batches: the compact features score exactly as the strings do, a batch clusters as its stories
one by one would, on both engines, with a few statements per batch whatever its size."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from datetime import timedelta

from bot.clustering import (
    Probe,
    assign_clusters,
    compact_matches,
    compact_of,
    compact_score,
    features_of,
    lookup_keys,
    match_score,
)
from bot.models import Story
from bot.store import Store
from tests.support import sql
from tests.test_clustering import load_fixture


def test_compact_features_score_every_pair_as_the_strings_do():
    stories, _, _ = load_fixture()
    features = {key: features_of(story) for key, story in stories.items()}
    compact = {key: compact_of(f) for key, f in features.items()}
    matched = compared = 0
    for a, b in itertools.permutations(features, 2):  # every ordered pair of the set, not only the labelled
        expected = match_score(features[a], features[b])
        assert compact_score(Probe(compact[a]), Probe(compact[b])) == expected, (a, b)
        assert compact_matches(Probe(compact[a]), Probe(compact[b])) == (expected is not None), (a, b)
        # a candidate met once is compared as arrays, not sets: the same answer
        assert compact_score(Probe(compact[a]), compact[b]) == expected, (a, b)
        matched += expected is not None
        compared += 1
    # many matches (most of the set's same-story pairs, both ways), and many more pairs that are not
    assert 100 <= matched < compared / 10


async def _clusters_by_key(store: Store) -> dict[str, int]:
    return dict(await sql.rows(store, "SELECT story_key, cluster_id FROM stories"))


async def _store_copies(store: Store, stories: list[Story]) -> list[Story]:
    copies = [replace(s, artists=list(s.artists), id=None, cluster_id=None) for s in stories]
    await store.stories.add_many(copies, source_id=None)
    return copies


async def test_a_batch_clusters_as_its_stories_one_by_one(store_url, tmp_path):
    """The labelled set, stored in publication order, clustered one story per call (as before batches) and in
    random batches of 1 to 12 stories: the same clusters and cluster times, on SQLite and PostgreSQL."""
    stories, _, _ = load_fixture()
    ordered = sorted(stories.values(), key=lambda s: s.published)
    one_store = await Store.open(tmp_path / "one.db")
    try:
        for story in await _store_copies(one_store, ordered):
            await assign_clusters(one_store, [story])
        expected = await _clusters_by_key(one_store)
        expected_times = sorted(
            await sql.rows(
                one_store,
                "SELECT s.story_key, c.cluster_at FROM cluster_features c JOIN stories s ON s.id = c.story_id",
            )
        )
    finally:
        await one_store.close()
    store = await Store.open(store_url)
    try:
        saved = await _store_copies(store, ordered)
        rng = random.Random(3)
        start = 0
        while start < len(saved):
            size = rng.randint(1, 12)
            await assign_clusters(store, saved[start : start + size])
            start += size
        got = await _clusters_by_key(store)
        times = sorted(
            await sql.rows(
                store,
                "SELECT s.story_key, c.cluster_at FROM cluster_features c JOIN stories s ON s.id = c.story_id",
            )
        )
        # ids are given in the same order in both stores: cluster ids compare as they are
        assert got == expected
        assert times == expected_times
        assert len(set(got.values())) < len(got)  # the set has clusters of several stories
    finally:
        await store.close()


async def test_a_batch_costs_a_few_statements_whatever_its_size(store):
    """The labelled set's 110 stories told within 40 hours: the second half, one batch, costs a fixed number of
    statements (merges aside, which are rare and each its own few)."""
    stories, _, _ = load_fixture()
    ordered = sorted(stories.values(), key=lambda s: s.published)
    start = ordered[0].published
    within = [
        replace(s, published=start + timedelta(minutes=20 * i), artists=list(s.artists))
        for i, s in enumerate(ordered)
    ]
    saved = await _store_copies(store, within)
    first, second = saved[: len(saved) // 2], saved[len(saved) // 2 :]
    await assign_clusters(store, first)
    calls: list[str] = []
    merges: list[int] = []
    db, clusters = store._db, store.clusters
    merge = clusters.merge

    async def merge_uncounted(into: int, others: list[int]):
        merges.append(into)
        before = len(calls)
        report = await merge(into, others)
        del calls[before:]
        return report

    for name in ("fetchall", "fetchone", "execute", "executemany"):
        method = getattr(db, name)

        async def counted(*args, _method=method, _name=name, **kwargs):
            calls.append(_name)
            return await _method(*args, **kwargs)

        setattr(db, name, counted)
    clusters.merge = merge_uncounted  # type: ignore[method-assign]
    try:
        result = await assign_clusters(store, second)
    finally:
        for name in ("fetchall", "fetchone", "execute", "executemany"):
            delattr(db, name)
        del clusters.merge
    assert len(set(result.values())) < len(result)  # clusters were joined
    # clusters and held, the index (one statement per 100 of the batch's (key, time) pairs), the candidates'
    # features, the matched stories' spans, the rows (3 statements, again after each merge), the cluster times
    pairs = len({(key, s.published) for s in second for key in lookup_keys(features_of(s))})
    assert len(calls) <= 4 + math.ceil(pairs / 100) + 3 * (1 + len(merges)) + 1, calls
    assert len(calls) < len(second)  # one by one: four or more per story


async def test_a_busy_artist_candidates_are_the_stories_nearest_in_time(store):
    """300 other stories of the same two artists within the window, all stored after it: the story of the same
    event five minutes earlier is still a candidate (nearest in time), and the new story joins its cluster."""
    stories, _, _ = load_fixture()
    first, retold, other = stories["v-iu-koreaboo"], stories["v-iu-soompi"], stories["v-sdt-koreaboo"]
    at = first.published
    (first_copy,) = await _store_copies(store, [first])
    await assign_clusters(store, [first_copy])
    fillers = []
    for i in range(300):  # V's enlistment, told with V and IU, from 20 hours before to 20 hours after
        hours = -20 + 40 * i / 299
        published = at + timedelta(hours=hours, minutes=-10 if hours < 0 else 15)
        fillers.append(
            replace(
                other,
                key=f"filler-{i}",
                url=f"https://x.example/{i}",
                canonical_url=f"https://x.example/{i}",
                published=published,
                artists=list(first.artists),
            )
        )
    saved = await _store_copies(store, fillers)
    for start in range(0, len(saved), 50):
        await assign_clusters(store, saved[start : start + 50])
    assert first_copy.cluster_id not in {s.cluster_id for s in saved}  # another event
    (new,) = await _store_copies(store, [replace(retold, published=at + timedelta(minutes=5))])
    assert await assign_clusters(store, [new]) == {new.id: first_copy.id}
