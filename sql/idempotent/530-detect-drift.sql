CREATE OR REPLACE FUNCTION admmgt.detect_drift(t_dbname text DEFAULT null)
RETURNS TABLE (dbname text, object_kind text, object_name text, difference text, detail text)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
return admmgt_plpy.detect_drift(plpy, dbname=t_dbname)
$$;
COMMENT ON FUNCTION admmgt.detect_drift(text) IS
'Compares every created tenant''s schemas (or only t_dbname''s) with the template''s: tables, columns, constraints, indexes, partitions, functions, views, triggers, sequences, types and extensions. One row per difference (missing, extra, different) or per tenant that could not be reached (unreachable); no rows means no drift. Fingerprints first, in parallel; changes nothing.';
