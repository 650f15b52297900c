CREATE OR REPLACE PROCEDURE admmgt._rollbackscript(
    t_scriptid integer,
    t_drop_data boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.rollbackscript(
    plpy, script_id=t_scriptid, drop_data=t_drop_data, raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._rollbackscript (integer, boolean, boolean) IS
'The body of admmgt.rollbackscript, which calls it once it made sure it runs outside any transaction block; call admmgt.rollbackscript instead.';
CREATE OR REPLACE PROCEDURE admmgt.rollbackscript(
    t_scriptid integer,
    t_drop_data boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('rollbackscript');
    CALL admmgt._rollbackscript(t_scriptid, t_drop_data, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.rollbackscript (integer, boolean, boolean) IS
'Undoes the latest script applied to the template, in database tenants and schema tenants in one call: the template database, the template schema, the other clusters'' templates, then every updating tenant at that script (database tenants, then schema tenants), atomically per database or schema, recorded in each one''s own history (a schema tenant runs the undo compiled for its schema). Uses admmgt.script_rollback_steps when the script has any (then only a superuser may run it), else the generated inverse; refuses a script with steps that cannot be inverted and no hand-written rollback. Refuses, before touching anything, to drop tables or columns that hold rows (in any database or schema) unless t_drop_data => true (admmgt.plan_rollback lists them). The script goes back to status 0. Refused inside a transaction block. Called again after an interrupted or partly failed rollback of the same script, it finishes it. A failure ends the CALL with an ERROR (SQLSTATE ZA001) after it is recorded, unless t_raise => false.';
