CREATE OR REPLACE FUNCTION admmgt.plan_rollback(script_id integer)
RETURNS TABLE (
    step integer,
    statement text,
    drops text,
    dbname text,
    cluster_name text,
    rows_at_stake bigint,
    error text
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
return admmgt_plpy.plan_rollback(plpy, script_id=script_id)
$$;
COMMENT ON FUNCTION admmgt.plan_rollback(integer) IS
'What rollbackScript(script_id) would run: each statement in order; for a statement that drops a table or a column, one row per database or schema it would touch (the templates, then every updating tenant at the script, of both modes; a schema tenant''s row has its own statement and dbname host.schema) with the rows it would drop (a table''s rows, a column''s non-null values). Reads every such database; changes nothing.';
