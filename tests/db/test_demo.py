"""`admmgt demo` (what `make demo` runs): no Python repr, and it asks first."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from admmgt._demo import run_demo
from admmgt._sandbox import DEFAULT_PORT, Sandbox
from admmgt._shell import make_console
from admmgt.cli import main

ROOT = Path(__file__).resolve().parents[2] / ".sandbox" / "demo-test"
PORT = DEFAULT_PORT + 7
PYTHON_REPR = re.compile(r"\{'[^']*': |\[\d+(, \d+)*\]|\(\d+,\)|Traceback|plpy\.Error")


@pytest.fixture
def demo_box() -> Iterator[Sandbox]:
    box = Sandbox(ROOT, PORT)
    yield box
    box.destroy()


@pytest.mark.timeout(900)
def test_the_demo_prints_no_python_repr_and_asks_before_destroying(demo_box: Sandbox) -> None:
    out = io.StringIO()
    run_demo(ROOT, PORT, make_console(file=out))
    text = out.getvalue()
    assert "8. admmgt status" in text
    assert "every tenant is created, up to date and without errors" in text
    found = PYTHON_REPR.search(text)
    assert found is None, f"{found.group(0)!r} in the demo output"
    # Piped, nothing is wrapped: the longest NOTICE stays on one line.
    assert any(len(line) > 120 and line.startswith("NOTICE:") for line in text.splitlines())

    assert demo_box.is_running()
    refused = CliRunner().invoke(main, ["demo", "--dir", str(ROOT), "--port", str(PORT)])
    assert refused.exit_code == 2, refused.output
    assert f"the sandbox in {ROOT} is running and the demo would destroy it" in refused.output
    assert "hint: pass --yes" in refused.output
    assert demo_box.is_running()
