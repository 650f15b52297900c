-- admmgt 0.1.0: migration objects beyond the proof of concept, read by the DDL
-- compiler (admmgt_plpy._compile, docs/metadata.md): default partitions, named
-- foreign keys, ALTER/DROP COLUMN, indexes and ordered raw SQL steps.
-- Status codes as everywhere: 0 = designing, 1 = ready, 2 = applied, 3 = failed.

ALTER TABLE admmgt.script_tables
ADD COLUMN hasdefault integer NOT NULL DEFAULT 0,
ADD CONSTRAINT script_tables_hasdefault_check CHECK (hasdefault IN (0, 1));
COMMENT ON COLUMN admmgt.script_tables.hasdefault IS
'1 gives a partitioned table a DEFAULT partition <table>_default (and each range-sub-partitioned list child a <table>_<col>_<value>_default), catching rows no other partition accepts.';

ALTER TABLE admmgt.script_table_fkeys
ADD COLUMN constraintname text;
COMMENT ON COLUMN admmgt.script_table_fkeys.constraintname IS
'Name of the foreign key. Rows with the same (schemaname, childtablename, parenttablename, constraintname) make one key; NULL groups by tables alone and names the key <child>_<first column>_fkey.';

ALTER TABLE admmgt.script_procs
ADD COLUMN steporder integer;
COMMENT ON COLUMN admmgt.script_procs.steporder IS
'Position among the script''s statements, shared with script_steps.steporder; NULL runs after the numbered ones, in id order.';

CREATE TABLE admmgt.script_column_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scriptid integer NOT NULL REFERENCES admmgt.scripts (id),
    tableid integer NOT NULL REFERENCES admmgt.script_tables (id),
    columnname text NOT NULL,
    newdatatype text,
    usingexpr text,
    setnullable integer,
    setdefault text,
    dropdefault integer NOT NULL DEFAULT 0,
    dropcolumn integer NOT NULL DEFAULT 0,
    dropintended boolean NOT NULL DEFAULT false,
    status integer NOT NULL DEFAULT 0,
    created_date timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT script_column_changes_setnullable_check CHECK (setnullable IN (0, 1)),
    CONSTRAINT script_column_changes_dropdefault_check CHECK (dropdefault IN (0, 1)),
    CONSTRAINT script_column_changes_dropcolumn_check CHECK (dropcolumn IN (0, 1)),
    CONSTRAINT script_column_changes_status_check CHECK (status BETWEEN 0 AND 3)
);
COMMENT ON TABLE admmgt.script_column_changes IS
'Changes to an existing column: type, nullability, default (one ALTER TABLE per row), or DROP COLUMN. Drops run after all other changes of the script and need dropintended = true.';
COMMENT ON COLUMN admmgt.script_column_changes.id IS 'Surrogate key; changes run in id order.';
COMMENT ON COLUMN admmgt.script_column_changes.scriptid IS 'Script that makes the change.';
COMMENT ON COLUMN admmgt.script_column_changes.tableid IS 'Table of the column (script_tables.id, usually of an earlier script).';
COMMENT ON COLUMN admmgt.script_column_changes.columnname IS 'Column to change (folded to lower case).';
COMMENT ON COLUMN admmgt.script_column_changes.newdatatype IS 'New data type (ALTER COLUMN ... TYPE), validated by the template''s server; NULL keeps the type.';
COMMENT ON COLUMN admmgt.script_column_changes.usingexpr IS 'USING expression converting old values to newdatatype; needs newdatatype.';
COMMENT ON COLUMN admmgt.script_column_changes.setnullable IS 'New nullable flag: 1 DROP NOT NULL, 0 SET NOT NULL, NULL leaves it.';
COMMENT ON COLUMN admmgt.script_column_changes.setdefault IS 'New default expression (SET DEFAULT); NULL leaves it.';
COMMENT ON COLUMN admmgt.script_column_changes.dropdefault IS '1 drops the default (DROP DEFAULT); not together with setdefault.';
COMMENT ON COLUMN admmgt.script_column_changes.dropcolumn IS '1 drops the column and its data; the row may then change nothing else.';
COMMENT ON COLUMN admmgt.script_column_changes.dropintended IS 'Must be true for a drop to compile: the confirmation that the data may go.';
COMMENT ON COLUMN admmgt.script_column_changes.status IS '0 designing, 1 ready, 2 applied, 3 failed.';
COMMENT ON COLUMN admmgt.script_column_changes.created_date IS 'When the row was drafted.';

