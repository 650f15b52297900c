"""The package's import graph has three layers (issue 15, docs/package.md).

1. pure core: no plpy, no dblink -- names, calendar, compiler, metadata, the
   rollback inverse;
2. wire and engine: dblink, transactions, history, the run log, the fleet-run
   engine, settings, locks, the error boundary;
3. operations: everything else (applyScripts, maintenance, sync, drift, ...),
   and above them ``__init__``, whose functions the SQL declarations call.

A module imports only from its own layer or below; a core module neither
takes ``plpy`` nor sends dblink calls; no module uses another module's
private (``_x``) names; no module is longer than MAX_LINES, except
the compiler. The source is read with ``ast``: ``from admmgt_plpy._x import``,
``from admmgt_plpy import _x``, ``import admmgt_plpy._x``, relative imports,
imports inside functions, and ``_x._private`` through an imported module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plpython" / "admmgt_plpy"
NAME = "admmgt_plpy"

CORE = frozenset(
    {
        "_calendar",
        "_compile",
        "_errors",
        "_eta",
        "_hashparts",
        "_metadata",
        "_names",
        "_partition_plan",
        "_partitioning",
        "_rollback",
        "_search_path",
        "_schema_clone",
        "_sqlsplit",
        "_tenancy",
        "_types",
    }
)
WIRE = frozenset(
    {
        "_clock",
        "_conninfo",
        "_entry",
        "_fanout",
        "_fleetrun",
        "_history",
        "_locks",
        "_registry",
        "_relay",
        "_remote",
        "_runguard",
        "_runlog",
        "_settings",
        "_transaction",
        "_transient",
    }
)
TOP = "__init__"
LAYERS = {1: "pure core", 2: "wire and engine", 3: "operations", 4: "entry points"}

MAX_LINES = 600
LONG_ALLOWED = frozenset({"_compile"})  # the compiler, while it stays one cohesive module


def layer(module: str) -> int:
    """The module's layer; a module split out of another and named after it
    (``_compile_base`` from ``_compile``) is in that one's layer."""
    if module == TOP:
        return 4
    for known, number in ((CORE, 1), (WIRE, 2)):
        if module in known or any(module.startswith(f"{m}_") for m in known):
            return number
    return 3


@dataclass(frozen=True)
class Use:
    """``importer`` uses module ``module`` (and its name ``name``, if one)."""

    importer: str
    module: str
    name: str | None


def uses(importer: str, tree: ast.AST, modules: frozenset[str]) -> list[Use]:
    """Every package module (and name from it) that ``importer``'s source uses."""
    found: list[Use] = []
    aliases: dict[str, str] = {}  # local name -> package module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == NAME and len(parts) == 2 and parts[1] in modules:
                    found.append(Use(importer, parts[1], None))
                    if a.asname:
                        aliases[a.asname] = parts[1]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                continue  # beyond the package
            base = (node.module or "").split(".") if node.module else []
            if node.level == 0:
                if not base or base[0] != NAME:
                    continue
                base = base[1:]
            if len(base) > 1:
                continue
            if base:  # from admmgt_plpy._x import a, b / from ._x import a, b
                module = base[0]
                if module not in modules:
                    continue
                for a in node.names:
                    found.append(Use(importer, module, a.name))
            else:  # from admmgt_plpy import _x / from . import _x
                for a in node.names:
                    if a.name in modules:
                        found.append(Use(importer, a.name, None))
                        aliases[a.asname or a.name] = a.name
                    else:
                        found.append(Use(importer, TOP, a.name))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(Use(importer, aliases[node.value.id], node.attr))
    return found


