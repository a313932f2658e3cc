-- Trending (as 0501_trending.sqlite.sql): clusters that crossed the trending threshold, so trending-only
-- subscriptions get each of them once.

CREATE TABLE trending_crossings (
    cluster_id    BIGINT PRIMARY KEY,     -- stories.cluster_id
    crossed_at    TEXT COLLATE "C" NOT NULL, -- when it was first seen over the threshold
    points        DOUBLE PRECISION NOT NULL, -- its points then (outlets and fan quotes, before time decay)
    last_story_id BIGINT NOT NULL         -- its stories up to this id have been offered to the delivery queue
);
