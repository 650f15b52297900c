-- admmgt._relay_lost(reason): the error of a relay session whose tenant
-- connection could not take a statement (docs/concepts.md, "Relays"). A relay
-- is a dblink session the fan-out opens into this database so that tenant
-- connections open in parallel; it sends a job's statement with
-- dblink_send_query, which only returns 0 when the connection is gone. This
-- turns that 0 into the error the calling session reports, instead of an
-- empty result that would read as success. Owner only (no grant).
CREATE OR REPLACE FUNCTION admmgt._relay_lost(t_reason text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'could not send the statement: the connection is lost'
        USING ERRCODE = '08006', DETAIL = coalesce(t_reason, '');
END
$$;
COMMENT ON FUNCTION admmgt._relay_lost(text) IS
'Raises 08006 "could not send the statement: the connection is lost" with libpq''s reason: a relay session''s tenant connection refused a statement. Internal to the fan-out.';
