CREATE OR REPLACE PROCEDURE admmgt._create_database(t_raise boolean DEFAULT true)
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT admmgt._load_code()")
import admmgt_plpy
admmgt_plpy.create_database(plpy, raise_failure=t_raise)
$$;
COMMENT ON PROCEDURE admmgt._create_database (boolean) IS
'The body of admmgt.create_database, which calls it once it made sure it runs outside any transaction block; call admmgt.create_database instead.';
CREATE OR REPLACE PROCEDURE admmgt.create_database(t_raise boolean DEFAULT true)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL admmgt._outside_transaction_block('create_database');
    CALL admmgt._create_database(t_raise);
END
$$;
COMMENT ON PROCEDURE admmgt.create_database (boolean) IS
'Creates every registered tenant with status 1 (pending) or 3 (failed earlier) from the template with CREATE DATABASE ... TEMPLATE, in parallel; one NOTICE per tenant and a summary. PUBLIC gets no CONNECT on the new databases.';
