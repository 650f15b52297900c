CREATE OR REPLACE FUNCTION admmgt.validate_scripts(script_id integer DEFAULT null)
RETURNS TABLE (
    script_id integer,
    table_name text,
    row_id bigint,
    field text,
    applied_value text,
    current_value text,
    problem text
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
return admmgt_plpy.validate_scripts(plpy, script_id=script_id)
$$;
COMMENT ON FUNCTION admmgt.validate_scripts(integer) IS
'Every change to the metadata rows of scripts that reached the template (all of them, or script_id''s), compared with the rows kept when each was applied (admmgt.scripts.applied_rows): one row per changed field (table, row id, field, applied and current value), or per row added or deleted. No rows: every applied script is intact. Reads the admin database only; admmgt verify and admmgt status report these.';
