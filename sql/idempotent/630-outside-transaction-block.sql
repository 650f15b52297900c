-- admmgt._outside_transaction_block(operation): refuses, the way CREATE
-- DATABASE does, a CALL made inside a transaction block (BEGIN ... COMMIT, or
-- a query string of several statements). Every public procedure that commits
-- in other databases calls it first: those commits go through dblink, so a
-- caller's ROLLBACK could not undo them.
--
-- How it tells: a procedure is CALLed in a non-atomic context (it may COMMIT)
-- only at top level, outside any transaction block, and only if it is neither
-- SECURITY DEFINER nor has SET options. So the public procedures are small
-- PL/pgSQL procedures without either, which CALL this one (non-atomicity
-- passes down a chain of such CALLs) and then the SECURITY DEFINER body
-- (admmgt._<name>). plpy.commit() here ends the CALL's own, still empty,
-- transaction when that is allowed, and fails when the CALL is atomic.
-- Nothing else has run yet, so the refusal changes nothing.
CREATE OR REPLACE PROCEDURE admmgt._outside_transaction_block(t_operation text)
LANGUAGE plpython3u
AS $$
try:
    plpy.commit()
except plpy.SPIError:
    plpy.error(
        f"admmgt.{t_operation} cannot run inside a transaction block: it commits in every "
        "database it touches as it goes, which a later ROLLBACK could not undo. Nothing was done",
        sqlstate="25001",
        hint=f"CALL admmgt.{t_operation}(...) on its own: outside BEGIN ... COMMIT, as the only "
        "statement of its query string (psql -c runs a string of several statements as one "
        "transaction), and not from a function.",
    )
$$;
COMMENT ON PROCEDURE admmgt._outside_transaction_block (text) IS
'Refuses (SQLSTATE 25001) a CALL of admmgt.<t_operation> made inside a transaction block, before anything changed; every public procedure that commits in other databases calls it first.';
