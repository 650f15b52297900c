-- admmgt 0.2.0: what the migration engine records about each script.
ALTER TABLE admmgt.scripts
ADD COLUMN checksum text,
ADD COLUMN metadata_checksum text,
ADD COLUMN applied_to_template_at timestamptz,
ADD COLUMN last_error text;
COMMENT ON COLUMN admmgt.scripts.checksum IS
'sha256 of the compiled statements, recorded when the script reached the template; also in each database''s admmgt.script_history.';
COMMENT ON COLUMN admmgt.scripts.metadata_checksum IS
'sha256 of the script''s metadata rows when it reached the template; applyScripts refuses to run while the rows differ from it.';
COMMENT ON COLUMN admmgt.scripts.applied_to_template_at IS
'When the script was applied to the template.';
COMMENT ON COLUMN admmgt.scripts.last_error IS
'Why the script failed validation or failed on the template (status 3).';
