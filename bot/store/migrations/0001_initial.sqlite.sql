-- The initial schema: sources, stories (once each), the artists they are about, full-text search,
-- subscriptions, deliveries, and a small key/value table for the bot's own state.

CREATE TABLE sources (
    id                   INTEGER PRIMARY KEY,
    url                  TEXT NOT NULL UNIQUE,
    name                 TEXT NOT NULL,
    owner_guild_id       INTEGER,            -- NULL: the operator's configuration; else the server that added it
    color                INTEGER,
    etag                 TEXT,
    last_modified        TEXT,
    body_hash            TEXT,
    last_status          TEXT,               -- ok | not_modified | error
    last_error           TEXT,
    last_fetched_at      TEXT,
    last_success_at      TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_poll_at         TEXT,
    disabled_reason      TEXT,               -- NULL: enabled
    created_at           TEXT NOT NULL
);

CREATE TABLE stories (
    id              INTEGER PRIMARY KEY,
    story_key       TEXT NOT NULL UNIQUE,    -- the feed's guid where it is a real id, else the canonical link
    canonical_url   TEXT NOT NULL,
    url             TEXT NOT NULL,
    title           TEXT NOT NULL,
    source_id       INTEGER REFERENCES sources(id) ON DELETE SET NULL,
    source_name     TEXT NOT NULL,
    published_at    TEXT,                    -- ISO 8601 UTC
    first_seen_at   TEXT NOT NULL,
    summary         TEXT NOT NULL DEFAULT '',
    image_url       TEXT,
    quotes_json     TEXT NOT NULL DEFAULT '[]',
    categories_json TEXT NOT NULL DEFAULT '[]',
    content_html    TEXT NOT NULL DEFAULT '', -- kept to re-enrich when the code or the artist data improves
    backfill        INTEGER NOT NULL DEFAULT 0, -- 1: already in its feed at the source's first fetch; never posted
    cluster_id      INTEGER                  -- the story cluster (same event across outlets); NULL until clustered
);
CREATE INDEX stories_canonical_url ON stories(canonical_url);
CREATE INDEX stories_published ON stories(published_at);
CREATE INDEX stories_first_seen ON stories(first_seen_at);
CREATE INDEX stories_cluster ON stories(cluster_id);

-- Which feeds carried a story, so a story in two feeds is still one row.
CREATE TABLE source_stories (
    source_id     INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    story_id      INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    first_seen_at TEXT NOT NULL,
    PRIMARY KEY (source_id, story_id)
) WITHOUT ROWID;
CREATE INDEX source_stories_story ON source_stories(story_id);

CREATE TABLE story_artists (
    story_id  INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    artist_id TEXT NOT NULL,
    weight    REAL NOT NULL DEFAULT 1.0,     -- relevance: title and lead weigh more than a passing mention
    position  INTEGER NOT NULL DEFAULT 0,    -- order in which the story names them (most relevant first)
    PRIMARY KEY (story_id, artist_id)
) WITHOUT ROWID;
CREATE INDEX story_artists_artist ON story_artists(artist_id, story_id);

CREATE VIRTUAL TABLE stories_fts USING fts5(
    title, summary, content='stories', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER stories_fts_insert AFTER INSERT ON stories BEGIN
    INSERT INTO stories_fts(rowid, title, summary) VALUES (new.id, new.title, new.summary);
END;
CREATE TRIGGER stories_fts_delete AFTER DELETE ON stories BEGIN
    INSERT INTO stories_fts(stories_fts, rowid, title, summary) VALUES ('delete', old.id, old.title, old.summary);
END;
CREATE TRIGGER stories_fts_update AFTER UPDATE OF title, summary ON stories BEGIN
    INSERT INTO stories_fts(stories_fts, rowid, title, summary) VALUES ('delete', old.id, old.title, old.summary);
    INSERT INTO stories_fts(rowid, title, summary) VALUES (new.id, new.title, new.summary);
END;

CREATE TABLE subscriptions (
    id              INTEGER PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    channel_id      INTEGER NOT NULL,
    artist_id       TEXT,                    -- NULL: every artist
    source_id       INTEGER REFERENCES sources(id) ON DELETE CASCADE, -- NULL: every source
    only_trending   INTEGER NOT NULL DEFAULT 0,
    created_by      INTEGER,
    created_at      TEXT NOT NULL,
    start_story_id  INTEGER NOT NULL DEFAULT 0, -- stories with an id up to this were stored before it: not posted
    status          TEXT NOT NULL DEFAULT 'ok', -- ok | unhealthy | paused
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    retry_at        TEXT,
    last_post_at    TEXT
);
CREATE UNIQUE INDEX subscriptions_unique
    ON subscriptions(channel_id, COALESCE(artist_id, ''), COALESCE(source_id, 0));
CREATE INDEX subscriptions_guild ON subscriptions(guild_id);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    story_id        INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    cluster_id      INTEGER NOT NULL,        -- a channel gets one post per story cluster
    guild_id        INTEGER NOT NULL,
    channel_id      INTEGER NOT NULL,
    subscription_id INTEGER REFERENCES subscriptions(id) ON DELETE SET NULL,
    status          TEXT NOT NULL DEFAULT 'pending', -- pending | sent | failed | dropped
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    nonce           TEXT NOT NULL,
    message_id      INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    UNIQUE (channel_id, cluster_id)
);
CREATE INDEX deliveries_pending ON deliveries(status, next_attempt_at, id);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
