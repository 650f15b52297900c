CREATE OR REPLACE PROCEDURE admmgt._refesh_stored_procedures(
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
COMMENT ON PROCEDURE admmgt._refesh_stored_procedures (integer, integer, boolean, boolean) IS
'The body of admmgt.refesh_stored_procedures, which calls it once it made sure it runs outside any transaction block; call admmgt.refesh_stored_procedures instead.';
CREATE OR REPLACE PROCEDURE admmgt.refesh_stored_procedures(
    t_separatedb integer DEFAULT 1,
    t_scriptid integer DEFAULT null,
    t_drop_orphans boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('refesh_stored_procedures');
    CALL admmgt._refesh_stored_procedures(t_separatedb, t_scriptid, t_drop_orphans, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.refesh_stored_procedures (integer, integer, boolean, boolean) IS
'The proof of concept''s name (sic) for refresh_stored_procedures.';
