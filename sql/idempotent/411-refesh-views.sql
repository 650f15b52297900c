-- The proof of concept's name (sic): a thin alias of refresh_views, which
-- refuses a transaction block under its own name, then runs the same body.
CREATE OR REPLACE PROCEDURE admmgt.refesh_views(
    t_separatedb integer DEFAULT 1,
    t_scriptid integer DEFAULT null,
    t_drop_orphans boolean DEFAULT false,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('refesh_views');
    CALL admmgt._refresh_views(t_separatedb, t_scriptid, t_drop_orphans, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.refesh_views (integer, integer, boolean, boolean) IS
'The proof of concept''s name (sic) for refresh_views.';
