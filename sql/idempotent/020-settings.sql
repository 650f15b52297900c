-- Default settings. A value the DBA changed is kept; names and descriptions
-- follow the package, so an upgrade adds new settings and nothing else.
INSERT INTO admmgt.settings AS s (name, value, description)
VALUES
(
    'max_parallel', 'auto',
    'Databases worked on at once by a fan-out; auto = twice the server''s CPU count, at least 4.'
),
(
    'relays', 'on',
    'on = a fan-out of more than one database at a time works each database through one of up to max_parallel relay sessions into the admin database (application_name admmgt relay), so tenant connections open in parallel; off = the calling session opens every connection itself, one at a time.'
),
(
    'lock_timeout_ms', '500',
    'lock_timeout for remote DDL, in milliseconds.'
),
(
    'wait_timeout_ms', '30000',
    'Longest lock wait, in milliseconds, of any statement admmgt sends outside a script''s transaction: history and catalog reads, sync and drift queries, concurrent index builds. Past it the statement is cancelled and the database is reported retryable.'
),
(
    'lock_retries', '5',
    'Retries of a remote transaction that hit lock_timeout, with exponential backoff and jitter.'
),
(
    'retry_backoff_ms', '200',
    'First backoff between lock retries, in milliseconds; doubles each retry.'
),
(
    'failure_limit', '0',
    'Stop a run after this many failed databases; 0 = never stop early.'
),
(
    'template_busy_timeout_s', '30',
    'How long create_database retries while other sessions use the template, in seconds.'
),
(
    'create_strategy', 'wal_log',
    'CREATE DATABASE STRATEGY for new tenants: wal_log or file_copy.'
),
(
    'tenant_owner', '',
    'Role that owns new tenant databases; empty = the installing superuser.'
),
(
    'tenant_login_role', 'false',
    'true = create_database makes a login role per tenant (named as the database) that may connect to its own database only.'
),
(
    'schema_tenant_roles', 'false',
    'true = create_schema makes a NOLOGIN role per schema tenant (schema_role_pattern) with rights on its own schema''s objects only; create_schema(t_roles => ...) decides per call.'
),
(
    'schema_role_pattern', 'tenant_%s',
    'Name of a schema tenant''s role; %s stands for its schema. Roles are cluster-wide: the pattern must keep the tenants of two hosts apart.'
),
(
    'schema_host_name', 'admmgt_schemas',
    'The host database create_schema creates (and records in admmgt.schema_hosts) on a cluster that has none registered.'
)
ON CONFLICT (name) DO UPDATE SET description = excluded.description;
