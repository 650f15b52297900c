-- admmgt.fleet_status: the fleet at a glance, one row per registered database
-- (the template included), from the registry, the run log and the local
-- cluster's catalog. `admmgt status` prints it; the multi-tenancy monitoring
-- query "tenants by size" is `ORDER BY size_bytes DESC` on it.
-- pg_database_size() fails for a database that does not exist or that the
-- caller may not CONNECT to, so it is only called when both are known to hold.
CREATE VIEW admmgt.fleet_status AS
SELECT
    v.id,
    v.cluster_name,
    v.dbname,
    lower(v.dbname) AS database,
    v.istemplate,
    v.status,
    CASE v.status
        WHEN 0 THEN 'designing'
        WHEN 1 THEN 'pending creation'
        WHEN 2 THEN 'created'
        WHEN 3 THEN 'failed'
    END AS status_word,
    v.updateflag,
    v.scriptversion,
    (
        SELECT count(*)
        FROM admmgt.scripts AS s
        WHERE s.status IN (1, 2) AND s.id > coalesce(v.scriptversion, 0)
    )::integer AS scripts_behind,
    lastrun.finished_at AS last_run_at,
    lastrun.operation AS last_operation,
    lastrun.outcome AS last_outcome,
    v.last_error,
    v.last_error_at,
    CASE
        WHEN
            coalesce(v.cluster_name, 'local') = 'local'
            AND d.oid IS NOT NULL
            AND (
                pg_catalog.has_database_privilege(d.oid, 'CONNECT')
                OR pg_catalog.pg_has_role('pg_read_all_stats', 'MEMBER')
            )
            THEN pg_catalog.pg_database_size(d.oid)
    END AS size_bytes,
    (
        NOT v.istemplate
        AND coalesce(v.scriptversion, 0) > coalesce((
            SELECT max(s.id)
            FROM admmgt.scripts AS s
            WHERE s.applied_to_template_at IS NOT NULL AND s.status IN (1, 2)
        ), 0)
    ) AS ahead_of_template,
    hist.version AS history_version,
    (
        hist.run_id IS NOT NULL
        AND hist.version IS DISTINCT FROM v.scriptversion
    ) AS registry_disagrees,
    v.separatedb,
    CASE
        WHEN v.separatedb = 0
            THEN coalesce(h.dbname, '(no host database)') || '.' || lower(v.dbname)
        ELSE lower(v.dbname)
    END AS place,
    (
        SELECT
            'promotion ' || p.id || ' unfinished (' || p.state || ' since '
            || to_char(p.started_at, 'YYYY-MM-DD HH24:MI:SS') || '): CALL admmgt.promote_tenant('
            || quote_literal(v.dbname) || ') finishes it'
            || CASE WHEN p.state = 'started' THEN ', t_abort => true undoes it' ELSE '' END
        FROM admmgt.promotions AS p
        WHERE p.tenant_id = v.id AND p.state IN ('started', 'switched')
    ) AS promotion
FROM admmgt.vendor_db_settings AS v
LEFT JOIN admmgt.schema_hosts AS h
    ON v.separatedb = 0 AND h.cluster_name = coalesce(v.cluster_name, 'local')
LEFT JOIN pg_catalog.pg_database AS d
    ON
        v.separatedb = 1
        AND coalesce(v.cluster_name, 'local') = 'local' AND d.datname = lower(v.dbname)
LEFT JOIN LATERAL (
    SELECT
        l.finished_at,
        r.operation,
        l.outcome
    FROM admmgt.run_log AS l
    INNER JOIN admmgt.runs AS r ON l.run_id = r.id
    WHERE l.dbname = lower(v.dbname) AND l.cluster_name = coalesce(v.cluster_name, 'local')
    ORDER BY l.finished_at DESC, l.id DESC
    LIMIT 1
) AS lastrun ON true
-- What the latest run that read this database's own history found there,
-- unless the registry row was changed since (baseline writes no run_log).
LEFT JOIN LATERAL (
    SELECT
        l.run_id,
        (l.details ->> 'version')::integer AS version
    FROM admmgt.run_log AS l
    WHERE
        l.dbname = lower(v.dbname) AND l.cluster_name = coalesce(v.cluster_name, 'local')
        AND l.details ? 'version'
        AND (v.modifiedon IS NULL OR l.finished_at >= v.modifiedon)
    ORDER BY l.finished_at DESC, l.id DESC
    LIMIT 1
) AS hist ON true
WHERE NOT v.deleted;

