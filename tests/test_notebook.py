"""The quickstart notebook runs top to bottom on the shipped model and shows its plots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lens_positions.checkpoints import list_models

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path):
    assert "bilingual-per-layer" in list_models(), "the notebook needs the shipped model"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "'per-layer', 6" in text
    assert text.count("loss ") == 7 and "held-out accuracy" in text and "bits/byte" in text
    # Every plot is shown: the δ curves and the spaced text, as images in the notebook.
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, [o.get("output_type") for o in outputs]
    # Every cell shows something (no cell ends silently on an assignment).
    assert all(cell.get("outputs") for cell in code), [cell.source[:40] for cell in code if not cell.get("outputs")]
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "IProgress" not in stderr and "missing from font" not in stderr, stderr
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
