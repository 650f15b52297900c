-- admmgt 0.4.0: schema tenants (the proof of concept's t_separatedb = 0). A
-- schema tenant is a schema named lower(dbname) in its cluster's host
-- database (admmgt.schema_hosts); its template is a schema there too, with
-- its own history table (docs/schema-tenants.md).
ALTER TABLE admmgt.vendor_db_settings
ADD COLUMN separatedb integer NOT NULL DEFAULT 1,
ADD CONSTRAINT vendor_db_settings_separatedb_check CHECK (separatedb IN (0, 1));
COMMENT ON COLUMN admmgt.vendor_db_settings.separatedb IS
'1: database per tenant (the database lower(dbname)); 0: schema per tenant (the schema lower(dbname) in the host database of the row''s cluster, admmgt.schema_hosts). A template row with 0 is the template schema of that host.';

CREATE TABLE admmgt.schema_hosts (
    cluster_name text PRIMARY KEY REFERENCES admmgt.clusters (name),
    dbname text NOT NULL DEFAULT 'admmgt_schemas',
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE admmgt.schema_hosts IS
'The database that holds the schema tenants of a cluster (and their template schema), one per cluster. create_schema adds the default row (admmgt_schemas) and creates the database when a cluster has none; register another name (the admin database, for the proof of concept''s layout) before the first create_schema.';
COMMENT ON COLUMN admmgt.schema_hosts.cluster_name IS 'Cluster (admmgt.clusters).';
COMMENT ON COLUMN admmgt.schema_hosts.dbname IS 'Host database on that cluster.';
COMMENT ON COLUMN admmgt.schema_hosts.created_at IS 'When the row was added.';
