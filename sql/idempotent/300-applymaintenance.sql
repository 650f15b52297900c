CREATE OR REPLACE PROCEDURE admmgt.applymaintenance(t_separatedb integer DEFAULT 1, t_numdays integer DEFAULT 30)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.applymaintenance(plpy, separatedb=t_separatedb, numdays=t_numdays)
$$;
COMMENT ON PROCEDURE admmgt.applymaintenance (integer, integer) IS
'Creates every missing range partition through today + t_numdays in the template and every tenant. Not implemented yet in this release.';
