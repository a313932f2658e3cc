-- Trending (bot/trending.py): clusters that crossed the trending threshold, so trending-only subscriptions get
-- each of them once.

CREATE TABLE trending_crossings (
    cluster_id    INTEGER PRIMARY KEY,    -- stories.cluster_id
    crossed_at    TEXT NOT NULL,          -- when it was first seen over the threshold
    points        REAL NOT NULL,          -- its points then (outlets and fan quotes, before time decay)
    last_story_id INTEGER NOT NULL        -- its stories up to this id have been offered to the delivery queue
);
