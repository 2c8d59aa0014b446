"""Every stage notebook's parameters cell reads the same to papermill as to Python.

papermill checks the parameters it is given against its own line-based reading of the cell and
warns "Passed unknown parameter" for any it could not read. It gives up on a line with more than
one "=", so a comment like `# None = now` hides the parameter on that line (issue 11).
"""

from __future__ import annotations

import ast
import logging

import pytest
from orch_helpers import REPO

pytestmark = pytest.mark.unit

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _python_names(cell_source: str) -> list[str]:
    names = []
    for node in ast.parse(cell_source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_reads_every_parameter(path, caplog):
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    nb = load_notebook_node(str(path))
    cells = [c for c in nb.cells if "parameters" in (c.metadata.get("tags") or [])]
    assert len(cells) == 1, f"{path.name}: one cell tagged parameters"
    with caplog.at_level(logging.WARNING, logger="papermill"):
        inferred = [p.name for p in _infer_parameters(nb)]
    assert inferred == _python_names(cells[0].source), f"{path.name}: papermill misreads the parameters cell"
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
