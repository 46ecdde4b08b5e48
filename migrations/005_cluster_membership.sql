-- Many nodes on one PostgreSQL: membership leases, and who owns each agent id.
--
-- nodes: one row per node id, renewed as a lease. `lease_until` is set from the
-- database's own clock (now() + the lease), so whether a lease has expired is
-- decided by PostgreSQL, never by a node's clock. `run_id` names one start of
-- the node: a row whose run_id is not the renewing node's belongs to an older
-- run (a restart) and is taken over, never renewed. `state` is up, draining or
-- down; a node that is down is never renewed again by that run.
--
-- agent_owners (from 004) now holds every agent of a node that keeps its state
-- here, not only durable ones: the node that owns the id, so no two nodes run it
-- at once. `released` marks an id given up on purpose (stopped, or ended by its
-- restart type): any node may then claim it. Supervisors own their path
-- ('root/workers') the same way.

CREATE TABLE nodes (
    node_id     text        PRIMARY KEY,
    run_id      text        NOT NULL,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    version     text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL,
    http_url    text,
    nats_url    text,
    state       text        NOT NULL CHECK (state IN ('up', 'draining', 'down')),
    agents      integer     NOT NULL DEFAULT 0,
    max_agents  integer,
    down_at     timestamptz
);

COMMENT ON TABLE nodes IS 'Membership: one lease per node, renewed every cluster.heartbeat_s, expired by the database clock.';
COMMENT ON COLUMN nodes.run_id IS 'This start of the node; renewals match it, so an older run can never renew.';
COMMENT ON COLUMN nodes.lease_until IS 'now() + cluster.node_lease_s at the last renewal (the database clock).';
COMMENT ON COLUMN nodes.agents IS 'Agents hosted at the last renewal (placement and takeover spread by it).';

ALTER TABLE agent_owners ADD COLUMN released boolean NOT NULL DEFAULT false;
ALTER TABLE agent_owners ADD COLUMN oldest bigint NOT NULL DEFAULT 0;

COMMENT ON COLUMN agent_owners.oldest IS 'No state version below this is kept: a commit prunes only [oldest, version - keep], live rows.';
ALTER TABLE agent_owners ADD COLUMN run_id text;

COMMENT ON COLUMN agent_owners.run_id IS 'The run (nodes.run_id) of the owning node that claimed it; NULL: claimed outside a cluster.';

COMMENT ON COLUMN agent_owners.released IS 'Given up on purpose (stopped, or ended by its restart type): any node may claim it.';

CREATE INDEX agent_owners_node ON agent_owners (node_id) WHERE NOT released;

-- handoffs: a unit (a top-level child of the root: an agent, or a supervisor with its children)
-- a draining node gave to another. The giver stops the unit, moves its registry rows and agent
-- ids to the taker, and adds this row, in one transaction; the taker starts the unit and deletes
-- the row in its next round.
CREATE TABLE handoffs (
    path       text        PRIMARY KEY,
    from_node  text        NOT NULL,
    to_node    text        NOT NULL,
    handed_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE handoffs IS 'Units handed from a draining node to another, not yet started there.';
