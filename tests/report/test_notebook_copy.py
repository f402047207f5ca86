"""A notebook that travels: the executed results notebook, copied out of its run folder beside
nothing but a run's `paper_tables/<run>/` and `figures/<run>/`, runs there and reads those; and its
§4 shows every arm of the run (the random-target control of config/small.yaml included)."""

import shutil

import pytest

from lsap import REPO_ROOT
from lsap.report import notebook

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts += [str(v) for k, v in out.get("data", {}).items() if k in ("text/plain", "text/html", "text/markdown")]
    return "".join(parts)


def test_executed_copy_runs_beside_only_the_tables_and_figures(tmp_path):
    """Fails on the code before this change: the executed copy's parameters cell points at
    ../report/tables (relative to results/<run>/notebook/), so a copy anywhere else stopped with
    FileNotFoundError; and §4 listed the runs whose name starts with 'lsap', leaving out the random
    control random_a0.05."""
    where = tmp_path / "shared_with_a_colleague"
    for kind in ("paper_tables", "figures"):
        shutil.copytree(REPO_ROOT / kind / "small", where / kind / "small")
    # the copy exactly as the notebook rule writes it: its parameters relative to results/small/notebook/
    run = tmp_path / "results" / "small"
    nb = nbformat.read(notebook.SOURCE, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(notebook.PARAMETERS))
    cell.source = notebook.parameters_cell("small", run / "report" / "tables", run / "report" / "figures",
                                           run / "notebook")
    assert "'../report/tables'" in cell.source  # a path that does not exist beside the copy
    nbformat.write(nb, where / "results.ipynb")
    before = sorted(p.relative_to(where) for p in where.rglob("*"))

    copy = nbformat.read(where / "results.ipynb", as_version=4)
    nbclient.NotebookClient(copy, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(where)}}).execute()

    out = {i: _text(c) for i, c in enumerate(copy.cells) if c.cell_type == "code"}
    setup = next(t for t in out.values() if t.startswith("tables: "))
    assert f"tables: {where / 'paper_tables' / 'small'}" in setup and str(where / "figures" / "small") in setup
    assert str(REPO_ROOT) not in "".join(out.values())  # nothing read from this checkout
    targets = next(t for i, t in out.items() if "targets_per_pos" in copy.cells[i].source and "arms" in
                   copy.cells[i].source)
    for arm in ("lsap_a0.05", "lsap_a0.05_anneal", "random_a0.05", "ce", "kd"):
        assert arm in targets, (arm, targets[:2000])
    assert "no auxiliary targets" in targets  # CE and KD listed, with none
    assert sorted(p.relative_to(where) for p in where.rglob("*")) == before  # it only reads
