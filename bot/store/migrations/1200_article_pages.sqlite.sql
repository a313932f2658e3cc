-- Article pages fetched with care: a poll fetches at most a few pages per feed, so a young story may be stored
-- from its feed alone and get its page (fan quotes, image) on a later poll of that feed.

-- Until when the story's article page is still worth fetching (its delivery age ends then); NULL: none awaited.
ALTER TABLE stories ADD COLUMN page_wanted_until TEXT;
-- A later poll of the feed asks for its stories awaiting a page, newest first.
CREATE INDEX stories_page_wanted ON stories(source_id, page_wanted_until) WHERE page_wanted_until IS NOT NULL;
