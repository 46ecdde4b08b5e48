-- Who vouches for each discovery, and which worker holds each task.
--
-- discoveries.source: 'node:<node_id>' for a discovery shared through that node,
-- 'nats:<node_id>' for one that node ingested from a NATS message no node had
-- stored (NATS does not say who published it). Rows stored before this
-- migration get 'unknown'.
--
-- tasks.claim_token: the random token of the worker attempt that holds the task
-- (set when a worker takes it, 'running'). Only that attempt may settle it
-- (done, retrying, dead); a result published on NATS by anyone else changes nothing.

ALTER TABLE discoveries ADD COLUMN source text NOT NULL DEFAULT 'unknown';

COMMENT ON COLUMN discoveries.source IS
    'Who vouches for it: node:<id> (shared through that node), nats:<id> (ingested by that node from NATS), unknown.';

ALTER TABLE tasks ADD COLUMN claim_token text;

COMMENT ON COLUMN tasks.claim_token IS
    'The token of the worker attempt holding the task; only that attempt settles it. Never published.';