def impurities(tree: ast.AST) -> set[str]:
    """What makes a module impure: it takes or names ``plpy``, or sends dblink calls."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg in {"plpy", "dblink"}:
            found.add(f"takes {node.arg}")
        elif isinstance(node, ast.Name) and node.id in {"plpy", "Plpy", "Dblink"}:
            found.add(f"uses {node.id}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "dblink_" in node.value
        ):
            found.add("calls dblink")
    return found


def private(name: str | None) -> bool:
    return name is not None and name.startswith("_") and not name.startswith("__")


def violations(package: Path) -> set[str]:
    """Every breach of the three rules in ``package`` (a directory of modules)."""
    files = {p.stem: p for p in sorted(package.glob("*.py"))}
    modules = frozenset(files)
    found: set[str] = set()
    for module, path in files.items():
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > MAX_LINES and module not in LONG_ALLOWED:
            found.add(f"size: {path.name} is over {MAX_LINES} lines")
        tree = ast.parse(source, str(path))
        if layer(module) == 1:
            found |= {f"pure: {module} {what}" for what in impurities(tree)}
        for use in uses(module, tree, modules):
            if use.module == module:
                continue
            if layer(use.module) > layer(module):
                found.add(
                    f"layer: {module} ({LAYERS[layer(module)]}) imports"
                    f" {use.module} ({LAYERS[layer(use.module)]})"
                )
            if private(use.name):
                found.add(f"private: {module} uses {use.module}.{use.name}")
    return found


def test_the_package_keeps_its_layers() -> None:
    new = violations(PACKAGE)
    assert not new, (
        "new breaches of the package's layers (docs/package.md): import from your own"
        " layer or below, make a name public before another module uses it, split a"
        " module that grew past the limit. A new pure module belongs in CORE, a new"
        f" engine module in WIRE (tests/unit/test_layers.py): {sorted(new)}"
    )


def test_the_layers_name_modules_that_exist_or_are_planned() -> None:
    """A typo in CORE or WIRE would put a module in the wrong layer unseen."""
    planned = {"_metadata", "_registry", "_fleetrun"}  # issue 15's new modules
    existing = {p.stem for p in PACKAGE.glob("*.py")}
    assert not (CORE | WIRE) - existing - planned
    assert not CORE & WIRE


# The checker itself, on packages written here: each rule can fail.


def write(tmp_path: Path, **modules: str) -> Path:
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    "source",
    [
        "from admmgt_plpy._apply import plan\n",
        "from admmgt_plpy import _apply\n",
        "import admmgt_plpy._apply\n",
        "import admmgt_plpy._apply as apply\n",
        "from ._apply import plan\n",
        "from . import _apply\n",
        "def f():\n    from admmgt_plpy._apply import plan\n    return plan\n",
    ],
)
def test_a_lower_layer_importing_a_higher_one_is_found(tmp_path: Path, source: str) -> None:
    package = write(tmp_path, _names=source, _apply="def plan(): pass\n")
    assert violations(package) == {"layer: _names (pure core) imports _apply (operations)"}


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("def f(plpy, x):\n    return x\n", "takes plpy"),
        ("def f(x):\n    import plpy\n    return plpy.execute(x)\n", "uses plpy"),
        ("Q = 'SELECT dblink_exec(%s, %s)'\n", "calls dblink"),
    ],
)
def test_plpy_or_dblink_in_the_core_is_found(tmp_path: Path, source: str, what: str) -> None:
    package = write(tmp_path, _calendar=source, _sync=source)  # _sync may
    assert violations(package) == {f"pure: _calendar {what}"}


def test_a_module_split_out_of_another_keeps_its_layer(tmp_path: Path) -> None:
    package = write(
        tmp_path,
        _compile="from admmgt_plpy._compile_base import Step\n",
        _compile_base="from admmgt_plpy._names import quote_ident\nclass Step: pass\n",
        _compile_io="def load(plpy): pass\n",
        _names="",
        _applied="",
        _runlog_batch="from admmgt_plpy import _applied\n",
    )
    assert violations(package) == {
        "pure: _compile_io takes plpy",
        "layer: _runlog_batch (wire and engine) imports _applied (operations)",
    }


def test_an_engine_module_importing_an_operation_is_found(tmp_path: Path) -> None:
    package = write(tmp_path, _runlog="from admmgt_plpy import _sync\n", _sync="")
    assert violations(package) == {"layer: _runlog (wire and engine) imports _sync (operations)"}


def test_core_importing_the_entry_points_is_found(tmp_path: Path) -> None:
    package = write(tmp_path, _types="from admmgt_plpy import entry\n", __init__="")
    assert violations(package) == {"layer: _types (pure core) imports __init__ (entry points)"}


def test_importing_down_or_sideways_is_allowed(tmp_path: Path) -> None:
    package = write(
        tmp_path,
        __init__="from admmgt_plpy import _sync\nfrom admmgt_plpy._entry import entry\n",
        _sync="from admmgt_plpy._apply import plan\nfrom admmgt_plpy._remote import Fanout\n",
        _apply="from admmgt_plpy._names import quote_ident\ndef plan(): pass\n",
        _entry="from admmgt_plpy._errors import AdmmgtError\n",
        _remote="import json\nfrom admmgt_plpy import _transaction\n",
        _transaction="",
        _names="from admmgt_plpy._errors import AdmmgtError\nfrom . import _errors\n",
        _errors="class AdmmgtError(Exception): pass\n",
    )
    assert violations(package) == set()


@pytest.mark.parametrize(
    "source",
    [
        "from admmgt_plpy._apply import _migrate\n",
        "from ._apply import _migrate\n",
        "from admmgt_plpy import _apply\n\ndef f():\n    return _apply._migrate\n",
        "import admmgt_plpy._apply as a\n\nx = a._migrate\n",
    ],
)
def test_another_modules_private_name_is_found(tmp_path: Path, source: str) -> None:
    package = write(tmp_path, _clusters=source, _apply="def _migrate(): pass\n")
    assert violations(package) == {"private: _clusters uses _apply._migrate"}


def test_a_modules_own_private_names_and_dunders_are_fine(tmp_path: Path) -> None:
    package = write(
        tmp_path,
        _apply="def _migrate(): pass\nx = _migrate\n",
        _sync="from admmgt_plpy import _apply\nprint(_apply.__name__)\n",
    )
    assert violations(package) == set()


def test_a_long_module_is_found_but_the_compiler_may_be_long(tmp_path: Path) -> None:
    long = "x = 1\n" * (MAX_LINES + 1)
    package = write(tmp_path, _apply=long, _compile=long, _sync="x = 1\n" * MAX_LINES)
    assert violations(package) == {f"size: _apply.py is over {MAX_LINES} lines"}


def test_a_breach_fails_the_real_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    package = write(tmp_path, _names="from admmgt_plpy import _sync\n", _sync="")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGE", package)
    with pytest.raises(AssertionError, match="_names"):
        test_the_package_keeps_its_layers()
