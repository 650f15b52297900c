CREATE OR REPLACE PROCEDURE admmgt.create_database()
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.create_database(plpy)
$$;
COMMENT ON PROCEDURE admmgt.create_database () IS
'Creates every registered tenant with status 1 from the template (CREATE DATABASE ... TEMPLATE). Not implemented yet in this release.';
