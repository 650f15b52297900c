-- admmgt 0.4.0: shared tables whose rows carry a tenant key, protected by
-- row-level security (docs/metadata.md, "Tenant-scoped tables"), and hash
-- partitioning (parttype 'hash', the modulus in partvalue).
ALTER TABLE admmgt.script_tables
ADD COLUMN tenantcolumn text,
ADD COLUMN tenanttype text,
ADD CONSTRAINT script_tables_tenant_check
CHECK ((tenantcolumn IS NULL) = (tenanttype IS NULL));
COMMENT ON COLUMN admmgt.script_tables.tenantcolumn IS
'Tenant key column of a shared table; set with tenanttype. The compiled script makes it NOT NULL and leading in the primary key (or indexes it), enables and forces row-level security and creates the policy <table>_tenant_isolation comparing it with the setting app.current_tenant_id. NULL: not tenant-scoped.';
COMMENT ON COLUMN admmgt.script_tables.tenanttype IS
'Type of tenantcolumn: smallint, integer, bigint, uuid, text or varchar(n). NULL together with tenantcolumn.';

COMMENT ON COLUMN admmgt.script_table_partitions.parttype IS 'range, list or hash.';
COMMENT ON COLUMN admmgt.script_table_partitions.partvalue IS
'range: day, week, month, quarter or year; list: the list value; hash: the modulus (2 to 256), fixed once applied.';
COMMENT ON COLUMN admmgt.script_table_partitions.subparttype IS
'range (under list) or hash (under list or range).';
COMMENT ON COLUMN admmgt.script_table_partitions.subpartvalue IS
'range: day, week, month, quarter or year; hash: the modulus (2 to 256).';
