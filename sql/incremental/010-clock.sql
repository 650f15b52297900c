-- admmgt 0.4.0: one clock for every date admmgt computes (docs/maintenance.md,
-- "The fleet's clock"). admmgt.fleet_now() reads it: the pinned time when a
-- row is here, else now(). Only the owner may pin it (no grant to
-- admmgt_operator), so a DBA cannot move the fleet's calendar by accident;
-- tests pin it to run the calendar at the dates they choose.
CREATE TABLE admmgt._clock (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pinned_at timestamptz NOT NULL,
    pinned_by text NOT NULL DEFAULT current_user,
    reason text,
    pinned_on timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE admmgt._clock IS
'The pinned fleet clock: when this one row exists, admmgt.fleet_now() returns pinned_at instead of now(). Owner only; set with admmgt._pin_clock, removed with admmgt._unpin_clock.';
COMMENT ON COLUMN admmgt._clock.pinned_at IS
'The instant every admmgt date computation uses while the clock is pinned.';
COMMENT ON COLUMN admmgt._clock.pinned_by IS 'Role that pinned the clock.';
COMMENT ON COLUMN admmgt._clock.reason IS 'Why the clock is pinned (free text).';
COMMENT ON COLUMN admmgt._clock.pinned_on IS 'Real time at which the clock was pinned.';
