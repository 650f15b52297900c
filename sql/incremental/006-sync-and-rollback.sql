-- admmgt 0.4.0: what template object sync and rollback record.
ALTER TABLE admmgt.script_proc_log
ADD COLUMN object_kind text,
ADD COLUMN object_name text,
ADD COLUMN run_id bigint;
COMMENT ON COLUMN admmgt.script_proc_log.object_kind IS 'function or procedure.';
COMMENT ON COLUMN admmgt.script_proc_log.object_name IS 'Schema-qualified name with argument types.';
COMMENT ON COLUMN admmgt.script_proc_log.run_id IS 'The run that captured it (admmgt.runs).';

ALTER TABLE admmgt.script_view_log
ADD COLUMN object_kind text,
ADD COLUMN object_name text,
ADD COLUMN run_id bigint;
COMMENT ON COLUMN admmgt.script_view_log.object_kind IS 'view.';
COMMENT ON COLUMN admmgt.script_view_log.object_name IS 'Schema-qualified view name.';
COMMENT ON COLUMN admmgt.script_view_log.run_id IS 'The run that captured it (admmgt.runs).';

CREATE INDEX script_proc_log_scriptid_idx ON admmgt.script_proc_log (scriptid, ispremigration);
CREATE INDEX script_view_log_scriptid_idx ON admmgt.script_view_log (scriptid, ispremigration);

CREATE TABLE admmgt.script_rollback_steps (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scriptid integer NOT NULL REFERENCES admmgt.scripts (id),
    steporder integer NOT NULL,
    sqltext text NOT NULL,
    description text,
    status integer NOT NULL DEFAULT 0,
    created_date timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT script_rollback_steps_status_check CHECK (status BETWEEN 0 AND 3)
);
COMMENT ON TABLE admmgt.script_rollback_steps IS
'Hand-written rollback of a script, run by rollbackScript in steporder inside one transaction per database. When a script has any (status <> 0), they replace the generated rollback entirely.';
COMMENT ON COLUMN admmgt.script_rollback_steps.id IS 'Surrogate key.';
COMMENT ON COLUMN admmgt.script_rollback_steps.scriptid IS 'Script this undoes.';
COMMENT ON COLUMN admmgt.script_rollback_steps.steporder IS 'Order of the statement within the rollback.';
COMMENT ON COLUMN admmgt.script_rollback_steps.sqltext IS 'One SQL statement.';
COMMENT ON COLUMN admmgt.script_rollback_steps.description IS 'What the statement undoes.';
COMMENT ON COLUMN admmgt.script_rollback_steps.status IS '0 designing (ignored), 1 ready, 2 used, 3 failed.';
COMMENT ON COLUMN admmgt.script_rollback_steps.created_date IS 'When the row was drafted.';
