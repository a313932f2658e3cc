-- Where a story lands and what comes with it (issue "What K-pop servers ask for"): forum posts, published
-- announcement posts, discussion threads, role pings and keyword filters. Portable SQL (SQLite and PostgreSQL).

-- The channel's kind when subscribed: text | announcement | forum.
ALTER TABLE subscriptions ADD COLUMN kind TEXT NOT NULL DEFAULT 'text';
-- A role mentioned with each post (NULL: none).
ALTER TABLE subscriptions ADD COLUMN ping_role_id BIGINT;
-- Words or phrases as the admin typed them (JSON lists): a story must name one of `keywords` (none: any
-- story) and none of `exclude`.
ALTER TABLE subscriptions ADD COLUMN keywords_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE subscriptions ADD COLUMN exclude_json TEXT NOT NULL DEFAULT '[]';
-- 1: a discussion thread is opened on each post.
ALTER TABLE subscriptions ADD COLUMN threads INTEGER NOT NULL DEFAULT 0;
-- Announcement channels: when the channel last reached Discord's publish limit, and until when it publishes
-- nothing (posts in between stay posted, unpublished).
ALTER TABLE subscriptions ADD COLUMN publish_limited_at TEXT;
ALTER TABLE subscriptions ADD COLUMN publish_resumes_at TEXT;

-- How the delivery is posted (the channel's kind) and the roles it mentions (JSON list of ids), fixed when
-- it is queued from every subscription of the channel that matched the story.
ALTER TABLE deliveries ADD COLUMN kind TEXT NOT NULL DEFAULT 'text';
ALTER TABLE deliveries ADD COLUMN ping_roles_json TEXT NOT NULL DEFAULT '[]';
-- The forum post, or the discussion thread opened on the message.
ALTER TABLE deliveries ADD COLUMN thread_id BIGINT;
-- What follows the post, each once: NULL (not asked) | pending | attempted | done | failed, and for
-- publishing also limited (the channel's publish limit was reached: left unpublished).
ALTER TABLE deliveries ADD COLUMN thread_state TEXT;
ALTER TABLE deliveries ADD COLUMN publish_state TEXT;

-- Sent posts whose thread or publishing is still to do (after a crash): a small index, read every pass.
CREATE INDEX deliveries_follow_up ON deliveries(status, channel_id)
    WHERE thread_state IN ('pending', 'attempted') OR publish_state IN ('pending', 'attempted');
