"""The hub snapshot (lsap.io.snapshot): what it downloads for the corpus parts, that the parts read
the same documents from it offline, and the errors that name the id and the fix. Local dataset
folders stand in for hub datasets (the same `datasets` code reads both)."""

import json
import math
import os
import subprocess
import sys

import pytest

from lsap.data import sources
from lsap.io import snapshot


def test_slimpajama_at_its_real_file_count_downloads_only_what_the_parts_read():
    """SlimPajama's train split: 59,166 files, ≈ 590 M documents (≈ 9,972 per file); the paper
    config reads 68 M in 16 parts. Each part's files are its own share, read in order, and the
    snapshot holds ≈ 68 / 590 of the files, not all of them (nor 16x that)."""
    n_files, parts, per_file = 59_166, 16, 9_972
    cap = math.ceil(68_000_000 / parts)
    need = snapshot.files_to_read([f"f{i}" for i in range(n_files)], parts, cap, lambda i: per_file)
    assert len(need) == len(set(need)) == parts * math.ceil(cap / per_file)   # 427 files per part
    for part in range(parts):
        mine = [i for i in need if i % parts == part]
        assert mine == list(range(part, part + parts * len(mine), parts))   # a prefix of its share
    assert 0.11 < len(need) / n_files < 0.12
    # fewer files than parts (a small held-out set): every part reads every file, split by rows
    assert snapshot.files_to_read(["a", "b"], parts, 10, lambda i: 1) == [0, 1]


def _dataset(root, n_files=7):
    data = root / "many_files" / "data"
    data.mkdir(parents=True)
    for f in range(n_files):
        (data / f"train-{f:05d}.jsonl").write_text(
            "".join(json.dumps({"text": f"file {f} document {i}: " + "words " * 30}) + "\n" for i in range(4 + f)))
    return data.parent


def test_parts_read_the_same_documents_from_the_snapshot(tmp_path, monkeypatch):
    """7 files, 3 parts, max_docs 9 (3 per part): the snapshot lists the files each part needs,
    and read offline through its manifest every part yields exactly what it yields from the
    dataset itself."""
    src = {"reader": "hf_dataset", "dataset": str(_dataset(tmp_path)), "split": "train", "text_field": "text",
           "max_docs": 9, "name": None}
    entry = snapshot._dataset(src, 3, tmp_path / "cache")
    assert entry["builder"] == "json" and len(entry["files"]) == 7
    # parts 0, 1, 2 start with files 0, 1, 2 of 4, 5, 6 rows: one file each covers 3 documents
    assert [os.path.basename(f) for f in entry["local"]] == [f"train-{i:05d}.jsonl" for i in range(3)]
    direct = [list(sources.read_source(src, p, 3)) for p in range(3)]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"entries": [entry]}))
    monkeypatch.setenv(snapshot.MANIFEST_ENV, str(manifest))
    assert [list(sources.read_source(src, p, 3)) for p in range(3)] == direct
    # a part asked for more than the snapshot holds stops, naming the rule to rerun
    with pytest.raises(snapshot.SnapshotError, match="rerun the hub_snapshot rule"):
        list(sources.read_source({**src, "max_docs": 60}, 0, 3))
    with pytest.raises(snapshot.SnapshotError, match="is not in the hub snapshot"):
        list(sources.read_source({**src, "split": "test"}, 0, 3))


def test_a_loading_script_dataset_stops_the_snapshot_naming_the_id_and_the_fix(tmp_path):
    data = tmp_path / "scripted"
    data.mkdir()
    (data / "scripted.py").write_text("import datasets\nclass Scripted(datasets.GeneratorBasedBuilder):\n    pass\n")
    src = {"reader": "hf_dataset", "dataset": str(data), "split": "train", "text_field": "text"}
    with pytest.raises(snapshot.SnapshotError, match=r"scripted.*does not load.*refs/convert/parquet"):
        snapshot._dataset(src, 1, tmp_path / "cache")


def test_a_job_that_reaches_past_the_snapshot_names_the_id(tmp_path):
    """Under the snapshot's job environment (hub offline, an empty cache) a hub tokenizer the
    snapshot lacks stops the job with its id and the rule to rerun."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"entries": []}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"),
           snapshot.MANIFEST_ENV: str(manifest)}
    code = "from lsap.data import vocab; vocab.build({'kind': 'hub', 'id': 'Qwen/Qwen3-0.6B'})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Qwen/Qwen3-0.6B is not in the hub snapshot" in proc.stderr and "rerun the hub_snapshot rule" in proc.stderr
