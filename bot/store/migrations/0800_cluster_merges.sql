-- Clusters merge (bot/clustering.py): a story that is the same story as two clusters makes them one, so the
-- clusters no longer depend on the order in which stories arrive.

-- What a headline says of its event, kept with the story's other clustering features:
ALTER TABLE cluster_features ADD COLUMN roundup INTEGER NOT NULL DEFAULT 0; -- 1: it lists acts "…, And More"
ALTER TABLE cluster_features ADD COLUMN kinds TEXT NOT NULL DEFAULT '';   -- kinds of event it names, space-separated

-- A cluster's stories and its time span, and what a merge re-points, found by cluster id:
CREATE INDEX cluster_features_cluster ON cluster_features(cluster_id, at);
CREATE INDEX deliveries_cluster ON deliveries(cluster_id);
