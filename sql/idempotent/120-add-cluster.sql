CREATE OR REPLACE PROCEDURE admmgt._add_cluster(
    t_name text,
    t_host text DEFAULT NULL,
    t_port integer DEFAULT NULL,
    t_options text DEFAULT NULL,
    t_fdw_server text DEFAULT NULL,
    t_max_parallel integer DEFAULT NULL,
    t_description text DEFAULT NULL
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.add_cluster(
    plpy, name=t_name, host=t_host, port=t_port, options=t_options, fdw_server=t_fdw_server,
    max_parallel=t_max_parallel, description=t_description)
$$;
COMMENT ON PROCEDURE admmgt._add_cluster (text, text, integer, text, text, integer, text) IS
'The body of admmgt.add_cluster, which calls it once it made sure it runs outside any transaction block; call admmgt.add_cluster instead.';
CREATE OR REPLACE PROCEDURE admmgt.add_cluster(
    t_name text,
    t_host text DEFAULT NULL,
    t_port integer DEFAULT NULL,
    t_options text DEFAULT NULL,
    t_fdw_server text DEFAULT NULL,
    t_max_parallel integer DEFAULT NULL,
    t_description text DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('add_cluster');
    CALL admmgt._add_cluster(t_name, t_host, t_port, t_options, t_fdw_server, t_max_parallel, t_description);
END
$$;
COMMENT ON PROCEDURE admmgt.add_cluster (text, text, integer, text, text, integer, text) IS
'Registers a PostgreSQL cluster (unless it already is) and builds its copy of the template by replaying every script and the synced routines and views from version 0; the copy takes tenants only once its catalog equals the home template''s. Never pass a password: use t_fdw_server (a user mapping) or a passfile (docs/clusters.md). Calling it again resumes or re-checks.';
