"""The notebooks run top to bottom with their small CI settings and draw their figures."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))


def test_the_notebooks_are_all_here():
    assert {"01_train_dcgan.ipynb", "02_inpaint.ipynb", "03_export_and_serve.ipynb"} <= set(NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_draws_figures(name, monkeypatch):
    # The kernel inherits the environment: small settings (each notebook reads this).
    monkeypatch.setenv("TFINPAINT_NOTEBOOK_SMOKE", "1")
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    figures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert figures, f"{name} drew no figure"
    assert not [o for o in outputs if o.output_type == "error"]