CREATE TABLE admmgt.script_indexes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scriptid integer NOT NULL REFERENCES admmgt.scripts (id),
    tableid integer NOT NULL REFERENCES admmgt.script_tables (id),
    indexname text,
    columnnames text[] NOT NULL,
    isunique integer NOT NULL DEFAULT 0,
    wherepredicate text,
    method text NOT NULL DEFAULT 'btree',
    -- Quoted only for sqlfluff's parser; to PostgreSQL it is the plain name.
    "concurrently" integer NOT NULL DEFAULT 0,
    status integer NOT NULL DEFAULT 0,
    created_date timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT script_indexes_columnnames_check CHECK (cardinality(columnnames) > 0),
    CONSTRAINT script_indexes_isunique_check CHECK (isunique IN (0, 1)),
    CONSTRAINT script_indexes_method_check
    CHECK (method IN ('btree', 'hash', 'gin', 'gist', 'brin', 'spgist')),
    CONSTRAINT script_indexes_concurrently_check CHECK ("concurrently" IN (0, 1)),
    CONSTRAINT script_indexes_status_check CHECK (status BETWEEN 0 AND 3)
);
COMMENT ON TABLE admmgt.script_indexes IS
'Indexes a script creates (CREATE [UNIQUE] INDEX [CONCURRENTLY] IF NOT EXISTS), after its tables, columns and foreign keys.';
COMMENT ON COLUMN admmgt.script_indexes.id IS 'Surrogate key; indexes are created in id order.';
COMMENT ON COLUMN admmgt.script_indexes.scriptid IS 'Script that creates the index.';
COMMENT ON COLUMN admmgt.script_indexes.tableid IS 'Indexed table (script_tables.id, of this or an earlier script).';
COMMENT ON COLUMN admmgt.script_indexes.indexname IS 'Index name; NULL names it <table>_<columns>_idx.';
COMMENT ON COLUMN admmgt.script_indexes.columnnames IS 'Indexed column names, in key order.';
COMMENT ON COLUMN admmgt.script_indexes.isunique IS '1 for a unique index.';
COMMENT ON COLUMN admmgt.script_indexes.wherepredicate IS 'Predicate of a partial index (the WHERE clause, without WHERE); NULL for a full index.';
COMMENT ON COLUMN admmgt.script_indexes.method IS 'Access method: btree, hash, gin, gist, brin or spgist.';
COMMENT ON COLUMN admmgt.script_indexes.concurrently IS '1 builds it CONCURRENTLY, outside the script''s transaction; not for partitioned tables.';
COMMENT ON COLUMN admmgt.script_indexes.status IS '0 designing, 1 ready, 2 applied, 3 failed.';
COMMENT ON COLUMN admmgt.script_indexes.created_date IS 'When the row was drafted.';

CREATE TABLE admmgt.script_steps (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scriptid integer NOT NULL REFERENCES admmgt.scripts (id),
    steporder integer NOT NULL,
    sqltext text NOT NULL,
    transactional boolean NOT NULL DEFAULT true,
    description text,
    status integer NOT NULL DEFAULT 0,
    created_date timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT script_steps_status_check CHECK (status BETWEEN 0 AND 3)
);
COMMENT ON TABLE admmgt.script_steps IS
'DBA-written statements (views, triggers, backfills) run in every database as the last part of a script, merged with script_procs by steporder. They run with admmgt''s privileges and are the DBA''s responsibility.';
COMMENT ON COLUMN admmgt.script_steps.id IS 'Surrogate key; breaks ties in steporder.';
COMMENT ON COLUMN admmgt.script_steps.scriptid IS 'Script the statement belongs to.';
COMMENT ON COLUMN admmgt.script_steps.steporder IS 'Position among the script''s statements, shared with script_procs.steporder.';
COMMENT ON COLUMN admmgt.script_steps.sqltext IS 'Exactly one SQL statement (a trailing ; is allowed; $$ bodies may contain ;), with no comments outside quotes.';
COMMENT ON COLUMN admmgt.script_steps.transactional IS 'False for statements that cannot run in a transaction (VACUUM, CREATE INDEX CONCURRENTLY); such a statement must be idempotent.';
COMMENT ON COLUMN admmgt.script_steps.description IS 'What the statement does; recorded in the run log with it.';
COMMENT ON COLUMN admmgt.script_steps.status IS '0 designing, 1 ready, 2 applied, 3 failed.';
COMMENT ON COLUMN admmgt.script_steps.created_date IS 'When the row was drafted.';
