-- admmgt.run_history: every run and what it did to each database, newest
-- first when ordered by started_at DESC. A run that reached no database
-- (e.g. nothing to do) still shows as one row with dbname NULL.
CREATE VIEW admmgt.run_history AS
SELECT
    r.id AS run_id,
    r.operation,
    r.run_by,
    coalesce(
        r.outcome,
        CASE
            WHEN NOT EXISTS (
                SELECT FROM pg_catalog.pg_stat_activity AS a
                WHERE a.pid = r.pid AND a.backend_start = r.backend_start
            ) THEN 'interrupted'
        END
    ) AS run_outcome,
    l.dbname,
    l.cluster_name,
    l.scriptid,
    coalesce(
        l.outcome,
        r.outcome,
        CASE
            WHEN NOT EXISTS (
                SELECT FROM pg_catalog.pg_stat_activity AS a
                WHERE a.pid = r.pid AND a.backend_start = r.backend_start
            ) THEN 'interrupted'
        END
    ) AS outcome,
    l.sqlstate,
    l.message,
    l.statement,
    coalesce(l.started_at, r.started_at) AS started_at,
    coalesce(l.finished_at, r.finished_at) AS finished_at,
    coalesce(
        l.duration_ms,
        round((extract(EPOCH FROM r.finished_at - r.started_at) * 1000)::numeric, 1)
    ) AS duration_ms
FROM admmgt.runs AS r
LEFT JOIN admmgt.run_log AS l ON r.id = l.run_id;

COMMENT ON VIEW admmgt.run_history IS
'One row per run per database it worked on (runs joined with run_log), with timing and outcome. `admmgt log` shows the latest.';
COMMENT ON COLUMN admmgt.run_history.run_id IS 'The run (admmgt.runs.id).';
COMMENT ON COLUMN admmgt.run_history.operation IS 'Procedure that ran: create_database, drop_database, applyScripts, ...';
COMMENT ON COLUMN admmgt.run_history.run_by IS 'Session user that started the run.';
COMMENT ON COLUMN admmgt.run_history.run_outcome IS 'Outcome of the whole run: ok, failed, aborted, noop or interrupted (its backend went away before it ended); NULL while running.';
COMMENT ON COLUMN admmgt.run_history.dbname IS 'Database worked on; NULL for a run that reached none.';
COMMENT ON COLUMN admmgt.run_history.cluster_name IS 'Cluster of that database.';
COMMENT ON COLUMN admmgt.run_history.scriptid IS 'Script concerned, for script operations (the failing one, or the last applied).';
COMMENT ON COLUMN admmgt.run_history.outcome IS 'Outcome for this database: ok, noop, failed or skipped (the run''s outcome when dbname is NULL).';
COMMENT ON COLUMN admmgt.run_history.sqlstate IS 'SQLSTATE of a failure.';
COMMENT ON COLUMN admmgt.run_history.message IS 'What happened, in words; for a failure, what to do next.';
COMMENT ON COLUMN admmgt.run_history.statement IS 'The failing statement.';
COMMENT ON COLUMN admmgt.run_history.started_at IS 'When work on this database started (the run''s start when dbname is NULL).';
COMMENT ON COLUMN admmgt.run_history.finished_at IS 'When it ended.';
COMMENT ON COLUMN admmgt.run_history.duration_ms IS 'Elapsed milliseconds.';
