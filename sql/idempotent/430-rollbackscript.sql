CREATE OR REPLACE PROCEDURE admmgt.rollbackscript(
    t_scriptid integer,
    t_drop_data boolean DEFAULT false
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.rollbackscript(plpy, script_id=t_scriptid, drop_data=t_drop_data)
$$;
COMMENT ON PROCEDURE admmgt.rollbackscript (integer, boolean) IS
'Undoes the latest script applied to the template: template first, then every updating tenant at that script, atomically per database, recorded in each database''s history. Uses admmgt.script_rollback_steps when the script has any (then only a superuser may run it), else the generated inverse; refuses a script with steps that cannot be inverted and no hand-written rollback. Refuses, before touching anything, to drop tables or columns that hold rows unless t_drop_data => true (admmgt.plan_rollback lists them). The script goes back to status 0.';
