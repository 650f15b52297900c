CREATE OR REPLACE PROCEDURE admmgt._baseline(t_dbname text, t_version integer)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.baseline(plpy, dbname=t_dbname, version=t_version)
$$;
COMMENT ON PROCEDURE admmgt._baseline (text, integer) IS
'The body of admmgt.baseline, which calls it once it made sure it runs outside any transaction block; call admmgt.baseline instead.';
CREATE OR REPLACE PROCEDURE admmgt.baseline(t_dbname text, t_version integer)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('baseline');
    CALL admmgt._baseline(t_dbname, t_version);
END
$$;
COMMENT ON PROCEDURE admmgt.baseline (text, integer) IS
'Records in a registered database''s own history that it is at script t_version, running nothing (for databases built before admmgt managed them); for a schema tenant, in its schema''s admmgt_history.';
