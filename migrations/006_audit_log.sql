-- The audit trail: every control action from any door (http, mcp, nats, cli, library), append-only.
--
-- A node records each action (spawn, stop, restart, drain, rebalance, shutdown, cancel,
-- state_reset, command) in its write-ahead audit spool and ships it here, exactly once
-- (audit_id is the key a re-shipped row is recognised by). Rows are never updated; they are
-- deleted only by the retention prune (audit.retention_s), which says so for its transaction
-- (SET LOCAL mistersmith.audit_prune = 'on'). A trigger refuses anything else.

CREATE TABLE audit_log (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audit_id    uuid        NOT NULL UNIQUE,
    at          timestamptz NOT NULL,
    node_id     text        NOT NULL,
    actor       text        NOT NULL,
    door        text        NOT NULL CHECK (door IN ('http', 'mcp', 'nats', 'cli', 'library')),
    action      text        NOT NULL,
    target      text        NOT NULL,
    outcome     text        NOT NULL,
    detail      text,
    trace_id    text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at);
CREATE INDEX audit_log_action_at ON audit_log (action, at);

COMMENT ON TABLE audit_log IS
    'Append-only audit trail of control actions; pruned only by the node''s retention (audit.retention_s).';
COMMENT ON COLUMN audit_log.actor IS 'A token name (http, mcp), the NATS door''s user, or library.';
COMMENT ON COLUMN audit_log.outcome IS 'ok, or the error code the action ended with (for a command: accepted or refused).';

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('mistersmith.audit_prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
