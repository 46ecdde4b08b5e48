-- The supervision journal: every supervision event, append-only, and the
-- registry of agents that recovery reads.

CREATE TABLE supervision_events (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    node_id       text        NOT NULL,
    node_seq      bigint      NOT NULL,  -- the emitting node's own event number (per run)
    supervisor    text        NOT NULL,  -- path of the supervisor ("root/workers"); "" for the root itself
    agent_id      text,                  -- NULL for a supervisor's events about itself
    kind          text,
    event_type    text        NOT NULL,  -- no CHECK: a new event type must never block the writer
    reason        text,
    restart_count integer     NOT NULL DEFAULT 0,
    data          jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT supervision_events_event_id_key UNIQUE (event_id)
);

COMMENT ON TABLE supervision_events IS
    'Append-only journal of supervision events; seq is commit order (writers serialise on an advisory lock).';

-- Replay by agent, by node (recovery, tree_at) and by time; by seq is the primary key.
CREATE INDEX supervision_events_agent_seq ON supervision_events (agent_id, seq) WHERE agent_id IS NOT NULL;
CREATE INDEX supervision_events_node_seq ON supervision_events (node_id, seq);
CREATE INDEX supervision_events_occurred_at ON supervision_events (occurred_at);

-- Append-only means append-only: history is not edited in place.
CREATE FUNCTION supervision_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'supervision_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'history is kept as recorded; to prune it, drop this trigger deliberately';
END;
$$;

CREATE TRIGGER supervision_events_no_update
    BEFORE UPDATE OR DELETE ON supervision_events
    FOR EACH ROW EXECUTE FUNCTION supervision_events_append_only();

CREATE TRIGGER supervision_events_no_truncate
    BEFORE TRUNCATE ON supervision_events
    FOR EACH STATEMENT EXECUTE FUNCTION supervision_events_append_only();

-- The registry: one row per child slot (node, supervisor path, id), kept by the
-- journal writer in the same transaction as the events it derives from.
CREATE TABLE agents (
    node_id       text        NOT NULL,
    supervisor    text        NOT NULL,
    agent_id      text        NOT NULL,
    kind          text        NOT NULL,
    config        jsonb       NOT NULL DEFAULT '{}',
    restart       text        NOT NULL CHECK (restart IN ('permanent', 'transient', 'temporary')),
    spec          jsonb       NOT NULL DEFAULT '{}',  -- what the last started/restarted event carried
    desired_state text        NOT NULL CHECK (desired_state IN ('running', 'stopped')),
    state         text        NOT NULL,                -- last observed: running, paused, failed, restarting, stopped
    incarnation   integer     NOT NULL DEFAULT 0,      -- restart_count of the last incarnation
    started_seq   bigint      NOT NULL,                -- journal seq of its first start (gives start order)
    reason        text,
    last_event    text        NOT NULL,
    last_seq      bigint      NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (node_id, supervisor, agent_id)
);

CREATE INDEX agents_agent_id ON agents (agent_id);
