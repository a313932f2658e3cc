-- Delivery bookkeeping: "Also on" edits, in-doubt sends after a crash, and when a subscription last erred.

-- Other outlets that carried the same story cluster, shown as "Also on: X, Y" (JSON list of outlet names).
ALTER TABLE deliveries ADD COLUMN also_on_json TEXT NOT NULL DEFAULT '[]';
-- 1: the sent message must be edited to show the new also_on list.
ALTER TABLE deliveries ADD COLUMN edit_pending INTEGER NOT NULL DEFAULT 0;
-- Edits made to the message so far (capped: a message is not edited forever).
ALTER TABLE deliveries ADD COLUMN edits INTEGER NOT NULL DEFAULT 0;
-- Set and committed just before a send: a pending delivery with it set may have reached Discord already.
ALTER TABLE deliveries ADD COLUMN attempt_started_at TEXT;

ALTER TABLE subscriptions ADD COLUMN last_error_at TEXT;

CREATE INDEX deliveries_channel_pending ON deliveries(channel_id, status, id);
CREATE INDEX deliveries_edit_pending ON deliveries(edit_pending) WHERE edit_pending = 1;
CREATE INDEX subscriptions_channel ON subscriptions(channel_id);
