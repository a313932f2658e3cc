-- Feeds that change: a permanent redirect moves a source after it is answered twice in a row, and a source the
-- poller disabled (failures, 410 Gone) is probed again with growing gaps and comes back when it answers a feed.

-- Its next automatic probe while disabled by the poller; NULL: not probed (enabled, or switched off by a person).
ALTER TABLE sources ADD COLUMN probe_at TEXT;
-- Probes that failed since it was disabled (the gap grows with them: 1 h, 6 h, 24 h, then daily).
ALTER TABLE sources ADD COLUMN probes INTEGER NOT NULL DEFAULT 0;
-- Where its feed redirected permanently (301/308) at the last polls, and how many polls in a row said so.
ALTER TABLE sources ADD COLUMN redirect_to TEXT;
ALTER TABLE sources ADD COLUMN redirects_seen INTEGER NOT NULL DEFAULT 0;
-- The address it had before a permanent redirect moved it (the first one, if it moved again), and when.
ALTER TABLE sources ADD COLUMN moved_from TEXT;
ALTER TABLE sources ADD COLUMN moved_at TEXT;

-- Sources the poller disabled before probes existed: probed at the next poll.
UPDATE sources SET probe_at = '1970-01-01T00:00:00+00:00'
WHERE disabled_reason LIKE 'the feed answered 410 Gone on %' OR disabled_reason LIKE '% failed polls in a row %';
