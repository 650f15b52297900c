-- admmgt 0.4.0: a run records the backend that runs it, so that a run whose
-- backend is gone (client killed, crash, restart) can be told from one still
-- running and marked interrupted (docs/operations.md, "Runs you can trust").
ALTER TABLE admmgt.runs
ADD COLUMN pid integer,
ADD COLUMN backend_start timestamptz;
COMMENT ON COLUMN admmgt.runs.pid IS
'Process id of the backend that ran it (pg_backend_pid()).';
COMMENT ON COLUMN admmgt.runs.backend_start IS
'When that backend started: with pid, tells a live run from one whose backend is gone.';
COMMENT ON COLUMN admmgt.runs.outcome IS
'ok, failed (a target failed or a script was refused), aborted (stopped early), noop, or interrupted (its backend went away before it ended); NULL while running.';
COMMENT ON COLUMN admmgt.runs.finished_at IS
'End time (for an interrupted run, when that was noticed); NULL while running.';