COMMENT ON VIEW admmgt.fleet_status IS
'One row per registered, not removed database (the template flagged): status, version, scripts behind, last run, last error and size. `admmgt status` shows it; ORDER BY size_bytes DESC lists tenants by size.';
COMMENT ON COLUMN admmgt.fleet_status.id IS 'vendor_db_settings.id.';
COMMENT ON COLUMN admmgt.fleet_status.cluster_name IS 'Cluster holding the database (admmgt.clusters).';
COMMENT ON COLUMN admmgt.fleet_status.dbname IS 'Name as registered in vendor_db_settings.';
COMMENT ON COLUMN admmgt.fleet_status.database IS 'The database''s name: dbname folded to lower case (a schema tenant''s schema; place names its host database).';
COMMENT ON COLUMN admmgt.fleet_status.istemplate IS 'True for the template.';
COMMENT ON COLUMN admmgt.fleet_status.status IS '0 designing, 1 pending creation, 2 created, 3 failed.';
COMMENT ON COLUMN admmgt.fleet_status.status_word IS 'status in words.';
COMMENT ON COLUMN admmgt.fleet_status.updateflag IS 'False: held back, applyScripts skips it.';
COMMENT ON COLUMN admmgt.fleet_status.scriptversion IS 'Highest script applied, per the registry (reconciled from the database''s own history).';
COMMENT ON COLUMN admmgt.fleet_status.scripts_behind IS 'Scripts with status 1 (ready) or 2 (applied) and an id above scriptversion.';
COMMENT ON COLUMN admmgt.fleet_status.last_run_at IS 'When the latest run_log row for this database ended.';
COMMENT ON COLUMN admmgt.fleet_status.last_operation IS 'Operation of that run (create_database, applyScripts, ...).';
COMMENT ON COLUMN admmgt.fleet_status.last_outcome IS 'Outcome for this database in that run: ok, noop, failed or skipped.';
COMMENT ON COLUMN admmgt.fleet_status.last_error IS 'Last failure (what failed and what to do); NULL after a success.';
COMMENT ON COLUMN admmgt.fleet_status.last_error_at IS 'When last_error was recorded.';
COMMENT ON COLUMN admmgt.fleet_status.ahead_of_template IS 'True for a tenant at a script the template no longer has (e.g. a rollback that did not reach it): `admmgt status` exits 1.';
COMMENT ON COLUMN admmgt.fleet_status.history_version IS 'The version the latest run found in the database''s own admmgt.script_history (NULL if none did since the registry row last changed).';
COMMENT ON COLUMN admmgt.fleet_status.registry_disagrees IS 'True when history_version differs from scriptversion: the registry is stale; applyScripts or rollbackScript reconciles it. `admmgt status` exits 1.';
COMMENT ON COLUMN admmgt.fleet_status.size_bytes IS 'pg_database_size() for databases on the local cluster that exist and that you may connect to; NULL otherwise (and for schema tenants).';
COMMENT ON COLUMN admmgt.fleet_status.separatedb IS '1: a database tenant (or the database template); 0: a schema tenant (or the template schema) in its cluster''s host database.';
COMMENT ON COLUMN admmgt.fleet_status.promotion IS 'For a schema tenant whose promote_tenant has not finished (running, or interrupted: its schema stays read-only until then), what it is and the call that finishes it; NULL otherwise. `admmgt status` exits 1.';
COMMENT ON COLUMN admmgt.fleet_status.place IS 'Where it lives: the database, or host.schema for a schema tenant (admmgt.schema_hosts).';
