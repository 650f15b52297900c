CREATE OR REPLACE PROCEDURE admmgt._lifecyclemgt(
    t_separatedb integer DEFAULT 1,
    t_dry_run boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.lifecyclemgt(plpy, separatedb=t_separatedb, dry_run=t_dry_run, raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._lifecyclemgt (integer, boolean, boolean) IS
'The body of admmgt.lifecyclemgt, which calls it once it made sure it runs outside any transaction block; call admmgt.lifecyclemgt instead.';
CREATE OR REPLACE PROCEDURE admmgt.lifecyclemgt(
    t_separatedb integer DEFAULT 1,
    t_dry_run boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT t_dry_run THEN
        CALL admmgt._outside_transaction_block('lifecyclemgt');
    END IF;
    CALL admmgt._lifecyclemgt(t_separatedb, t_dry_run, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.lifecyclemgt (integer, boolean, boolean) IS
'Applies the retention policies of script_tables.lifecycle in the template and every created tenant with updateflag (docs/maintenance.md, Retention): range partitions wholly older than today (UTC, on the fleet''s clock admmgt.fleet_now()) - retention are detached, archived (detached and moved to archive_schema) or dropped, one transaction per database, never the newest child nor a default partition; rows of plain tables older than admmgt.fleet_now() - retention are deleted in batches of batch_size, one short transaction each. A bad policy refuses the whole run before anything changes. t_dry_run => true lists what would go and changes nothing. t_separatedb 1 = database tenants, 0 = schema tenants (the template schema, then each schema tenant, in its own schema of its host database; docs/schema-tenants.md). An archived partition of a schema tenant goes to its own schema <tenant schema>_<archive_schema>. Refused inside a transaction block. A failed database ends the CALL with an ERROR (SQLSTATE ZA001) after every outcome is recorded; t_raise => false reports it as a NOTICE only.';
