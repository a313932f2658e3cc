-- Several processes, one bot: work is claimed with a lease, so each feed is fetched and each delivery sent by
-- one process at a time, and a process that dies loses its claims when their lease runs out.
-- Portable: the same statements on SQLite and PostgreSQL.

-- The process polling the source now (its owner id) and until when its claim holds; NULL: nobody.
ALTER TABLE sources ADD COLUMN claimed_by TEXT;
ALTER TABLE sources ADD COLUMN claim_until TEXT;

-- The process sending the delivery (or editing its message) now, and until when its claim holds.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claim_until TEXT;

-- A request rate shared by every process: per scope (e.g. 'discord': Discord's global limit), the earliest time
-- (milliseconds since the epoch) the next request may go. Each request takes the next slot and moves it on.
CREATE TABLE rate_slots (
    scope   TEXT PRIMARY KEY,
    next_at DOUBLE PRECISION NOT NULL
);
