-- Supervision events remember their cause: the trace id (32 hex digits, W3C) of the request
-- whose command caused the event, when tracing is on and one did (`mistersmith replay --trace ID`).
-- Nullable: most events have no request behind them, and tracing is off by default.

ALTER TABLE supervision_events ADD COLUMN trace_id text;

CREATE INDEX supervision_events_trace_id ON supervision_events (trace_id) WHERE trace_id IS NOT NULL;
