-- admmgt 0.4.0: per-tenant backups (docs/backup.md). `admmgt backup` records
-- each pg_dump here; `admmgt restore` verifies a backup against the recorded
-- checksums before it restores anything. drop_database(t_mode => 'archive')
-- records the name it renamed the database to, so that an archived tenant
-- can be backed up once.
CREATE TABLE admmgt.backups (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint,
    dbname text NOT NULL,
    database text NOT NULL,
    cluster_name text NOT NULL,
    archived boolean NOT NULL DEFAULT false,
    scriptversion integer,
    path text NOT NULL,
    size_bytes bigint,
    sha256 text,
    files jsonb,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome text NOT NULL DEFAULT 'running',
    message text,
    tool_version text,
    run_by text NOT NULL DEFAULT session_user,
    CONSTRAINT backups_outcome_check
    CHECK (outcome IN ('running', 'ok', 'failed', 'pruned'))
);
CREATE INDEX backups_dbname_idx ON admmgt.backups (lower(dbname), started_at);
COMMENT ON TABLE admmgt.backups IS
'One row per tenant backup taken by `admmgt backup` (pg_dump, directory format). Restore checks the files against sha256 and files before using them.';
COMMENT ON COLUMN admmgt.backups.id IS 'Backup id, given to `admmgt restore --backup`.';
COMMENT ON COLUMN admmgt.backups.tenant_id IS 'vendor_db_settings.id of the tenant when it was backed up.';
COMMENT ON COLUMN admmgt.backups.dbname IS 'Tenant name as registered.';
COMMENT ON COLUMN admmgt.backups.database IS 'Database dumped: the tenant''s, or its archive''s name for an archived tenant.';
COMMENT ON COLUMN admmgt.backups.cluster_name IS 'Cluster that held the database.';
COMMENT ON COLUMN admmgt.backups.archived IS 'True for the one backup of an archived tenant (drop_database t_mode => archive).';
COMMENT ON COLUMN admmgt.backups.scriptversion IS 'Script version per the tenant''s own history, read in the snapshot pg_dump used.';
COMMENT ON COLUMN admmgt.backups.path IS 'Folder of the dump, on the machine that ran `admmgt backup`.';
COMMENT ON COLUMN admmgt.backups.size_bytes IS 'Total size of the dump''s files.';
COMMENT ON COLUMN admmgt.backups.sha256 IS 'sha256 over the sorted lines "<sha256>  <file>" of every file of the dump.';
COMMENT ON COLUMN admmgt.backups.files IS 'Each file of the dump: its sha256 and size, by file name.';
COMMENT ON COLUMN admmgt.backups.started_at IS 'When the dump started.';
COMMENT ON COLUMN admmgt.backups.finished_at IS 'When it ended.';
COMMENT ON COLUMN admmgt.backups.outcome IS 'running, ok, failed, or pruned (files removed by `admmgt backup --prune`).';
COMMENT ON COLUMN admmgt.backups.message IS 'Why it failed (pg_dump''s message), or what pruned it.';
COMMENT ON COLUMN admmgt.backups.tool_version IS 'pg_dump --version of the dump.';
COMMENT ON COLUMN admmgt.backups.run_by IS 'Session user of `admmgt backup`.';

ALTER TABLE admmgt.vendor_db_settings ADD COLUMN archived_as text;
COMMENT ON COLUMN admmgt.vendor_db_settings.archived_as IS
'On a deleted row: the name drop_database(t_mode => ''archive'') gave the database; `admmgt backup --all` backs it up once.';
