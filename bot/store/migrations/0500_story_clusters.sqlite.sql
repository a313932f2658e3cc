-- Story clusters (bot/clustering.py): what clustering keeps per story, and the index that finds the stories a
-- new one may join (sharing an artist or a headline word, close in time) without comparing against every story.

CREATE TABLE cluster_features (
    story_id    INTEGER PRIMARY KEY REFERENCES stories(id) ON DELETE CASCADE,
    cluster_id  INTEGER NOT NULL,         -- = stories.cluster_id: the id of the cluster's first story
    at          INTEGER NOT NULL,         -- published, else first seen: Unix seconds
    cluster_at  INTEGER NOT NULL,         -- `at` of the cluster's first story: a cluster spans about 48 h at most
    artists     TEXT NOT NULL DEFAULT '', -- artist ids, space-separated
    title_terms TEXT NOT NULL DEFAULT '', -- the headline's stemmed event words, space-separated
    body_terms  TEXT NOT NULL DEFAULT ''  -- the summary's stemmed event words not in the headline
);

-- One row per artist ('a:bts-v') and per headline word ('t:enlist' for a tagged story, 'u:enlist' for an untagged
-- one) of each clustered story, ordered by time:
-- candidates are a few short range scans (key = ? AND at BETWEEN ? AND ?).
CREATE TABLE cluster_keys (
    key      TEXT NOT NULL,
    at       INTEGER NOT NULL,
    story_id INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    PRIMARY KEY (key, at, story_id)
) WITHOUT ROWID;
CREATE INDEX cluster_keys_story ON cluster_keys(story_id); -- so deleting a story does not scan the index
