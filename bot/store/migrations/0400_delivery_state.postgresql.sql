-- Delivery bookkeeping (as 0400_delivery_state.sqlite.sql): "Also on" edits, in-doubt sends after a crash, and
-- when a subscription last erred.

ALTER TABLE deliveries ADD COLUMN also_on_json TEXT COLLATE "C" NOT NULL DEFAULT '[]';
ALTER TABLE deliveries ADD COLUMN edit_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN edits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN attempt_started_at TEXT COLLATE "C";

ALTER TABLE subscriptions ADD COLUMN last_error_at TEXT COLLATE "C";

CREATE INDEX deliveries_channel_pending ON deliveries(channel_id, status, id);
CREATE INDEX deliveries_edit_pending ON deliveries(edit_pending) WHERE edit_pending = 1;
CREATE INDEX subscriptions_channel ON subscriptions(channel_id);
