-- Personal follows (/follow): who follows which artist, each member's DM state, and the DMs themselves.
-- (PostgreSQL: 0650_follows.postgresql.sql, the same tables with BIGINT snowflakes and identity keys.)

-- One row per member who ever followed: what the DMs need to know of them.
CREATE TABLE followers (
    user_id       INTEGER PRIMARY KEY,
    locale        TEXT,                      -- the member's Discord locale at their last /follow: the DMs' words
    dm_channel_id INTEGER,                   -- the bot's DM channel with them, once opened: a DM costs one request
    status        TEXT NOT NULL DEFAULT 'ok', -- ok | paused (their DMs are closed: nothing is sent until /follow)
    paused_at     TEXT,
    paused_reason TEXT,
    told_at       TEXT,                      -- when they were told of the pause (once, in an ephemeral reply)
    created_at    TEXT NOT NULL
);

CREATE TABLE follows (
    user_id        INTEGER NOT NULL REFERENCES followers(user_id) ON DELETE CASCADE,
    artist_id      TEXT NOT NULL,            -- a group's follow includes its members' stories
    created_at     TEXT NOT NULL,
    start_story_id INTEGER NOT NULL DEFAULT 0, -- stories with an id up to this were stored before it: no DM
    PRIMARY KEY (user_id, artist_id)
);
CREATE INDEX follows_artist ON follows(artist_id);

-- One row per member and story cluster: a member gets a story once, whatever number of their follows match.
-- kind 'message' is a DM of its own; kind 'summary' is a line of that day's summary (past the daily cap).
CREATE TABLE dm_deliveries (
    id                 INTEGER PRIMARY KEY,
    user_id            INTEGER NOT NULL,
    cluster_id         INTEGER NOT NULL,
    story_id           INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    artist_id          TEXT NOT NULL,        -- the followed artist the DM names
    day                TEXT NOT NULL,        -- the UTC day it was queued (YYYY-MM-DD): the daily cap counts per day
    kind               TEXT NOT NULL,        -- message | summary
    status             TEXT NOT NULL DEFAULT 'pending', -- pending | sent | failed | dropped
    nonce              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    TEXT,
    attempt_started_at TEXT,                 -- set and committed before a send: it may be on Discord already
    message_id         INTEGER,
    last_error         TEXT,
    created_at         TEXT NOT NULL,
    sent_at            TEXT,
    UNIQUE (user_id, cluster_id)
);
CREATE INDEX dm_deliveries_pending ON dm_deliveries(status, kind, id);
CREATE INDEX dm_deliveries_user_day ON dm_deliveries(user_id, day, kind);
CREATE INDEX dm_deliveries_user_pending ON dm_deliveries(user_id, status, id);

-- The daily summary of a member's stories past the cap: one DM per member and day, due when the day ends.
CREATE TABLE dm_summaries (
    id                 INTEGER PRIMARY KEY,
    user_id            INTEGER NOT NULL,
    day                TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'pending', -- pending | sent | failed | dropped
    nonce              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    TEXT NOT NULL,        -- the start of the next UTC day, later after a failure
    attempt_started_at TEXT,
    message_id         INTEGER,
    last_error         TEXT,
    created_at         TEXT NOT NULL,
    sent_at            TEXT,
    UNIQUE (user_id, day)
);
CREATE INDEX dm_summaries_due ON dm_summaries(status, next_attempt_at);
