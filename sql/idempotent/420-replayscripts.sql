CREATE OR REPLACE PROCEDURE admmgt.replayscripts(t_dbname text, t_targetscriptid integer)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.replayscripts(plpy, separatedb=1, dbname=t_dbname, targetscriptid=t_targetscriptid)
$$;
COMMENT ON PROCEDURE admmgt.replayscripts (text, integer) IS
'Brings a held-back tenant to a target script version. Not implemented yet in this release.';

CREATE OR REPLACE PROCEDURE admmgt.replayscripts(
    t_separatedb integer, t_dbname text, t_targetscriptid integer
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.replayscripts(
    plpy, separatedb=t_separatedb, dbname=t_dbname, targetscriptid=t_targetscriptid)
$$;
COMMENT ON PROCEDURE admmgt.replayscripts (integer, text, integer) IS
'The proof of concept''s form of replayScripts(t_dbname, t_targetscriptid).';
