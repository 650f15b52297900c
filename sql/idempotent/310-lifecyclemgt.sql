CREATE OR REPLACE PROCEDURE admmgt.lifecyclemgt()
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.lifecyclemgt(plpy)
$$;
COMMENT ON PROCEDURE admmgt.lifecyclemgt () IS
'Applies the retention policies of script_tables.lifecycle. Not implemented yet in this release.';
