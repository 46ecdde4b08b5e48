-- Knowledge discoveries that agents share (the SSE stream resumes from here),
-- and the state of every task of the JetStream task queue.

CREATE TABLE discoveries (
    seq            bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the SSE event id
    id             text             NOT NULL,   -- the discovery's global identity (made by the sharer)
    agent_id       text             NOT NULL,
    agent_role     text             NOT NULL,
    discovery_type text             NOT NULL,   -- pattern, anomaly, connection, solution, question, insight
    content        text             NOT NULL,
    confidence     double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    related_to     text,
    occurred_at    timestamptz      NOT NULL,   -- when the sharer made it
    node_id        text             NOT NULL,   -- the node that stored it
    created_at     timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT discoveries_id_key UNIQUE (id)
);

COMMENT ON TABLE discoveries IS
    'Shared discoveries; seq is commit order (writers serialise on an advisory lock), so Last-Event-ID resumes with no gap.';

-- The stream and query filters: by agent, by type (each in seq order); confidence is checked on those rows.
CREATE INDEX discoveries_agent_seq ON discoveries (agent_id, seq);
CREATE INDEX discoveries_type_seq ON discoveries (discovery_type, seq);
CREATE INDEX discoveries_related_to ON discoveries (related_to) WHERE related_to IS NOT NULL;

CREATE TABLE tasks (
    task_id    text        PRIMARY KEY,
    kind       text,                    -- the agent kind that serves it (tasks.{kind}.queue.{priority})
    priority   text,
    payload    jsonb,
    state      text        NOT NULL,    -- queued, running, retrying, done, dead
    attempts   integer     NOT NULL DEFAULT 0,
    agent_id   text,
    result     jsonb,
    error      jsonb,
    node_id    text,                    -- the node that ran (or last ran) it
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tasks_state_updated ON tasks (state, updated_at);
CREATE INDEX tasks_kind_created ON tasks (kind, created_at);
