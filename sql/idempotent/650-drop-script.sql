CREATE OR REPLACE PROCEDURE admmgt.drop_script(t_scriptid integer)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.drop_script(plpy, script_id=t_scriptid)
$$;
COMMENT ON PROCEDURE admmgt.drop_script (integer) IS
'Discards a script that never reached the template, with every metadata row of it (tables, columns, steps, ...), in one transaction. Refuses an applied script and one whose tables other scripts refer to.';
