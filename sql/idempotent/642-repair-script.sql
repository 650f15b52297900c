CREATE OR REPLACE PROCEDURE admmgt.repair_script(t_scriptid integer, t_action text)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.repair_script(plpy, script_id=t_scriptid, action=t_action)
$$;
COMMENT ON PROCEDURE admmgt.repair_script (integer, text) IS
'Reconciles an applied script whose metadata rows changed (see admmgt.validate_scripts): t_action => ''restore'' puts the rows kept when it was applied back; t_action => ''accept'' takes the rows as they are now as the applied ones (only a superuser may, for a script with raw SQL steps or procedure calls). Changes admmgt metadata only, never a database.';
