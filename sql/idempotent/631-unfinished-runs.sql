-- admmgt.unfinished_runs: runs that have not ended. A run is running while
-- its backend is (same pid, same backend start); one whose backend is gone
-- (client killed, crash, restart) is interrupted, whether or not a later run
-- already marked it so. An interrupted run stays listed until a later run of
-- the same operation ends (for rollbackScript and replayScripts: with the
-- same arguments), which is how calling it again resumes it.
CREATE VIEW admmgt.unfinished_runs AS
SELECT
    r.id AS run_id,
    r.operation,
    r.arguments,
    r.run_by,
    r.pid,
    r.started_at,
    CASE WHEN r.outcome IS NULL AND a.pid IS NOT NULL THEN 'running' ELSE 'interrupted' END AS state,
    (
        SELECT count(*) FROM admmgt.run_log AS l
        WHERE l.run_id = r.id
    )::integer AS databases_done,
    lastdb.dbname AS last_database,
    lastdb.finished_at AS last_progress_at
FROM admmgt.runs AS r
LEFT JOIN pg_catalog.pg_stat_activity AS a
    ON r.pid = a.pid AND r.backend_start = a.backend_start
LEFT JOIN LATERAL (
    SELECT
        l.dbname,
        l.finished_at
    FROM admmgt.run_log AS l
    WHERE l.run_id = r.id
    ORDER BY l.id DESC
    LIMIT 1
) AS lastdb ON true
WHERE
    (r.outcome IS NULL OR r.outcome = 'interrupted')
    AND NOT EXISTS (
        SELECT FROM admmgt.runs AS later
        WHERE
            later.id > r.id
            AND later.operation = r.operation
            AND later.outcome IS NOT NULL
            AND later.outcome <> 'interrupted'
            AND (
                r.operation NOT IN ('rollbackScript', 'replayScripts')
                OR later.arguments = r.arguments
            )
    );

COMMENT ON VIEW admmgt.unfinished_runs IS
'Runs still running, and runs interrupted (their backend went away) that no later run of the same operation has resumed. `admmgt status` lists them and exits 1.';
COMMENT ON COLUMN admmgt.unfinished_runs.run_id IS 'The run (admmgt.runs.id).';
COMMENT ON COLUMN admmgt.unfinished_runs.operation IS 'Procedure that ran.';
COMMENT ON COLUMN admmgt.unfinished_runs.arguments IS 'Its arguments.';
COMMENT ON COLUMN admmgt.unfinished_runs.run_by IS 'Session user that started it.';
COMMENT ON COLUMN admmgt.unfinished_runs.pid IS 'Its backend''s process id.';
COMMENT ON COLUMN admmgt.unfinished_runs.started_at IS 'When it started.';
COMMENT ON COLUMN admmgt.unfinished_runs.state IS 'running (its backend is alive) or interrupted (call the same operation again to resume it).';
COMMENT ON COLUMN admmgt.unfinished_runs.databases_done IS 'Databases it recorded an outcome for.';
COMMENT ON COLUMN admmgt.unfinished_runs.last_database IS 'The last database it recorded.';
COMMENT ON COLUMN admmgt.unfinished_runs.last_progress_at IS 'When it recorded that.';
