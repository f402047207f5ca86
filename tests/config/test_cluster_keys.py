"""The paper run's first day on a cluster (issue [3/5]): an edit under `evaluation:` reruns only the
evaluation side (N3); the login node's work priced and bounded, and the snapshot downloading only
what the jobs read, several files at a time (N5/N11); a training job's saves and start-up in its
price (N8). Each test's docstring says how the code before the fix failed it."""

import gzip
import json
import math
import re
import subprocess
import sys

import pytest
from test_key_leaves import _edited, _keys, _leaves, _mutations

from lsap import REPO_ROOT, config, keys
from lsap.data import sources
from lsap.io import snapshot
from lsap.operations import data_costs, forecast, forecast_table
from lsap.training import plan

PAPER = REPO_ROOT / "config" / "paper.yaml"
# the jobs an evaluation setting may reach: the evaluations, the lines drawn beside them (held-out
# bits per byte of the n-grams and of the surrogate), lm-eval's task snapshot and the report
# (and the held-out slices they score, where keys.reads knows that job)
EVALUATION_SIDE = {"evaluate", "reference_lines", "surrogate_lines", "hub_snapshot_eval", "heldout", "report"}


def _all_keys(cfg):
    out = {**_keys(cfg), ("hub_snapshot",): keys.key(cfg, "hub_snapshot"),
           ("hub_snapshot_eval",): keys.key(cfg, "hub_snapshot_eval")}
    try:
        out[("heldout",)] = keys.key(cfg, "heldout")
    except KeyError:
        pass
    return out


@pytest.fixture(scope="module")
def paper():
    return config.load(PAPER)


def test_every_evaluation_leaf_changes_only_evaluation_side_keys(paper):
    """Before the fix the hub snapshot's key held the whole `evaluation:` section (and keys.reads
    knew no `hub_snapshot` job): changing evaluation.limit re-snapshotted, and every corpus part,
    shard, reference, student and scoring part followed its manifest."""
    base, judged, wrong = _all_keys(paper), 0, []
    for path, value in _leaves(paper):
        if path[0] != "evaluation":
            continue
        for new in _mutations(path, value):
            try:
                edited = _edited(paper, path, new)
            except config.ConfigError:
                continue
            got = _all_keys(edited)
            changed = {job[0] for job in got if got[job] != base.get(job)}
            judged += 1
            if not changed or not changed <= EVALUATION_SIDE:
                wrong.append(f"{'/'.join(map(str, path))} -> {new!r}: changed {sorted(changed)}")
            break
    assert not wrong, "\n".join(wrong)
    assert judged >= 8, judged   # source, tasks, limit, metric, batch_size, bootstrap_iters, bpb_*...


def _downstream(dot: str, rule: str) -> set[str]:
    names = dict(re.findall(r'(\d+)\[label = "(\w+)"', dot))
    edges = [(names[a], names[b]) for a, b in re.findall(r"(\d+) -> (\d+)", dot)]
    out, todo = set(), [rule]
    while todo:
        r = todo.pop()
        for a, b in edges:
            if a == r and b not in out:
                out.add(b)
                todo.append(b)
    return out


def test_only_the_evaluations_read_lm_evals_snapshot():
    """The DAG's wiring (Snakemake's own rule graph of paper.yaml): before the fix one hub_snapshot
    fed the corpus parts and so every job; now lm-eval's tasks are their own snapshot, which only
    the evaluations, the report and the notebook follow."""
    dot = subprocess.run([sys.executable, "-m", "snakemake", "--rulegraph", "--configfile", str(PAPER)],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert _downstream(dot, "hub_snapshot_eval") == {"evaluate", "report", "notebook", "all"}
    assert "hub_snapshot_eval" not in _downstream(dot, "hub_snapshot") and "corpus_part" in _downstream(dot, "hub_snapshot")


def test_a_tokenizers_repository_downloads_no_weights(paper):
    """OLMo-2-0425-1B is paper.yaml's student tokenizer only: before the fix the snapshot fetched its
    whole repository (*.safetensors) for a tokenizer. Qwen3-0.6B is also the surrogate: weights."""
    got = {repo: patterns for _, repo, _, patterns in snapshot._downloads(paper) if patterns}
    assert got["allenai/OLMo-2-0425-1B"] == snapshot.TOKENIZER_FILES and "*.safetensors" not in got[
        "allenai/OLMo-2-0425-1B"]
    assert got["Qwen/Qwen3-0.6B"] == snapshot.MODEL_FILES and got["allenai/OLMo-2-1124-7B"] == snapshot.MODEL_FILES
    assert len([d for d in snapshot._downloads(paper) if d[1] == "Qwen/Qwen3-0.6B"]) == 1   # one download


def _heldout(root, n_files=5, rows=6, compress=False):
    data = root / "heldout" / "data"
    data.mkdir(parents=True)
    for f in range(n_files):
        text = "".join(json.dumps({"text": f"held-out file {f} row {i}: " + "words " * 20}) + "\n" for i in range(rows))
        if compress:
            (data / f"test-{f:05d}.jsonl.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (data / f"test-{f:05d}.jsonl").write_text(text + "\n")   # a blank last line is no row
    return data.parent


def test_a_heldout_set_of_few_files_fetches_only_the_files_its_documents_are_in(tmp_path, monkeypatch):
    """A held-out set with fewer files than parts (fineweb-edu's sample-10BT: 14 files of ~2 GB, 16
    parts, 5,000 documents): before the fix the snapshot took every file. 5 files of 6 rows, 8
    parts, max_docs 16: the parts split the first 16 rows, in 3 files; read offline through the
    manifest every part yields what it yields from the dataset itself."""
    src = {"reader": "hf_dataset", "dataset": str(_heldout(tmp_path)), "split": "test", "text_field": "text",
           "max_docs": 16, "name": None}
    entry = snapshot._dataset(src, 8, tmp_path / "cache")
    assert len(entry["files"]) == 5 and len(entry["local"]) == 3
    direct = [list(sources.read_source(src, p, 8)) for p in range(8)]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"entries": [entry]}))
    monkeypatch.setenv(snapshot.MANIFEST_ENV, str(manifest))
    assert [list(sources.read_source(src, p, 8)) for p in range(8)] == direct and sum(map(len, direct)) == 16


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "parquet"])
def test_rows_are_counted_without_parsing_as_datasets_counts_them(tmp_path, fmt):
    """The snapshot counted every downloaded file's rows by streaming it through `datasets`
    (hours for SlimPajama's 6,800 files); the fast count must equal that count."""
    import datasets

    folder = _heldout(tmp_path, n_files=1, rows=37, compress=fmt == "jsonl.gz")
    path = next((folder / "data").iterdir())
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": [f"row {i}" for i in range(37)]}), path := folder / "data" / "x.parquet")
    builder = "parquet" if fmt == "parquet" else "json"
    ds = datasets.load_dataset(builder, data_files={"test": [str(path)]}, split="test", streaming=True)
    assert snapshot.count_rows(str(path), builder, "test") == sum(1 for _ in ds) == 37


