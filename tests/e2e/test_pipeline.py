"""End to end: the real Snakemake DAG on the tiny config, in a run folder of its own."""

import shutil
import subprocess

import pytest
from conftest import E2E_RUN, rendered_text

from lsap import REPO_ROOT
from lsap.data import shards, vocab

RUN = E2E_RUN


@pytest.mark.slow
def test_tiny_dag_runs_end_to_end(dag_run):
    out, cmd = dag_run
    for role in ("student", "surrogate"):
        fp = vocab.fingerprint(out / "tokenizers" / role)
        for split in ("train", "validation", "reference"):
            s = shards.open_shard(out / "shards" / role, split, tokenizer=fp)
            assert len(s) > 0
    for log in ("corpus.log", "tokenizer_student.log", "shards_student.log"):
        assert "done in" in (out / "logs" / log).read_text()
    student = vocab.load(out / "tokenizers" / "student").get_vocab()
    surrogate = vocab.load(out / "tokenizers" / "surrogate").get_vocab()
    shared = len(set(student) & set(surrogate))
    assert 0 < shared < min(len(student), len(surrogate))  # partial overlap, by design


@pytest.mark.slow
def test_tiny_dag_tables_figures_and_training(dag_run):
    import json

    from lsap.report.writers import read_table

    out, _ = dag_run
    tables, figures = out / "report" / "tables", out / "report" / "figures"
    t1 = read_table(tables / "table1.csv")
    assert list(t1["model"][:3]) == ["smollm2"] * 3 and "Provenance: config e2e-test" in \
        (tables / "table1.md").read_text()
    ov = read_table(tables / "tokenizer_overlap.csv")
    assert int(ov.loc[(ov.base == "cl100k") & (ov.surrogate == "qwen3"), "|Σ∩|"].iloc[0]) == 99_156
    for ext in (".png", ".pdf"):
        assert (figures / f"table1_counts{ext}").stat().st_size > 10_000
    for name in ("surrogate", "reference", "salt_teacher", "miniplm_teacher"):
        assert json.loads((out / "references" / name / "summary.json").read_text())["steps"] > 0
    ce = json.loads((out / "students" / "ce-s0" / "summary.json").read_text())
    # it trained: tiny's smoke budget (5e11 FLOPs) ends well below where it started
    first = json.loads((out / "students" / "ce-s0" / "log.jsonl").read_text().splitlines()[0])
    assert ce["final_val_loss"] < first["ce"] - 0.5
    # every method ran under the same budget, the surrogate/teacher charged
    for method in ("lsap_a0.01", "lsap_a0.05", "lsap_a0.2", "kd", "salt", "salt_ds", "miniplm"):
        s = json.loads((out / "students" / f"{method}-s0" / "summary.json").read_text())
        assert ce["budget_flops"] * 0.95 < s["flops"] <= ce["budget_flops"]
    lsap = [json.loads((out / "students" / f"lsap_a{a}-s0" / "summary.json").read_text())["mean_targets_per_pos"]
            for a in ("0.01", "0.05", "0.2")]
    assert lsap[0] > lsap[1] > lsap[2] > 0 and lsap[2] <= 4
    [miniplm] = (out / "selection").glob("miniplm-*/scores.json")  # named by its scoring spec
    assert json.loads(miniplm.read_text())["sequences"] > 0 and json.loads(miniplm.read_text())["parts"] == 2
    # fair baselines: the models trained for a method read text no student read ...
    from lsap.data import corpus
    from lsap.io.files import sha256_file

    texts = {s: {t for _, t in corpus.iter_documents(out / "corpus", s)} for s in ("train", "teacher", "reference")}
    assert texts["teacher"] and not texts["teacher"] & texts["train"] and not texts["reference"] & texts["train"]
    for name, split in (("surrogate", "teacher"), ("reference", "reference"), ("salt_teacher", "teacher"),
                        ("miniplm_teacher", "teacher")):
        assert json.loads((out / "references" / name / "summary.json").read_text())["data_split"] == split
    assert ce["data_split"] == "train"
    # ... and SALT_DS scores with its teacher's early checkpoint (SALT §4: 26K of 208K steps)
    [salt_ds] = (out / "selection").glob("salt_ds-*/scores.json")
    early = out / "references" / "salt_teacher" / "checkpoints" / "frac-0.12" / "model.safetensors"
    assert json.loads(salt_ds.read_text())["key"]["models"] == [sha256_file(early)]
    tables = out / "report" / "tables"
    t2 = read_table(tables / "table2.csv")
    assert len(t2) == 10 and t2["Avg (7)"].between(0, 100).all()
    assert t2["TrQA"].isna().all()  # no offline data: n/a
    h2h = read_table(tables / "head_to_head.csv")
    assert h2h["Method"].iloc[0] == "ce" and len(h2h) == 10  # every LSAP row: none chosen on the reported split
    assert (h2h["bpb mean"] > 0).all()
    held = read_table(tables / "heldout.csv").set_index("Model")
    lines = held.loc[["unigram (training text)", "bigram (training text)"], "bpb mean"]
    assert len(held) == 13 and lines.iloc[1] < lines.iloc[0]  # the surrogate, unigram, bigram, 10 methods
    assert held["top-1 %"].between(0, 100).all() and (held["top-5 %"] >= held["top-1 %"]).all()
    assert held.loc["ce", "T"] > 0 and held.loc["ce", "bpb at fitted T"] < held.loc["ce", "bpb mean"] + 0.05
    for name in ("figure2_score_vs_flops", "bpb_vs_flops", "heldout_vs_flops", "targets_vs_alpha"):
        assert (figures / f"{name}.png").stat().st_size > 10_000
    eff = read_table(tables / "effective_compute.csv")
    assert len(eff) == 9 and (eff["seeds"] + eff["seeds beyond CE's curve"] <= 1).all()
    contrasts = read_table(tables / "contrasts.csv")
    # the probe first; the pre-registered lsap_a0.05 − CE tested alone on the probe only
    assert set(contrasts.metric) == {"lsap_minimal_pairs", "bpb_mean", "cal_bpb_mean", "top1_mean", "avg"}
    assert contrasts.primary.sum() == 1 and contrasts[contrasts.primary].metric.iloc[0] == "lsap_minimal_pairs"
    assert (out / "notebook" / "results.html").stat().st_size > 10_000


