CREATE OR REPLACE PROCEDURE admmgt._applymaintenance(
    t_separatedb integer DEFAULT 1,
    t_numdays integer DEFAULT 30,
    t_move_default_rows boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.applymaintenance(
    plpy, separatedb=t_separatedb, numdays=t_numdays, move_default_rows=t_move_default_rows,
    raise_failure=t_raise,
)
$$;
COMMENT ON PROCEDURE admmgt._applymaintenance (integer, integer, boolean, boolean) IS
'The body of admmgt.applymaintenance, which calls it once it made sure it runs outside any transaction block; call admmgt.applymaintenance instead.';
CREATE OR REPLACE PROCEDURE admmgt.applymaintenance(
    t_separatedb integer DEFAULT 1,
    t_numdays integer DEFAULT 30,
    t_move_default_rows boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('applymaintenance');
    CALL admmgt._applymaintenance(t_separatedb, t_numdays, t_move_default_rows, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.applymaintenance (integer, integer, boolean, boolean) IS
'Creates every missing range partition from the period containing today (UTC, on the fleet''s clock admmgt.fleet_now()) through today + t_numdays, in the template and every created tenant with updateflag, one transaction per database (docs/maintenance.md). Periods that overlap an existing partition, or whose rows sit in a default partition, are reported, not created; t_move_default_rows => true moves such rows into the new partition. t_separatedb 1 = database tenants, 0 = schema tenants (the template schema, then each schema tenant, in its own schema of its host database; docs/schema-tenants.md). Refused inside a transaction block. A failed database ends the CALL with an ERROR (SQLSTATE ZA001) after every outcome is recorded; t_raise => false reports it as a NOTICE only.';
