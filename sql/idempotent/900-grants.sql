-- Privileges, run last on every install and upgrade. PUBLIC gets nothing in
-- schema admmgt. admmgt_operator may run the procedures (SECURITY DEFINER),
-- edit the metadata and read the logs; it can neither read nor change the
-- code table, which runs as superuser. See docs/security.md.
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'admmgt_operator') THEN
        CREATE ROLE admmgt_operator NOLOGIN;
        COMMENT ON ROLE admmgt_operator IS
        'May call admmgt procedures and edit admmgt metadata; see admmgt docs/security.md.';
    END IF;
END
$grants$;

REVOKE ALL ON SCHEMA admmgt FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA admmgt FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA admmgt FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA admmgt FROM PUBLIC;

GRANT USAGE ON SCHEMA admmgt TO admmgt_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA admmgt TO admmgt_operator;
REVOKE ALL ON admmgt._code, admmgt._migration FROM admmgt_operator;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA admmgt TO admmgt_operator;
GRANT UPDATE (value) ON admmgt.settings TO admmgt_operator;
-- `admmgt backup` and `admmgt restore` record backups; the view
-- tenant_usage calls its internal function as the caller.
GRANT INSERT, UPDATE ON admmgt.backups TO admmgt_operator;
GRANT EXECUTE ON FUNCTION admmgt._tenant_usage() TO admmgt_operator;

-- The metadata a DBA edits: the registry, the clusters and every script_* row
-- table except the logs admmgt writes. admmgt.scripts by column, below.
DO $grants$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass
        FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = 'admmgt'::regnamespace
          AND c.relkind IN ('r', 'p')
          AND (c.relname IN ('vendor_db_settings', 'clusters')
               OR (c.relname LIKE 'script\_%' AND c.relname NOT LIKE '%\_log'))
    LOOP
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO admmgt_operator', t);
    END LOOP;
END
$grants$;

-- admmgt.scripts: the operator drafts scripts and sets their status, but the
-- columns admmgt records when a script reaches the template (checksum,
-- metadata_checksum, applied_rows, applied_to_template_at) are admmgt's own:
-- with them an operator could pass a new raw SQL step off as one a superuser
-- already approved. REVOKE first: an older install granted the whole table.
REVOKE INSERT, UPDATE ON admmgt.scripts FROM admmgt_operator;
GRANT INSERT (id, description, status, created_date, source_file, source_checksum)
ON admmgt.scripts TO admmgt_operator;
GRANT UPDATE (description, status, created_date, last_error, source_file, source_checksum)
ON admmgt.scripts TO admmgt_operator;
GRANT DELETE ON admmgt.scripts TO admmgt_operator;

-- Public procedures and functions: every routine not named with a leading
-- underscore, except those of an extension installed into the schema.
DO $grants$
DECLARE
    r regprocedure;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = 'admmgt'::regnamespace
          AND p.proname NOT LIKE '\_%'
          AND NOT EXISTS (
              SELECT FROM pg_catalog.pg_depend AS d
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                AND d.objid = p.oid AND d.deptype = 'e'
          )
    LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO admmgt_operator', r);
    END LOOP;
END
$grants$;

-- The public procedures that commit in other databases are PL/pgSQL procedures
-- that run as the caller (so that they can tell a transaction block, see
-- 630-outside-transaction-block.sql) and CALL the SECURITY DEFINER body
-- admmgt._<name>: whoever may call one needs EXECUTE on those two.
DO $grants$
DECLARE
    r regprocedure;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = 'admmgt'::regnamespace
          AND p.prokind = 'p'
          AND (
              p.proname = '_outside_transaction_block'
              OR EXISTS (
                  SELECT FROM pg_catalog.pg_proc AS pub
                  WHERE pub.pronamespace = p.pronamespace
                    AND '_' || pub.proname = p.proname AND pub.prokind = 'p'
              )
          )
    LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO admmgt_operator', r);
    END LOOP;
END
$grants$;