@pytest.mark.slow
def test_the_executed_notebook_opens_elsewhere_and_writes_nothing(dag_run, tmp_path):
    """The executed copy holds no path of this checkout; the run's folder copied elsewhere, it
    executes again from there, and writes no file."""
    import nbformat
    from nbclient import NotebookClient

    out, _ = dag_run
    text = (out / "notebook" / "results.ipynb").read_text()
    assert str(REPO_ROOT) not in text
    moved = tmp_path / "elsewhere" / out.name
    shutil.copytree(out / "notebook", moved / "notebook")
    shutil.copytree(out / "report", moved / "report")
    before = sorted(p for p in moved.rglob("*"))
    nb = nbformat.read(moved / "notebook" / "results.ipynb", as_version=4)
    where = {"metadata": {"path": str(moved / "notebook")}}  # Jupyter's own start: the notebook's folder
    NotebookClient(nb, timeout=600, kernel_name="python3", resources=where).execute()
    assert sorted(p for p in moved.rglob("*")) == before
    shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                    for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "lsap_a0.05 − CE in minimal-pairs probe accuracy" in shown


@pytest.mark.slow
def test_scattered_scoring_equals_one_job_on_the_embedded_corpus(dag_run, tmp_path):
    """The DAG scored each selection as 2 parts and a gather; one job over the whole pool, with the
    same checkpoints, shards and config, gives the same positions and the same bits."""
    import copy

    import numpy as np

    from lsap import config, keys
    from lsap.data import scores
    from lsap.stages import select as stage_select

    out, _ = dag_run
    cfg = config.load(out / "config.yaml")
    assert cfg["compute"]["scoring_parts"] == 2
    one = copy.deepcopy(cfg)
    one["compute"]["scoring_parts"] = 1
    specs = sorted(p.name for p in (out / "selection").iterdir())
    assert [s.split("-")[0] for s in specs] == ["miniplm", "salt_ds"]
    for spec in specs:
        dest = tmp_path / spec
        stage_select.select_job(one, keys.method_of(cfg, "selection", spec), out / "tokenizers" / "student",
                             out / "shards" / "student", dest, part=0, log=lambda *_: None)
        want, want_pos, _ = scores.load_scores(scores.gather_parts(dest, 1))
        got, got_pos, info = scores.load_scores(out / "selection" / spec / "scores.npy")
        assert info["parts"] == 2 and len(got) > 8
        assert np.array_equal(got_pos, want_pos) and np.array_equal(got, want)


