-- Artist search, newest first, without sorting every story of a big group at query time: each
-- story_artists row carries its story's time (published, else first seen), kept up to date by triggers,
-- and an index walks one artist's stories newest first.

ALTER TABLE story_artists ADD COLUMN sort_at TEXT;

UPDATE story_artists SET sort_at = (
    SELECT COALESCE(s.published_at, s.first_seen_at) FROM stories s WHERE s.id = story_artists.story_id
);

CREATE INDEX story_artists_artist_time ON story_artists(artist_id, sort_at DESC, story_id DESC);

CREATE TRIGGER story_artists_sort_insert AFTER INSERT ON story_artists BEGIN
    UPDATE story_artists SET sort_at = (
        SELECT COALESCE(s.published_at, s.first_seen_at) FROM stories s WHERE s.id = new.story_id
    ) WHERE story_id = new.story_id AND artist_id = new.artist_id;
END;

CREATE TRIGGER stories_sort_update AFTER UPDATE OF published_at, first_seen_at ON stories BEGIN
    UPDATE story_artists SET sort_at = COALESCE(new.published_at, new.first_seen_at)
    WHERE story_id = new.id;
END;

-- text search falls back to the newest matches; this keeps "newest first" cheap for it too
CREATE INDEX IF NOT EXISTS stories_sort_time ON stories(COALESCE(published_at, first_seen_at) DESC, id DESC);