def test_parallel_rounds_fetch_what_the_sequential_walk_reads():
    """SlimPajama at its real size (59,166 files, ~9,972 rows each, 16 parts, 68 M documents): the
    rounds of parallel fetches count every file the parts read, and waste few others."""
    n, parts, cap = 59_166, 16, math.ceil(68_000_000 / 16)
    rows = lambda i: 9_900 + (i * 7919) % 150   # noqa: E731 - files of slightly different sizes
    counts = snapshot._count_needed(n, parts, cap, rows, workers=4)
    need = snapshot.files_to_read([str(i) for i in range(n)], parts, cap, counts.__getitem__)
    assert set(need) <= set(counts) and len(counts) - len(need) <= parts
    assert need == snapshot.files_to_read([str(i) for i in range(n)], parts, cap, rows)


@pytest.fixture(scope="module")
def priced(paper):
    return forecast.price(paper)


def test_every_local_rule_is_priced_under_the_stated_bound(priced):
    """Before the fix `lsap plan` priced no local rule (the hub snapshot, the gathers): the login
    node's work at the paper's size was unknown. Every rule of the Snakefile's `localrules:` but
    `all` and `asset` (registry downloads shared by every run, priced by their manifest) is a row."""
    block = re.search(r"^localrules:\n((?:    .*\n)+)", (REPO_ROOT / "Snakefile").read_text(), re.M).group(1)
    local = set(re.findall(r"^\s+(\w+),", block, re.M)) - {"all", "asset"}
    rows = {j["job"]: j for j in priced["jobs"] if j["slurm"].get("local")}
    assert set(rows) == local
    assert all(j["cpu_hours"] * 60 <= data_costs.LOCAL_CPU_MIN for j in rows.values())
    assert not [w for w in priced["warnings"] if w.startswith("local rule")]
    assert f"bound {data_costs.LOCAL_CPU_MIN:g}" in forecast_table.render(priced)


def test_corpus_and_shards_parts_are_priced_from_their_own_loops(paper, priced):
    """Each part reads ceil(max_docs / parts) documents of each source (the parts' loop), not the
    total over parts; before the fix the corpus parts had no size of their own to price."""
    want = sum(math.ceil(s["max_docs"] / 16) * s["tokens_per_doc"] for d in paper["corpus"]["domains"].values()
               for s in d["sources"] if s.get("tokens_per_doc"))
    assert [j["tokens"] for j in priced["jobs"] if j["job"] == "corpus_part"] == [pytest.approx(want)] * 16


def test_a_student_is_priced_with_its_saves_and_start_up(paper, priced):
    """N8: 186 GPU-h on 8 GPUs is ~23.3 h of steps; before the fix the plan added nothing for the
    ~46 resume states (18 GB each) nor the start-up, against a 24-h limit, and did not warn."""
    ce = next(j for j in priced["jobs"] if j["job"] == "student" and j["method"] == "ce-s0")
    assert 46 <= ce["saves"] <= 48 and plan.FIXED_COSTS["resume_bytes_per_param"] == 12
    assert ce["wall_hours"] == pytest.approx(ce["gpu_hours"] / 8 + ce["save_hours"] + ce["startup_hours"])
    assert 0.1 < ce["save_hours"] < 0.5 and ce["startup_hours"] > 0
    assert any(w.startswith("student ce-s0") and "MFU >=" in w for w in priced["warnings"])   # ~20 min to spare
    slow = forecast.price(config.validate({**paper, "compute": {**paper["compute"], "mfu": 0.3}}))
    assert any(w.startswith("student ce-s0") and "beyond one submission" in w for w in slow["warnings"])
