CREATE OR REPLACE FUNCTION admmgt.check_rls(t_dbname text DEFAULT null)
RETURNS TABLE (dbname text, finding text, object_name text, detail text)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
return admmgt_plpy.check_rls(plpy, dbname=t_dbname)
$$;
COMMENT ON FUNCTION admmgt.check_rls(text) IS
'Audits row-level security in every template and created tenant (or only t_dbname, which may also be any database of the local cluster): tables with a tenant column but no policy (no_policy) or not forced (not_forced), owners or roles with BYPASSRLS (owner_bypasses, bypassrls_role), views without security_invoker (view_not_invoker) and non-LEAKPROOF functions in policies (leaky_policy_function). No rows: nothing found. Changes nothing.';
