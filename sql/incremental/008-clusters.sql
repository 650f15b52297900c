-- admmgt 0.4.0: tenants on several PostgreSQL clusters (docs/clusters.md).
-- A cluster may take its credentials from a user mapping of a dblink_fdw
-- foreign server; its options never hold a password. Each cluster keeps its
-- own copy of the template (CREATE DATABASE ... TEMPLATE works within one
-- cluster), so template rows may share a name across clusters, and a tenant
-- registered without a cluster is placed by create_database.
DO $check$
BEGIN
    IF EXISTS (SELECT FROM admmgt.clusters WHERE options ~* 'password\s*=') THEN
        RAISE EXCEPTION 'admmgt.clusters.options holds a password, which admmgt no longer accepts'
        USING HINT = 'Move it to a passfile or a user mapping (docs/clusters.md), remove it '
        'from options, then upgrade again.';
    END IF;
END
$check$;

ALTER TABLE admmgt.clusters
ADD COLUMN fdw_server text,
ADD COLUMN max_parallel integer,
ADD COLUMN accepts_tenants boolean NOT NULL DEFAULT true,
ADD CONSTRAINT clusters_options_no_password_check
CHECK (options IS NULL OR options !~* 'password\s*='),
ADD CONSTRAINT clusters_max_parallel_check
CHECK (max_parallel IS NULL OR max_parallel >= 1);
COMMENT ON COLUMN admmgt.clusters.fdw_server IS
'Foreign server (dblink_fdw) whose user mapping for the procedures'' owner holds user and password for this cluster; its options (host, port, sslmode, ...) apply too. NULL: no user mapping (passfile, certificate or trust).';
COMMENT ON COLUMN admmgt.clusters.max_parallel IS
'Databases of this cluster worked on at once; NULL means the max_parallel setting.';
COMMENT ON COLUMN admmgt.clusters.accepts_tenants IS
'False keeps create_database from placing new tenants here (tenants that name it are still created).';

ALTER TABLE admmgt.vendor_db_settings
ALTER COLUMN cluster_name DROP NOT NULL,
ALTER COLUMN cluster_name DROP DEFAULT;
COMMENT ON COLUMN admmgt.vendor_db_settings.cluster_name IS
'Cluster holding the database (admmgt.clusters). NULL on a pending tenant: create_database places it on the cluster with the fewest tenants and records the choice. NULL on a template means local.';

-- Tenants stay unique case-insensitively; a template name may repeat, once
-- per cluster (the copies add_cluster makes).
DROP INDEX admmgt.vendor_db_settings_dbname_key;
CREATE UNIQUE INDEX vendor_db_settings_dbname_key
ON admmgt.vendor_db_settings (
    upper(dbname), (CASE WHEN istemplate THEN coalesce(cluster_name, 'local') ELSE '' END)
)
WHERE NOT deleted;
