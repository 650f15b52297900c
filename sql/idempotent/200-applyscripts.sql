CREATE OR REPLACE PROCEDURE admmgt.applyscripts(
    t_separatedb integer DEFAULT 1,
    dry_run boolean DEFAULT false,
    t_execute boolean DEFAULT false
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.applyscripts(plpy, separatedb=t_separatedb, dry_run=dry_run, execute=t_execute)
$$;
COMMENT ON PROCEDURE admmgt.applyscripts (integer, boolean, boolean) IS
'Applies every ready script in id order: validated, then the template, then every created tenant with updateflag that is behind, each script atomically per database, N tenants at a time. t_separatedb 1 = database per tenant (0 is not available yet). dry_run => true runs every check the real run makes on the template, prints the plan, changes nothing and ends with an ERROR if a script would be refused; with t_execute => true it also runs the scripts in the template inside a transaction that is rolled back (a hard dry run).';
