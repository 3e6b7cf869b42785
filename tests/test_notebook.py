"""notebooks/quickstart.ipynb runs top to bottom (nbclient, a real kernel) in its quick mode."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, shared_levir_dir


def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch) -> None:
    shared = shared_levir_dir()
    if shared is None:
        pytest.skip("the real LEVIR-CC samples (../shared/data/levir-cc-real) are not beside this checkout")
    monkeypatch.setenv("SEMCC_QUICKSTART_QUICK", "1")
    monkeypatch.setenv("SEMCC_QUICKSTART_DIR", str(tmp_path))
    monkeypatch.setenv("SEMCC_SHARED", str(shared.parents[1]))
    monkeypatch.delenv("SEMCC_CKPT", raising=False)
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()  # the kernel inherits env
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "train_000016.png: '" in text and "mask (256, 256)" in text  # real 256-px pairs, 64-px model
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3  # one overlay per real pair
    assert "BLEU-4" in text and "oracle-constant floor" in text
    assert list(tmp_path.rglob("report.md")) and list(tmp_path.rglob("captions.json"))
