-- The proof of concept's name (sic): a thin alias of refresh_stored_procedures, which
-- refuses a transaction block under its own name, then runs the same body.
CREATE OR REPLACE PROCEDURE admmgt.refesh_stored_procedures(
    t_separatedb integer DEFAULT 1,
    t_scriptid integer DEFAULT null,
    t_drop_orphans boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('refesh_stored_procedures');
    CALL admmgt._refresh_stored_procedures(t_separatedb, t_scriptid, t_drop_orphans, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.refesh_stored_procedures (integer, integer, boolean, boolean) IS
'The proof of concept''s name (sic) for refresh_stored_procedures.';
