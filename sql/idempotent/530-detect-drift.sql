-- detect_drift(text) became detect_drift(text, integer) in 0.4.0: drop the
-- old one, or a call with one argument would be ambiguous after an install
-- that does not drop routines first.
DROP FUNCTION IF EXISTS admmgt.detect_drift(text);
CREATE OR REPLACE FUNCTION admmgt.detect_drift(
    t_dbname text DEFAULT null, t_separatedb integer DEFAULT null
)
RETURNS TABLE (dbname text, object_kind text, object_name text, difference text, detail text)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
return admmgt_plpy.detect_drift(plpy, dbname=t_dbname, separatedb=t_separatedb)
$$;
COMMENT ON FUNCTION admmgt.detect_drift(text, integer) IS
'Compares every created tenant''s schemas (or only t_dbname''s) with the template''s: tables, columns, constraints, indexes, partitions, functions, views, triggers, sequences, types and extensions; a schema tenant''s own schema with the template schema in its host database, names mapped (docs/schema-tenants.md). t_separatedb: 1 = database tenants only, 0 = schema tenants only, NULL (the default) = both. One row per difference (missing, extra, different) or per tenant that could not be reached (unreachable); no rows means no drift. Fingerprints first, in parallel; changes nothing.';
