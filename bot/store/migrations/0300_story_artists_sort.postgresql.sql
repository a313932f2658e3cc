-- Artist search, newest first (as 0300_story_artists_sort.sqlite.sql): each story_artists row carries its
-- story's time (published, else first seen), kept up to date by triggers, and an index walks one artist's
-- stories newest first.

ALTER TABLE story_artists ADD COLUMN sort_at TEXT COLLATE "C";

UPDATE story_artists SET sort_at = COALESCE(s.published_at, s.first_seen_at)
    FROM stories s WHERE s.id = story_artists.story_id;

CREATE INDEX story_artists_artist_time ON story_artists(artist_id, sort_at DESC, story_id DESC);

-- BEFORE: the row is written with its time, instead of SQLite's update after the insert
CREATE FUNCTION story_artists_sort_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT COALESCE(s.published_at, s.first_seen_at) INTO NEW.sort_at FROM stories s WHERE s.id = NEW.story_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER story_artists_sort_insert BEFORE INSERT ON story_artists
    FOR EACH ROW EXECUTE FUNCTION story_artists_sort_at();

CREATE FUNCTION stories_sort_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE story_artists SET sort_at = COALESCE(NEW.published_at, NEW.first_seen_at) WHERE story_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER stories_sort_update AFTER UPDATE OF published_at, first_seen_at ON stories
    FOR EACH ROW
    WHEN (OLD.published_at IS DISTINCT FROM NEW.published_at OR OLD.first_seen_at IS DISTINCT FROM NEW.first_seen_at)
    EXECUTE FUNCTION stories_sort_at();

-- text search falls back to the newest matches; this keeps "newest first" cheap for it too
CREATE INDEX stories_sort_time ON stories((COALESCE(published_at, first_seen_at)) DESC, id DESC);
