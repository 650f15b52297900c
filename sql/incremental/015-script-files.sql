-- admmgt 0.4.0: scripts added from SQL files by `admmgt script add`; registry
-- name errors that show the name.
ALTER TABLE admmgt.scripts
ADD COLUMN source_file text,
ADD COLUMN source_checksum text;
COMMENT ON COLUMN admmgt.scripts.source_file IS
'Name of the file the script was added from (admmgt script add, e.g. V7__add_tier.sql); NULL for a script written as rows.';
COMMENT ON COLUMN admmgt.scripts.source_checksum IS
'sha256 of that file''s text; adding the file again is a no-op when it matches and refused when it differs.';

-- A duplicate tenant name showed the index's CASE WHEN expression as its key.
-- Two partial indexes keep the same rule (tenants unique case-insensitively;
-- a template name once per cluster; a tenant may share the template's name)
-- and make the error show the name: Key (upper(dbname))=(BIGCLIENT).
DROP INDEX admmgt.vendor_db_settings_dbname_key;
CREATE UNIQUE INDEX vendor_db_settings_dbname_key
ON admmgt.vendor_db_settings (upper(dbname))
WHERE NOT deleted AND NOT istemplate;
CREATE UNIQUE INDEX vendor_db_settings_template_key
ON admmgt.vendor_db_settings (upper(dbname), coalesce(cluster_name, 'local'))
WHERE NOT deleted AND istemplate;
