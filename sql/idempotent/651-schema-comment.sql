COMMENT ON SCHEMA admmgt IS
'admmgt: control plane of a database-per-tenant fleet. Tables: the registry (vendor_db_settings), scripts and their metadata, runs and run_log. Procedures: create_database, applyScripts, applyMaintenance, rollbackScript, ... (\df+ admmgt.*). Docs: docs/index.md of the admmgt package.';