@pytest.mark.slow
def test_tables_are_complete_or_not_written(dag_run, tmp_path):
    """Results copied as a user would (summaries, logs, evaluations, analysis): the set renders; an
    evaluation short of its final checkpoint, or a truncated summary, is refused by name and rule,
    and the tables already there are left exactly as they were."""
    import json
    import shutil

    from lsap import config
    from lsap.report import results, tables

    out, _ = dag_run
    cfg = config.load(out / "config.yaml")
    res = tmp_path / "results"
    shutil.copytree(out / "analysis", res / "analysis")
    shutil.copytree(out / "eval", res / "eval")
    for run in (out / "students").iterdir():
        for f in ("summary.json", "log.jsonl"):
            (res / "students" / run.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(run / f, res / "students" / run.name / f)
    t, f = tmp_path / "tables", tmp_path / "figures"
    tables.render(cfg, res, t, f)
    def files():  # every file, the report's captions/ folder included
        return {p.relative_to(tmp_path): p.read_bytes() for p in sorted(t.rglob("*")) + sorted(f.rglob("*"))
                if p.is_file()}
    before = files()
    assert len(before) > 20
    ev = res / "eval" / "kd-s0.json"
    data = json.loads(ev.read_text())
    data["checkpoints"] = [c for c in data["checkpoints"] if c["fraction"] < 1.0]
    ev.write_text(json.dumps(data))
    with pytest.raises(results.IncompleteResults, match=r"kd-s0.json has no evaluation at checkpoint fraction\(s\) "
                                                        r"\[1.0\].*rule 'evaluate'"):
        tables.render(cfg, res, t, f)
    shutil.copy(out / "eval" / "kd-s0.json", ev)
    summary = res / "students" / "salt-s0" / "summary.json"
    summary.write_text(summary.read_text()[:40])
    with pytest.raises(results.IncompleteResults, match=r"salt-s0/summary.json is truncated or damaged .* rule 'student'"):
        tables.render(cfg, res, t, f)
    after = files()
    assert after == before


@pytest.mark.slow
def test_second_run_has_nothing_to_do(dag_run):
    _, cmd = dag_run
    proc = subprocess.run([*cmd, "-n"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_html_report_holds_the_tables_and_figures(dag_run):
    out, cmd = dag_run
    html = out / "report.html"
    proc = subprocess.run([*cmd, "--report", str(html)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = html.read_text(errors="replace")
    for name in ("contrasts_forest", "figure2_score_vs_flops", "head_to_head", "results.html"):
        assert name in text
    # what a reader sees on opening it, in a real browser: the run's verdict and the contrasts
    import pandas as pd
    seen = rendered_text(html)
    contrasts = pd.read_csv(out / "report" / "tables" / "contrasts.csv")
    primary = contrasts[contrasts.primary].iloc[0]   # on the probe
    assert f"Verdict. {primary.method} − CE in minimal-pairs probe accuracy: {primary['mean']:+.2f}" in seen, seen[:2000]
    shown = contrasts[contrasts.metric.isin(["lsap_minimal_pairs", "bpb_mean", "avg"])]
    for r in shown.itertuples():  # every contrast's cell of those metrics, drawn in the landing page's table
        assert f" {r.mean:+.3f} " in seen
    assert "Smoke test, not evidence" in seen  # the tiny run has one seed
