CREATE OR REPLACE PROCEDURE admmgt._promote_tenant(
    t_dbname text, t_cluster text DEFAULT NULL, t_abort boolean DEFAULT false
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.promote_tenant(plpy, dbname=t_dbname, cluster=t_cluster, abort=t_abort)
$$;
COMMENT ON PROCEDURE admmgt._promote_tenant (text, text, boolean) IS
'The body of admmgt.promote_tenant, which calls it once it made sure it runs outside any transaction block; call admmgt.promote_tenant instead.';
CREATE OR REPLACE PROCEDURE admmgt.promote_tenant(
    t_dbname text, t_cluster text DEFAULT NULL, t_abort boolean DEFAULT false
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('promote_tenant');
    CALL admmgt._promote_tenant(t_dbname, t_cluster, t_abort);
END
$$;
COMMENT ON PROCEDURE admmgt.promote_tenant (text, text, boolean) IS
'Moves schema tenant t_dbname into a database of its own (on its host''s cluster, or t_cluster), made from the template: writes blocked, rows copied with postgres_fdw, counts and checksums compared per table, then the registry switches; the old schema is kept as <schema>_promoted_<id>. An interrupted promotion is undone by the next call (t_abort => true: undo only). docs/schema-tenants.md.';
