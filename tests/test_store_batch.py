"""Store.add_stories writes a whole batch in a few statements: the same answers as one story at a time."""

from bot.config import SourceConfig
from bot.models import ArtistRef, Story
from bot.store import Store
from bot.store.text_search import text_matches
from tests.support.sql import rows


def story(key: str, url: str, canonical: str | None = None, artists: tuple[str, ...] = ()) -> Story:
    return Story(
        key=key,
        title=f"Story {key}",
        url=url,
        source="Soompi",
        canonical_url=canonical if canonical is not None else url,
        summary="A summary.",
        artists=[ArtistRef(a, a.upper(), None) for a in artists],
    )


async def test_a_batch_links_repeats_within_itself_and_stories_stored_before(store_url):
    db = await Store.open(store_url)
    (source,) = await db.sources.sync_config([SourceConfig("Soompi", "https://www.soompi.com/feed")])
    (old,) = await db.stories.add_many([story("old", "https://a/old", artists=("iu",))], source_id=None)

    batch = [
        story("k1", "https://a/1", artists=("bts", "bts-v")),
        story("k1", "https://a/1-again"),  # same key as the first
        story("k3", "https://a/1"),  # same canonical link as the first
        story("k4", "https://a/old"),  # the canonical link of a story stored before
        story("old", "https://a/elsewhere"),  # the key of a story stored before
        story("k6", "https://a/6", canonical="", artists=("twice",)),  # no canonical link: the key stands in
        story("k7", "https://b/7?utm_source=x", canonical="https://b/7"),
        story("k8", "https://a/8", canonical="k6"),  # canonical equal to a fresh story's key: a new story
    ]
    results = await db.stories.add_many(batch, source_id=source.id)

    assert [r.is_new for r in results] == [True, False, False, False, False, True, True, True]
    first, k6, k7, k8 = results[0].id, results[5].id, results[6].id, results[7].id
    assert [r.id for r in results] == [first, first, first, old.id, old.id, k6, k7, k8]
    assert [s.id for s in batch] == [r.id for r in results]
    assert len({first, k6, k7, k8, old.id}) == 5
    assert await rows(db, "SELECT story_key, canonical_url FROM stories ORDER BY id") == [
        ("old", "https://a/old"),
        ("k1", "https://a/1"),
        ("k6", "https://a/6"),  # stored under its link when it has no canonical one
        ("k7", "https://b/7"),
        ("k8", "k6"),
    ]
    assert await rows(
        db, "SELECT story_id, artist_id, position FROM story_artists ORDER BY story_id, position"
    ) == [
        (old.id, "iu", 0),
        (first, "bts", 0),
        (first, "bts-v", 1),
        (k6, "twice", 0),
    ]
    linked = await rows(
        db, f"SELECT story_id FROM source_stories WHERE source_id = {source.id} ORDER BY story_id"
    )
    assert linked == [(i,) for i in sorted({first, old.id, k6, k7, k8})]
    # fresh stories carry what the store gave them; repeats only their id
    assert batch[0].source_id == source.id and batch[0].first_seen is not None
    assert batch[1].first_seen is None
    found, total = await text_matches(db._db, ["k7"], any_word=False, window=10, cap=10)
    assert ([story_id for story_id, _ in found], total) == ([k7], 1)
    await db.close()


async def test_an_empty_batch_still_commits_what_the_caller_wrote_first(tmp_path):
    """The poller links known stories on the same connection and lets add_stories commit them."""
    db = await Store.open(tmp_path / "k.db")
    (source,) = await db.sources.sync_config([SourceConfig("Soompi", "https://www.soompi.com/feed")])
    (stored,) = await db.stories.add_many([story("k", "https://a/k")], source_id=None)
    await db.db.execute(
        "INSERT INTO source_stories(source_id, story_id, first_seen_at) VALUES (?, ?, '2026-01-01T00:00:00Z')",
        (source.id, stored.id),
    )
    assert await db.stories.add_many([], source_id=source.id) == []
    assert not db.db.in_transaction
    await db.close()


async def test_a_failing_batch_stores_nothing(store_url):
    db = await Store.open(store_url)
    bad = story("bad", "https://a/bad")
    bad.title = None  # type: ignore[assignment]  # NOT NULL: the insert fails
    try:
        await db.stories.add_many([story("good", "https://a/good"), bad], source_id=None)
    except Exception:
        pass
    else:
        raise AssertionError("a story without a title must not be stored")
    assert await rows(db, "SELECT count(*) FROM stories") == [(0,)]
    assert await rows(db, "SELECT count(*) FROM story_artists") == [(0,)]
    await db.close()
