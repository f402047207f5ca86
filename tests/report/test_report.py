"""A table's Markdown stays a table: a '|' inside a column name or a cell is escaped."""

import re

import pandas as pd
import pytest

from lsap.report import pages, writers


def test_pipes_in_names_and_cells_are_escaped(tmp_path):
    df = pd.DataFrame({"base": ["cl100k"], "|Σ∩|": [99156], "note": ["a|b"]})
    prov = {"config": "x", "config_hash": "0", "git_commit": "0", "assets": {}, "hardware": "cpu", "date": "today"}
    writers.write_table(df, tmp_path / "t", "caption", prov)
    rows = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("|")]
    cells = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in rows]
    assert [len(c) for c in cells] == [3, 3, 3]
    assert cells[0][1].strip() == r"\|Σ∩\|" and cells[2][2].strip() == r"a\|b"



def _contrasts(seeds: int) -> pd.DataFrame:
    nan = float("nan")
    lo, hi = (-0.2, 0.1) if seeds > 1 else (nan, nan)
    return pd.DataFrame([
        {"method": "lsap_a0.05", "metric": "bpb_mean", "mean": -0.05, "lo": lo, "hi": hi, "p": 0.4, "p_adjusted": 0.4,
         "mde": 0.11, "df": 9, "seeds": seeds, "primary": True, "verdict": "inconclusive"},
        # names a config may hold, each of them markup in RST or Jinja2
        {"method": "kd_ |y| *z* {{z}} {%", "metric": "avg", "mean": 1.5, "lo": lo, "hi": hi, "p": 0.01, "p_adjusted": 0.03,
         "mde": 2.0, "df": 9, "seeds": seeds, "primary": False, "verdict": "n/a (at chance)"}])


@pytest.mark.parametrize("seeds", [1, 4])
def test_the_report_pages_render_as_snakemake_renders_them(tmp_path, seeds):
    """Snakemake passes a caption through Jinja2, then docutils; a run's names must survive both,
    and a one-seed run must say 'smoke test' on the landing page and under every curve."""
    import docutils.core
    import jinja2

    from lsap.report import tables
    cfg = {"run": "r_1", "students": {"seeds": list(range(seeds)), "budget_flops": 3e12,
                                      "primary_contrast": "lsap_a0.05"}}
    prov = {"config": "r_1", "config_hash": "0", "git_commit": "0", "assets": {}, "hardware": "cpu", "date": "today"}
    pages.write(cfg, _contrasts(seeds), "lsap_a0.05 − CE: +0.1", prov, tmp_path, tables.FIGURES)
    written = {p.stem: p.read_text() for p in tmp_path.glob("*.rst")}
    assert set(written) == {*tables.FIGURES, pages.DESCRIPTION}
    html = {}
    for name, text in written.items():
        rst = jinja2.Environment().from_string(text).render(snakemake=None)
        html[name] = docutils.core.publish_parts(rst, writer="html",
                                                 settings_overrides={"halt_level": 2})["html_body"]
    body = html[pages.DESCRIPTION]
    assert "kd_ |y| *z* {{z}} {%".replace("{", "{\u200b") in body.replace("&amp;", "&")  # the name, literally
    assert "<table" in body and "lsap_a0.05" in body and "+0.1" in body
    smoke = "smoke test, not evidence"
    assert (smoke in body.lower()) == (seeds == 1)
    assert ("-0.050 [-0.200, +0.100]" in body) == (seeds == 4)
    assert (smoke in html["bpb_vs_flops"]) == (seeds == 1)
    assert ("4 seeds" in html["bpb_vs_flops"]) == (seeds == 4)


def test_a_table_is_also_a_page_of_its_own(tmp_path):
    df = pd.DataFrame({"method": ["<ce>"], "bpb": [2.8234]})
    prov = {"config": "x", "config_hash": "0", "git_commit": "0", "assets": {}, "hardware": "cpu", "date": "today"}
    writers.write_table(df, tmp_path / "t", "caption & more", prov, notes="n")
    page = (tmp_path / "t.html").read_text()
    assert "<td>&lt;ce&gt;</td><td>2.82</td>" in page and "caption &amp; more" in page and "Provenance: " in page


def test_a_ce_only_run_has_a_report_without_contrasts(tmp_path):
    """methods: [ce] is a valid run: no contrast, yet the landing page, captions and forest plot render."""
    import matplotlib.pyplot as plt

    from lsap.report import plots, results, tables
    df = pd.DataFrame({"method": ["ce", "ce"], "seed": [0, 1], "fraction": [1.0, 1.0], "flops": [1e12, 1e12],
                       "bpb_mean": [2.8, 2.9], "avg": [25.0, 26.0], "avg_se": [1.0, 1.0], "chance": [25.0, 25.0]})
    contrasts = results.contrast_frame(df, None)
    assert contrasts.empty and "metric" in contrasts
    cfg = {"run": "ce_only_", "students": {"seeds": [0, 1], "budget_flops": 1e12, "primary_contrast": None}}
    prov = {"config": "x", "config_hash": "0", "git_commit": "0", "assets": {}, "hardware": "cpu", "date": "today"}
    pages.write(cfg, contrasts, results.verdict_sentence(contrasts, None), prov, tmp_path, tables.FIGURES)
    assert "ce\\_only\\_" in (tmp_path / "description.rst").read_text()  # a run name ending in _ is no link target
    plt.close(plots.figure_contrasts(contrasts))
