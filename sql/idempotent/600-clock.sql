-- The fleet's clock (docs/maintenance.md, "The fleet's clock"). Every date
-- admmgt computes -- maintenance horizons, partition names and bounds, the
-- anchor of a new script's first partitions, retention -- comes from
-- admmgt.fleet_now(). Pinning it is owner-only: the two procedures below are
-- not granted to admmgt_operator.
CREATE OR REPLACE FUNCTION admmgt.fleet_now()
RETURNS timestamptz
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT c.pinned_at FROM admmgt._clock AS c), pg_catalog.now())
$$;
COMMENT ON FUNCTION admmgt.fleet_now() IS
'The fleet''s clock: now(), or the time the owner pinned with admmgt._pin_clock. Every admmgt date computation (maintenance, partition bounds, script anchors, retention) uses it.';

-- A new script's created_date anchors its first range partitions, so it takes
-- the fleet's clock too. (The installer drops and re-creates admmgt routines
-- on every upgrade; this default is set again here each time.)
ALTER TABLE admmgt.scripts ALTER COLUMN created_date SET DEFAULT admmgt.fleet_now();

CREATE OR REPLACE PROCEDURE admmgt._pin_clock(t_at timestamptz, t_reason text DEFAULT NULL)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Owner only (no grant): pins the fleet's clock at t_at for every admmgt
    -- date computation until _unpin_clock. Every run says so in a NOTICE.
    IF t_at IS NULL THEN
        RAISE EXCEPTION 'admmgt._pin_clock: t_at must be a time'
        USING HINT = 'CALL admmgt._pin_clock(''2028-02-29 12:00+00''); '
        'or CALL admmgt._unpin_clock(); to use the server''s clock again';
    END IF;
    INSERT INTO admmgt._clock AS c (pinned_at, reason) VALUES (t_at, t_reason)
    ON CONFLICT (singleton) DO UPDATE
    SET pinned_at = excluded.pinned_at, pinned_by = excluded.pinned_by,
        reason = excluded.reason, pinned_on = excluded.pinned_on;
    RAISE NOTICE 'admmgt: the fleet''s clock is pinned at % (UTC); every admmgt date computation uses it until CALL admmgt._unpin_clock();',
    to_char(t_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS');
END
$$;
COMMENT ON PROCEDURE admmgt._pin_clock (timestamptz, text) IS
'Owner only: pins the fleet''s clock (admmgt.fleet_now) at t_at, for tests and rehearsals; every admmgt run then says so in a NOTICE. CALL admmgt._unpin_clock() returns to the server''s clock.';

CREATE OR REPLACE PROCEDURE admmgt._unpin_clock()
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Owner only (no grant): the fleet's clock follows the server's again.
    DELETE FROM admmgt._clock;
    RAISE NOTICE 'admmgt: the fleet''s clock follows the server''s clock';
END
$$;
COMMENT ON PROCEDURE admmgt._unpin_clock () IS
'Owner only: removes the pin set by admmgt._pin_clock; admmgt.fleet_now() is now() again.';
