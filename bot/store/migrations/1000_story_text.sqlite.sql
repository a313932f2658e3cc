-- Stories keep their clean text, compressed, instead of the feed's raw HTML (issue 12: ~2 KB of HTML was most
-- of a story's bytes). story_texts holds the text tagging reads (`kpopnews retag`): bot.text.html_to_text of
-- the article, UTF-8, zlib-compressed; a story whose text was dropped by `[storage] keep_text_days` has no row.
-- Its own table, so the stories rows that search and posting read stay small, and dropping old texts deletes
-- whole rows.
--
-- The migration's Python step (bot/store/migration_steps.py) then turns each stored content_html into a
-- story_texts row and empties content_html, in this migration's transaction. The column itself stays, always
-- '' (one byte a row): dropping a column needs SQLite 3.35, and both engines must keep the same columns for
-- copy-db.

CREATE TABLE story_texts (
    story_id  INTEGER PRIMARY KEY REFERENCES stories(id) ON DELETE CASCADE,
    seen_at   INTEGER NOT NULL,         -- the story's first_seen_at, Unix seconds: keep_text_days counts from it
    text_zlib BLOB NOT NULL
);
-- dropping old texts is a range of this index, however many stories are stored
CREATE INDEX story_texts_seen ON story_texts(seen_at);

-- The full-text index without word positions (detail=column) or per-row token counts (columnsize=0): about 40 %
-- smaller. Search never asks for a phrase, NEAR or a rank (bot/store/text_search.py: every word a term of its
-- own, matches sorted by time), so nothing it does needs them. Rebuilt from the stories' titles and summaries;
-- the triggers of 0001 fill it as before.
DROP TABLE stories_fts;
CREATE VIRTUAL TABLE stories_fts USING fts5(
    title, summary, content='stories', content_rowid='id', tokenize='unicode61 remove_diacritics 2',
    detail=column, columnsize=0
);
INSERT INTO stories_fts(stories_fts) VALUES ('rebuild');
