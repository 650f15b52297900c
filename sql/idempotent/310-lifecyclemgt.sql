CREATE OR REPLACE PROCEDURE admmgt.lifecyclemgt(
    t_separatedb integer DEFAULT 1,
    t_dry_run boolean DEFAULT false
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.lifecyclemgt(plpy, separatedb=t_separatedb, dry_run=t_dry_run)
$$;
COMMENT ON PROCEDURE admmgt.lifecyclemgt (integer, boolean) IS
'Applies the retention policies of script_tables.lifecycle in the template and every created tenant with updateflag (docs/maintenance.md, Retention): range partitions wholly older than today (UTC, on the fleet''s clock admmgt.fleet_now()) - retention are detached, archived (detached and moved to archive_schema) or dropped, one transaction per database, never the newest child nor a default partition; rows of plain tables older than admmgt.fleet_now() - retention are deleted in batches of batch_size, one short transaction each. A bad policy refuses the whole run before anything changes. t_dry_run => true lists what would go and changes nothing. t_separatedb 1 = database per tenant (0 is not available yet).';
