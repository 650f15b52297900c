CREATE OR REPLACE PROCEDURE admmgt.refresh_views(t_separatedb integer DEFAULT 1, t_scriptid integer DEFAULT NULL)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.refresh_views(plpy, separatedb=t_separatedb, scriptid=t_scriptid)
$$;
COMMENT ON PROCEDURE admmgt.refresh_views (integer, integer) IS
'Copies the template''s views to every tenant. Not implemented yet in this release.';
