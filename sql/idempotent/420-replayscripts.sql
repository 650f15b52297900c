CREATE OR REPLACE PROCEDURE admmgt._replayscripts(
    t_dbname text, t_targetscriptid integer, t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.replayscripts(
    plpy, separatedb=1, dbname=t_dbname, targetscriptid=t_targetscriptid, raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._replayscripts (text, integer, boolean) IS
'The body of admmgt.replayscripts, which calls it once it made sure it runs outside any transaction block; call admmgt.replayscripts instead.';
CREATE OR REPLACE PROCEDURE admmgt.replayscripts(
    t_dbname text, t_targetscriptid integer, t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('replayscripts');
    CALL admmgt._replayscripts(t_dbname, t_targetscriptid, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.replayscripts (text, integer, boolean) IS
'Brings one tenant (typically held back with updateflag = false) to t_targetscriptid, a script the template has: every script up to it is applied in order, each atomically, with the routines and views the template had before and after each one. Refused inside a transaction block; a failure ends the CALL with an ERROR (SQLSTATE ZA001) after it is recorded, unless t_raise => false.';

CREATE OR REPLACE PROCEDURE admmgt._replayscripts(
    t_separatedb integer, t_dbname text, t_targetscriptid integer, t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.replayscripts(
    plpy, separatedb=t_separatedb, dbname=t_dbname, targetscriptid=t_targetscriptid,
    raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._replayscripts (integer, text, integer, boolean) IS
'The body of admmgt.replayscripts, which calls it once it made sure it runs outside any transaction block; call admmgt.replayscripts instead.';
CREATE OR REPLACE PROCEDURE admmgt.replayscripts(
    t_separatedb integer, t_dbname text, t_targetscriptid integer, t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('replayscripts');
    CALL admmgt._replayscripts(t_separatedb, t_dbname, t_targetscriptid, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.replayscripts (integer, text, integer, boolean) IS
'The proof of concept''s form of replayScripts(t_dbname, t_targetscriptid). t_separatedb 1: a database tenant; 0: a schema tenant, brought to a script its cluster''s template schema has, each script compiled for its schema (docs/schema-tenants.md).';
