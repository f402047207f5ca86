"""Published numbers match the code: every figure the README and docs/results.md quote for a run is
in that run's committed tables (paper_tables/<run>/), to the digits quoted.

A section "## Numbers of the <run> run" (README.md or docs/results.md) quotes that run; the
README's "## What it concludes so far" quotes the small run; each number in it with two or
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
    out: dict[str, str] = {}
    for doc in ("README.md", "docs/results.md"):
        text = (REPO_ROOT / doc).read_text() + "\n## end\n"
        for m in re.finditer(r"^## Numbers of the (\w[\w-]*) run[^\n]*\n(.*?)(?=^## )", text, flags=re.M | re.S):
            out[m.group(1)] = out.get(m.group(1), "") + m.group(2)
        if doc == "README.md" and (m := re.search(r"^## What it concludes so far\n(.*?)(?=^## )", text, flags=re.M | re.S)):
            out["small"] = out.get("small", "") + m.group(1)
    return out


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


@pytest.mark.parametrize("run", sorted(p.name for p in (REPO_ROOT / "paper_tables").iterdir() if p.is_dir()))
def test_committed_tables_carry_the_current_configs_hash(run):
    """A config edit that would change any job of a run, committed without rerunning it, fails here:
    every committed table names the hash of all its run's job keys (lsap.keys.run_key) and the
    commits that trained its students. (Fails on tables rendered before the hash covered every job.)"""
    from lsap import config, keys

    cfg_path = REPO_ROOT / "config" / f"{run}.yaml"
    assert cfg_path.exists(), f"paper_tables/{run}/ has no config/{run}.yaml: tables of a config that is gone"
    want = keys.run_key(config.load(cfg_path))
    for table in sorted((REPO_ROOT / "paper_tables" / run).glob("*.md")):
        prov = re.search(r"Provenance: config \S+ \((\w+)\), commit (\S+?),(?: students trained at (\S+?),)?",
                         table.read_text())
        assert prov and prov.group(1) == want, (
            f"{table.relative_to(REPO_ROOT)} was rendered for config hash {prov.group(1) if prov else '?'}, the "
            f"current config/{run}.yaml gives {want}: rerun `make run CONFIG=config/{run}.yaml` and `make tables`")
        assert prov.group(3), f"{table.relative_to(REPO_ROOT)} does not name the commit that trained its students"
