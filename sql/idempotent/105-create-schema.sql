CREATE OR REPLACE PROCEDURE admmgt._create_schema(
    t_roles boolean DEFAULT null,
    t_raise boolean DEFAULT true
)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.create_schema(plpy, roles=t_roles, raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._create_schema (boolean, boolean) IS
'The body of admmgt.create_schema, which calls it once it made sure it runs outside any transaction block; call admmgt.create_schema instead.';
CREATE OR REPLACE PROCEDURE admmgt.create_schema(
    t_roles boolean DEFAULT null,
    t_raise boolean DEFAULT true
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('create_schema');
    CALL admmgt._create_schema(t_roles, t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.create_schema (boolean, boolean) IS
'Creates what is pending of schema tenants (status 1, or 3 to retry): the host database of each cluster (admmgt.schema_hosts; made as setting schema_host_name when a cluster has none), each template schema (istemplate, separatedb 0: the schema and its history table), and each tenant schema as a clone of its cluster''s template schema at its current version, with its history, one transaction per tenant, in parallel. t_roles (default: setting schema_tenant_roles) also makes a NOLOGIN tenant role per schema (setting schema_role_pattern) with rights on its own objects only. Refused inside a transaction block.';
