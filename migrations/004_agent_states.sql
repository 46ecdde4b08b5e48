-- Durable agents: who owns each agent (and under which epoch), its committed
-- state versions, and the recorded outcomes of its effects.
--
-- Every write carries the writer's epoch and is applied only while
-- agent_owners still holds that epoch, in the same statement (the write
-- row-locks the owner row, so an activation waits for it and then sees it).

CREATE TABLE agent_owners (
    agent_id text        PRIMARY KEY,
    node_id  text        NOT NULL,            -- the node of the current activation
    epoch    bigint      NOT NULL,            -- 1 at the first activation, +1 at each one after
    version  bigint      NOT NULL DEFAULT 0,  -- last committed version (0: none); survives pruning
    since    timestamptz NOT NULL DEFAULT now()  -- when the current activation took the agent
);

COMMENT ON TABLE agent_owners IS
    'One row per durable agent: its current epoch; a write carrying an older epoch is refused (fenced).';

CREATE TABLE agent_states (
    agent_id     text        NOT NULL,
    version      bigint      NOT NULL,   -- grows by commit; only the newest "keep" versions are kept
    epoch        bigint      NOT NULL,   -- the activation that committed it
    state        jsonb       NOT NULL,
    bytes        integer     NOT NULL,   -- size of the JSON the agent committed
    node_id      text        NOT NULL,   -- the node that committed it
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, version)
);

COMMENT ON TABLE agent_states IS
    'Committed versions of each durable agent''s state; the newest is what the next activation resumes from.';

CREATE TABLE agent_effects (
    agent_id    text        NOT NULL,
    key         text        NOT NULL,   -- the key the agent gave self.effect(key, fn)
    epoch       bigint      NOT NULL,   -- the activation that recorded it
    outcome     jsonb       NOT NULL,   -- {"value": ...} or {"error": {...}}
    recorded_at timestamptz NOT NULL DEFAULT now(),  -- effect retention counts from here
    PRIMARY KEY (agent_id, key)
);

COMMENT ON TABLE agent_effects IS
    'Recorded effect outcomes: a key recorded once is returned by every later activation (until forgotten).';
