CREATE OR REPLACE PROCEDURE admmgt._refresh_views(
    t_separatedb integer DEFAULT 1,
    t_scriptid integer DEFAULT null,
    t_drop_orphans boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.refresh_views(
    plpy, separatedb=t_separatedb, scriptid=t_scriptid, drop_orphans=t_drop_orphans,
    raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._refresh_views (integer, integer, boolean, boolean) IS
'The body of admmgt.refresh_views, which calls it once it made sure it runs outside any transaction block; call admmgt.refresh_views instead.';
CREATE OR REPLACE PROCEDURE admmgt.refresh_views(
    t_separatedb integer DEFAULT 1,
    t_scriptid integer DEFAULT null,
    t_drop_orphans boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('refresh_views');
    CALL admmgt._refresh_views(t_separatedb, t_scriptid, t_drop_orphans, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.refresh_views (integer, integer, boolean, boolean) IS
'Copies the template''s views in the synced schemas to every created tenant with updateflag, in dependency order, atomically per tenant and in parallel. Views only in a tenant are reported as orphans and dropped only with t_drop_orphans => true. Definitions are kept in script_view_log. t_separatedb => 0: the template schema''s views, created in each schema tenant''s schema so that they read its tables; a view whose definition still names the template schema is refused by name.';
