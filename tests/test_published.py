"""Published numbers match the code: every figure the README quotes for a run is in that run's
committed tables (paper_tables/<run>/), to the digits quoted.

A README section "## Numbers of the <run> run" quotes that run; each number in it with two or
more decimals must be printed, as quoted, in one of the run's committed Markdown tables (the files
a reader compares it with). Counts, one-decimal percentages and wall-clock times are left out:
they measure the machine or the text, not the run's results. Matching the printed text, not any
rounding of any value, is what makes a stale quote fail: on the tiny tables, 63 of 76 quotes
moved by 3 or 7 in their last digit fail it (35 of 76 would fail a match by rounding).
"""

import re

import pytest

from lsap import REPO_ROOT

PRINTED = re.compile(r"[-+]?\d+\.\d+")
QUOTED = re.compile(r"(?<![\d.,])[-+−]?\d+\.\d{2,}(?![\d.])")


def _sections() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^## Numbers of the (\w[\w-]*) run[^\n]*\n(.*?)(?=^## )",
                                                        text, flags=re.M | re.S)}


def _in_tables(quoted: str, printed: set[str]) -> bool:
    q = quoted.replace("−", "-")
    return bool({q, q.lstrip("+"), "+" + q} & printed)  # '+0.017' in prose, '0.017' or '+0.017' in a table


def test_the_readme_quotes_a_run():
    assert "tiny" in _sections()  # the embedded default's numbers are quoted, so this test checks something


@pytest.mark.parametrize("run", sorted(_sections()))
def test_every_number_the_readme_quotes_is_in_the_runs_tables(run):
    tables = REPO_ROOT / "paper_tables" / run
    files = sorted(tables.glob("*.md"))
    assert files, f"README quotes run {run!r}, but paper_tables/{run}/ has no tables: `make tables CONFIG=...`"
    printed = {v for p in files for v in PRINTED.findall(p.read_text())}
    quoted = QUOTED.findall(_sections()[run])
    assert len(quoted) >= 10, quoted
    missing = [q for q in quoted if not _in_tables(q, printed)]
    assert not missing, (f"README's '## Numbers of the {run} run' quotes {missing}, which no committed table of "
                         f"paper_tables/{run}/ holds: rerun the run and `make tables`, then quote its tables")
