-- admmgt.tenant_usage: what each tenant uses, read from every cluster's
-- statistics (one connection per cluster, no tenant database touched).
-- A cluster that cannot be reached shows its tenants' numbers as NULL
-- (unknown), never 0, and says why in problem.
CREATE OR REPLACE FUNCTION admmgt._tenant_usage()
RETURNS TABLE (
    dbname text,
    database text,
    cluster_name text,
    status integer,
    size_bytes bigint,
    connections integer,
    xact_commit bigint,
    xact_rollback bigint,
    deadlocks bigint,
    temp_bytes bigint,
    cache_hit_ratio numeric,
    stats_reset timestamptz,
    slowest_statements jsonb,
    problem text
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
return admmgt_plpy.tenant_usage(plpy)
$$;
COMMENT ON FUNCTION admmgt._tenant_usage() IS
'Internal: the rows of the view admmgt.tenant_usage.';

CREATE VIEW admmgt.tenant_usage AS
SELECT
    u.dbname,
    u.database,
    u.cluster_name,
    u.status,
    u.size_bytes,
    u.connections,
    u.xact_commit,
    u.xact_rollback,
    u.deadlocks,
    u.temp_bytes,
    u.cache_hit_ratio,
    u.stats_reset,
    u.slowest_statements,
    u.problem
FROM admmgt._tenant_usage() AS u;

COMMENT ON VIEW admmgt.tenant_usage IS
'One row per registered, not removed database tenant (schema tenants share their host database''s figures and are not listed): size and activity from pg_stat_database, and its slowest statements from pg_stat_statements when that extension is installed in the cluster''s maintenance database (the admin database on the local cluster). NULL means unknown (cluster unreachable, database missing, not created): see problem. `admmgt top` shows it.';
COMMENT ON COLUMN admmgt.tenant_usage.dbname IS 'Name as registered in vendor_db_settings.';
COMMENT ON COLUMN admmgt.tenant_usage.database IS 'The database''s name: dbname folded to lower case.';
COMMENT ON COLUMN admmgt.tenant_usage.cluster_name IS 'Cluster holding the database (local when NULL in the registry).';
COMMENT ON COLUMN admmgt.tenant_usage.status IS 'Registry status: 0 designing, 1 pending creation, 2 created, 3 failed.';
COMMENT ON COLUMN admmgt.tenant_usage.size_bytes IS 'pg_database_size(); NULL when unknown.';
COMMENT ON COLUMN admmgt.tenant_usage.connections IS 'Current backends connected (pg_stat_database.numbackends).';
COMMENT ON COLUMN admmgt.tenant_usage.xact_commit IS 'Transactions committed since stats_reset.';
COMMENT ON COLUMN admmgt.tenant_usage.xact_rollback IS 'Transactions rolled back since stats_reset.';
COMMENT ON COLUMN admmgt.tenant_usage.deadlocks IS 'Deadlocks detected since stats_reset.';
COMMENT ON COLUMN admmgt.tenant_usage.temp_bytes IS 'Bytes written to temporary files since stats_reset.';
COMMENT ON COLUMN admmgt.tenant_usage.cache_hit_ratio IS 'blks_hit / (blks_hit + blks_read); NULL before any block was read.';
COMMENT ON COLUMN admmgt.tenant_usage.stats_reset IS 'When the database''s statistics were last reset.';
COMMENT ON COLUMN admmgt.tenant_usage.slowest_statements IS 'Up to 5 statements by mean execution time (query, calls, mean_ms, max_ms, total_ms, rows), every string constant in query shown as ''***'' (a statement may set a password); NULL when pg_stat_statements is not installed where admmgt reads it.';
COMMENT ON COLUMN admmgt.tenant_usage.problem IS 'Why the numbers are unknown (NULL), or NULL when they are known.';
