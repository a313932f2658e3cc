-- Story clusters (as 0500_story_clusters.sqlite.sql): what clustering keeps per story, and the index that finds
-- the stories a new one may join.

CREATE TABLE cluster_features (
    story_id    BIGINT PRIMARY KEY REFERENCES stories(id) ON DELETE CASCADE,
    cluster_id  BIGINT NOT NULL,          -- = stories.cluster_id: the id of the cluster's first story
    at          BIGINT NOT NULL,          -- published, else first seen: Unix seconds
    cluster_at  BIGINT NOT NULL,          -- `at` of the cluster's first story
    artists     TEXT COLLATE "C" NOT NULL DEFAULT '', -- artist ids, space-separated
    title_terms TEXT COLLATE "C" NOT NULL DEFAULT '', -- the headline's stemmed event words, space-separated
    body_terms  TEXT COLLATE "C" NOT NULL DEFAULT ''  -- the summary's stemmed event words not in the headline
);

CREATE TABLE cluster_keys (
    key      TEXT COLLATE "C" NOT NULL,
    at       BIGINT NOT NULL,
    story_id BIGINT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    PRIMARY KEY (key, at, story_id)
);
CREATE INDEX cluster_keys_story ON cluster_keys(story_id); -- so deleting a story does not scan the index
