CREATE OR REPLACE PROCEDURE admmgt._applyscripts(
    t_separatedb integer DEFAULT 1,
    dry_run boolean DEFAULT false,
    t_execute boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.applyscripts(
    plpy, separatedb=t_separatedb, dry_run=dry_run, execute=t_execute, raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._applyscripts (integer, boolean, boolean, boolean) IS
'The body of admmgt.applyscripts, which calls it once it made sure it runs outside any transaction block; call admmgt.applyscripts instead.';
CREATE OR REPLACE PROCEDURE admmgt.applyscripts(
    t_separatedb integer DEFAULT 1,
    dry_run boolean DEFAULT false,
    t_execute boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT dry_run THEN
        CALL admmgt._outside_transaction_block('applyscripts');
    END IF;
    CALL admmgt._applyscripts(t_separatedb, dry_run, t_execute, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.applyscripts (integer, boolean, boolean, boolean) IS
'Applies every ready script in id order: validated, then the template, then every created tenant with updateflag that is behind, each script atomically per database, N tenants at a time. t_separatedb 1 = database tenants: the database template, then the database tenants; 0 = schema tenants: the template schema(s), then the schema tenants, each script compiled for the tenant''s schema (docs/schema-tenants.md). A script becomes applied (status 2) once every template and updating tenant of both modes has it. dry_run => true runs every check the real run makes on the template, prints the plan, changes nothing and ends with an ERROR if a script would be refused; with t_execute => true it also runs the scripts in the template inside a transaction that is rolled back (a hard dry run). Refused inside a transaction block (a dry run is not). A failed database or a refused script ends the CALL with an ERROR (SQLSTATE ZA001) after every outcome is recorded; t_raise => false reports them as NOTICEs only.';
