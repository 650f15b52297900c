-- admmgt 0.4.0 (issue 13): pre-flight, consent and validation.
-- Procedures that gained an argument: drop the old signature, so that the
-- idempotent files create the one the package ships (an upgrade then equals a
-- fresh install; grants are re-made by 900-grants.sql).
DROP PROCEDURE IF EXISTS admmgt.applyscripts(integer, boolean);
DROP PROCEDURE IF EXISTS admmgt.rollbackscript(integer);
DROP PROCEDURE IF EXISTS admmgt.drop_database(text, text, boolean, text);

ALTER TABLE admmgt.scripts ADD COLUMN applied_rows jsonb;
COMMENT ON COLUMN admmgt.scripts.applied_rows IS
'The script''s metadata rows as they were when it reached the template (canonical jsonb: {"anchor", "rows": {part: [row, ...]}}); admmgt.validate_scripts() compares the rows with it, admmgt.repair_script() accepts or restores them.';
