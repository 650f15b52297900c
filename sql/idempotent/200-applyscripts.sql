CREATE OR REPLACE PROCEDURE admmgt.applyscripts(t_separatedb integer DEFAULT 1, dry_run boolean DEFAULT false)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.applyscripts(plpy, separatedb=t_separatedb, dry_run=dry_run)
$$;
COMMENT ON PROCEDURE admmgt.applyscripts (integer, boolean) IS
'Applies every ready script, template first, then every tenant behind it; dry_run prints the plan. Not implemented yet in this release.';
