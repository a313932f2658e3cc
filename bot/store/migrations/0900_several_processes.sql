-- Several processes, one bot: work is claimed with a lease, so each feed is fetched and each delivery sent by
-- one process at a time, and a process that dies loses its claims when their lease runs out.
-- Portable: the same statements on SQLite and PostgreSQL.

-- The process polling the source now (its owner id) and until when its claim holds; NULL: nobody.
ALTER TABLE sources ADD COLUMN claimed_by TEXT;
ALTER TABLE sources ADD COLUMN claim_until TEXT;

-- The process sending the delivery (or editing its message) now, and until when its claim holds.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claim_until TEXT;

-- A request limit shared by every process: requests counted per scope (e.g. 'discord': Discord's global limit)
-- and per fixed window of time (its start, in milliseconds since the epoch). Old windows are deleted as it goes.
CREATE TABLE rate_windows (
    scope        TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (scope, window_start)
);
