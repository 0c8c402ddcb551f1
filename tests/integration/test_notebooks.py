"""Every notebook runs end to end on the tiny models (so the notebooks cannot rot).

Each notebook's first code cell is tagged ``parameters`` and defaults to an embedded model
(``micro-llava``), which is what the documentation build executes and shows; here a cell
inserted right after it overrides those parameters with the tiny random-weight models (the
papermill convention), so the run takes seconds.

The notebooks run with nbclient in one ``python3`` kernel (the venv's ipykernel), so the
heavy imports are paid once; ``%reset -f`` before each notebook gives it an empty namespace,
so a notebook that relies on another's variables or imports fails here. The kernel works in a
temporary directory and inherits this process's environment (offline, with the repo-local
SN_INTERP_CACHE of tests/conftest.py), minus MPLBACKEND so figures render inline.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
RESET = "%reset -f\nimport matplotlib.pyplot as _plt\n_plt.close('all')\ndel _plt"
#: What the tests run instead of each notebook's defaults (only names the cell defines).
TINY = {"MODEL": "tiny-llava", "N": 60, "SHOTS": 3, "TEST_SIZE": 30, "K": 5, "N_PERM": 20,
        "MAX_TEST": 8,
        "N_BOOT": 5}


def parameter_cell(nb) -> int:
    """Index of the cell tagged ``parameters`` (the first code cell)."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert code, "a notebook without code"
    assert "parameters" in nb.cells[code[0]].metadata.get("tags", []), \
        "the first code cell must be tagged 'parameters'"
    return code[0]


def tiny_override(source: str) -> str:
    """Assignments replacing the defaults that ``source`` defines with the TINY values."""
    names = {line.split("=")[0].strip() for line in source.splitlines()
             if "=" in line and not line.startswith((" ", "#"))}
    return "\n".join(f"{k} = {v!r}" for k, v in TINY.items() if k in names)


def test_the_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01-quickstart.ipynb", "02-sav-vs-sn.ipynb",
                                           "03-robustness.ipynb", "04-early-exit.ipynb",
                                           "05-evidence.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name}: clear outputs before committing"
    params = nb.cells[parameter_cell(nb)].source
    assert 'MODEL = "micro-llava"' in params, "notebooks default to an embedded, trained model"
    assert "MODEL" in tiny_override(params)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path_factory.mktemp("notebooks")), env=env)
    yield km
    km.shutdown_kernel(now=True)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel):
    nb = nbformat.read(path, as_version=4)
    at = parameter_cell(nb)
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(tiny_override(nb.cells[at].source)))
    nb.cells.insert(0, nbformat.v4.new_code_cell(RESET))
    NotebookClient(nb, km=kernel, timeout=300).execute()  # raises on a cell error, naming it
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no figure"
