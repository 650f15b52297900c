CREATE OR REPLACE PROCEDURE admmgt._drop_database(
    t_dbname text,
    t_mode text,
    t_terminate boolean DEFAULT false,
    t_archive_name text DEFAULT null,
    t_missing_ok boolean DEFAULT false
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.drop_database(
    plpy, dbname=t_dbname, mode=t_mode, terminate=t_terminate, archive_name=t_archive_name,
    missing_ok=t_missing_ok)
$$;
COMMENT ON PROCEDURE admmgt._drop_database (text, text, boolean, text, boolean) IS
'The body of admmgt.drop_database, which calls it once it made sure it runs outside any transaction block; call admmgt.drop_database instead.';
CREATE OR REPLACE PROCEDURE admmgt.drop_database(
    t_dbname text,
    t_mode text,
    t_terminate boolean DEFAULT false,
    t_archive_name text DEFAULT null,
    t_missing_ok boolean DEFAULT false
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('drop_database');
    CALL admmgt._drop_database(t_dbname, t_mode, t_terminate, t_archive_name, t_missing_ok);
END
$$;
COMMENT ON PROCEDURE admmgt.drop_database (text, text, boolean, text, boolean) IS
'Removes a tenant: marks its registry row deleted, then drops its database (t_mode => ''drop'') or renames it to t_archive_name or <name>_archived_<timestamp> (t_mode => ''archive''). Refuses the template. Ends other sessions only with t_terminate => true. A database already gone from its cluster is refused, unless t_missing_ok => true, which only unregisters it. Refused inside a transaction block.';
