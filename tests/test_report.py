"""A table's Markdown stays a table: a '|' inside a column name or a cell is escaped."""

import re

import pandas as pd

from lsap import report


def test_pipes_in_names_and_cells_are_escaped(tmp_path):
    df = pd.DataFrame({"base": ["cl100k"], "|Σ∩|": [99156], "note": ["a|b"]})
    prov = {"config": "x", "config_hash": "0", "git_commit": "0", "assets": {}, "hardware": "cpu", "date": "today"}
    report.write_table(df, tmp_path / "t", "caption", prov)
    rows = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("|")]
    cells = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in rows]
    assert [len(c) for c in cells] == [3, 3, 3]
    assert cells[0][1].strip() == r"\|Σ∩\|" and cells[2][2].strip() == r"a\|b"


def test_every_figure_has_the_caption_snakemake_report_loads():
    """`snakemake --report` fails on the first figure without a caption file; that shows only at
    the end of a full DAG run, so check the names here."""
    from pathlib import Path

    from lsap import tables
    captions = Path(__file__).parents[1] / "workflow" / "report"
    missing = [f for f in tables.FIGURES if not (captions / f"{f}.rst").is_file()]
    assert not missing, f"figures without workflow/report/<name>.rst: {missing}"
