-- admmgt 0.4.0: scripts added from SQL files by `admmgt script add`.
ALTER TABLE admmgt.scripts
ADD COLUMN source_file text,
ADD COLUMN source_checksum text;
COMMENT ON COLUMN admmgt.scripts.source_file IS
'Name of the file the script was added from (admmgt script add, e.g. V7__add_tier.sql); NULL for a script written as rows.';
COMMENT ON COLUMN admmgt.scripts.source_checksum IS
'sha256 of that file''s text; adding the file again is a no-op when it matches and refused when it differs.';
