CREATE OR REPLACE PROCEDURE admmgt.refesh_stored_procedures(t_separatedb integer DEFAULT 1, t_scriptid integer DEFAULT NULL)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.refresh_stored_procedures(plpy, separatedb=t_separatedb, scriptid=t_scriptid)
$$;
COMMENT ON PROCEDURE admmgt.refesh_stored_procedures (integer, integer) IS
'The proof of concept''s name (sic) for refresh_stored_procedures.';
