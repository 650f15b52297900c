-- admmgt._load_code(): makes `import admmgt_plpy` load the Python stored in
-- admmgt._code, once per backend. Every admmgt procedure calls it first.
-- A backend that already loaded code and now sees a different checksum (an
-- upgrade in another session) stops with "start a new session": one backend
-- never mixes two versions of the code.
CREATE OR REPLACE FUNCTION admmgt._load_code()
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
import sys

installed = plpy.execute("SELECT version, code_checksum FROM admmgt._version")
if not installed:
    plpy.error("admmgt is not installed in this database",
               hint="Run `admmgt install` against this database.")
installed = installed[0]
loaded = GD.get("admmgt_code")
if loaded is not None:
    if loaded["checksum"] != installed["code_checksum"]:
        plpy.error(
            "admmgt was upgraded to %s after this session loaded %s"
            % (installed["version"], loaded["version"]),
            hint="Start a new session (reconnect); this one keeps the old code loaded.")
    return loaded["version"]

import importlib.abc
import importlib.util
import linecache

sources = {
    row["module"]: (row["is_package"], row["source"])
    for row in plpy.execute("SELECT module, is_package, source FROM admmgt._code")
}


class AdmmgtCodeFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds admmgt_plpy modules in admmgt._code (read once, above)."""

    def find_spec(self, name, path=None, target=None):
        if name not in sources:
            return None
        return importlib.util.spec_from_loader(
            name, self, origin="admmgt._code/" + name, is_package=sources[name][0])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = sources[module.__name__][1]
        filename = "admmgt._code/" + module.__name__
        # Lets tracebacks show the failing source line.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)


sys.meta_path.insert(0, AdmmgtCodeFinder())
GD["admmgt_code"] = {"version": installed["version"], "checksum": installed["code_checksum"]}
return installed["version"]
$$;
COMMENT ON FUNCTION admmgt._load_code() IS
'Internal: loads admmgt''s Python code from admmgt._code into this backend once, and refuses to mix versions after an upgrade. Returns the loaded version.';
