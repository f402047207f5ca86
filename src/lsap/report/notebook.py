"""The notebook stage: the results notebook executed on one run's tables into a portable copy.

The copy's first code cell is the notebook's own parameters cell with this run's values, as paths
relative to the copy's folder (Jupyter starts a kernel in the notebook's folder): the copy opens
wherever the run's folder is copied, with no absolute path of this checkout in it, and executing it
again writes nothing (the notebook only reads). Where those paths are not folders (the .ipynb sent
on its own), the notebook reads `paper_tables/<run>/` and `figures/<run>/` beside it or in a folder
above it, never the installed checkout's. An HTML rendering goes beside it for the report.
"""

from __future__ import annotations

import os
from pathlib import Path

from lsap import REPO_ROOT
from lsap.io.files import atomic_path, write_text

SOURCE = REPO_ROOT / "workflow" / "notebooks" / "results.py.ipynb"
PARAMETERS = "# parameters"  # the first line of the cell the stage replaces


def parameters_cell(run: str, tables: Path, figures: Path, where: Path) -> str:
    rel = lambda p: os.path.relpath(Path(p).resolve(), Path(where).resolve())  # noqa: E731
    return (f"{PARAMETERS} (set by the notebook rule: paths relative to this notebook's folder)\n"
            f"RUN = {run!r}\nTABLES = {rel(tables)!r}\nFIGURES = {rel(figures)!r}\n")


def execute(run: str, tables, figures, out_ipynb, out_html=None, timeout: int = 600) -> Path:
    """Execute the results notebook for `run` into `out_ipynb` (atomically), and its HTML beside it."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    out = Path(out_ipynb)
    out.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(SOURCE, as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "code" and c.source.startswith(PARAMETERS)), None)
    if cell is None:
        raise ValueError(f"{SOURCE} has no code cell starting with '{PARAMETERS}': the stage cannot set the run")
    cell.source = parameters_cell(run, tables, figures, out.parent)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(out.parent)}}).execute()
    with atomic_path(out) as tmp:
        nbformat.write(nb, tmp)
    if out_html:
        html, _ = HTMLExporter().from_notebook_node(nb)
        write_text(out_html, html)
    return out
