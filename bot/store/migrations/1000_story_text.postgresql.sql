-- Stories keep their clean text, compressed, instead of the feed's raw HTML (issue 12: ~2 KB of HTML was most
-- of a story's bytes). story_texts holds the text tagging reads (`kpopnews retag`): bot.text.html_to_text of
-- the article, UTF-8, zlib-compressed; a story whose text was dropped by `[storage] keep_text_days` has no row.
-- Its own table, so the stories rows that search and posting read stay small, and dropping old texts deletes
-- whole rows.
--
-- The migration's Python step (bot/store/migration_steps.py) then turns each stored content_html into a
-- story_texts row and empties content_html, in this migration's transaction. The column itself stays, always
-- '' (SQLite's twin keeps it too: both engines keep the same columns for copy-db).

CREATE TABLE story_texts (
    story_id  BIGINT PRIMARY KEY REFERENCES stories(id) ON DELETE CASCADE,
    seen_at   BIGINT NOT NULL,         -- the story's first_seen_at, Unix seconds: keep_text_days counts from it
    text_zlib BYTEA NOT NULL
);
-- dropping old texts is a range of this index, however many stories are stored
CREATE INDEX story_texts_seen ON story_texts(seen_at);
-- compressed already: stored as it is, never run through PostgreSQL's own compression again
ALTER TABLE story_texts ALTER COLUMN text_zlib SET STORAGE EXTERNAL;
