CREATE OR REPLACE PROCEDURE admmgt._refresh_stored_procedures(
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
admmgt_plpy.refresh_stored_procedures(
    plpy, separatedb=t_separatedb, scriptid=t_scriptid, drop_orphans=t_drop_orphans,
    raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._refresh_stored_procedures (integer, integer, boolean, boolean) IS
'The body of admmgt.refresh_stored_procedures, which calls it once it made sure it runs outside any transaction block; call admmgt.refresh_stored_procedures instead.';
CREATE OR REPLACE PROCEDURE admmgt.refresh_stored_procedures(
    t_separatedb integer DEFAULT 1,
    t_scriptid integer DEFAULT null,
    t_drop_orphans boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('refresh_stored_procedures');
    CALL admmgt._refresh_stored_procedures(t_separatedb, t_scriptid, t_drop_orphans, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.refresh_stored_procedures (integer, integer, boolean, boolean) IS
'Copies the template''s functions and procedures (trigger functions and overloads included) in the synced schemas (setting sync_schemas) to every created tenant with updateflag, atomically per tenant and in parallel. Routines only in a tenant are reported as orphans and dropped only with t_drop_orphans => true. Definitions are kept in script_proc_log (scriptid = t_scriptid). t_separatedb => 0: the template schema''s routines to each schema tenant''s schema, SET search_path rewritten for it; a routine whose definition names the template schema, or SECURITY DEFINER without SET search_path, is refused by name before any tenant changes.';
