CREATE OR REPLACE FUNCTION admmgt.plan_script(script_id integer)
RETURNS TABLE (step integer, kind text, target text, transactional boolean, statement text)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
return admmgt_plpy.plan_script(plpy, script_id=script_id)
$$;
COMMENT ON FUNCTION admmgt.plan_script(integer) IS
'The statements a script compiles to, in the order applyScripts runs them. Changes nothing.';
