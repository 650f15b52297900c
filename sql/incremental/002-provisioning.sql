-- admmgt 0.2.0: a name may be registered again after its tenant was removed.
-- The proof of concept's unique index on (upper(dbname), deleted) allowed only
-- one removed row per name, so dropping a re-registered tenant failed; live
-- rows stay unique case-insensitively, as before.
DROP INDEX admmgt.vendor_db_settings_dbname_key;
CREATE UNIQUE INDEX vendor_db_settings_dbname_key
ON admmgt.vendor_db_settings (upper(dbname)) WHERE NOT deleted;
