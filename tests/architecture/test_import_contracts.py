"""The floors hold: the import-linter contracts in .importlinter pass, and a stage-to-stage import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.unit


def _lint(lib: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_the_contracts_hold():
    res = _lint(REPO / "lib", REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "broken" not in res.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(("module", "line"), [
    ("backup/steps.py", "import cxr.warehouse.etl  # a stage importing another stage"),
    ("stores/layout.py", "import cxr.ingest.pipeline  # an adapter importing a stage"),
    ("ingest/decode.py", "import torch  # the serving path importing torch"),
])
def test_a_forbidden_import_breaks_them(tmp_path, module, line):
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "lib" / "cxr", lib / "cxr", ignore=shutil.ignore_patterns("__pycache__"))
    target = lib / "cxr" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    res = _lint(lib, tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout, res.stdout[-3000:]
