CREATE OR REPLACE PROCEDURE admmgt._drop_schema(
    t_dbname text,
    t_drop_role boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.drop_schema(plpy, dbname=t_dbname, drop_role=t_drop_role)
$$;
COMMENT ON PROCEDURE admmgt._drop_schema (text, boolean) IS
'The body of admmgt.drop_schema, which calls it once it made sure it runs outside any transaction block; call admmgt.drop_schema instead.';
CREATE OR REPLACE PROCEDURE admmgt.drop_schema(
    t_dbname text,
    t_drop_role boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('drop_schema');
    CALL admmgt._drop_schema(t_dbname, t_drop_role);
END
$$;
COMMENT ON PROCEDURE admmgt.drop_schema (text, boolean) IS
'Removes a schema tenant: in one transaction of its host database, renames its schema to <schema>_dropped_<id> (kept with its data, recorded in archived_as) and, with t_drop_role (default), drops the tenant role create_schema made for it; then marks its registry row deleted. Refuses the template schema and database tenants. Refused inside a transaction block.';
