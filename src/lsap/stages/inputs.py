"""What a student run reads, as paths: its tokenizer and shards, the models this run trains for its
method, the Σ∩ tables, its targets cache and its data selection's scores, each only where its
method reads it (from the registry); and what the surrogate-lines job reads. One source for the
DAG's `student` and `surrogate_lines` rules and the in-process sweep (lsap.operations.sweep).
Torch-free: the Snakefile calls it at parse time."""

from __future__ import annotations

from lsap import keys, methods
from lsap.io import layout


def student(cfg: dict, method: str, seed) -> dict:
    """name -> path (a list for the trained teachers: empty where the teacher is not trained here)."""
    run, m = cfg["run"], cfg["methods"][method]
    ins = {"tokenizer": f"{layout.tokenizer(run, 'student')}/tokenizer.json",
           "shards": f"{layout.shards(run, 'student')}/train.json"}
    for role in methods.teacher_roles(m):
        spec = cfg["students"]["teachers"][role]
        ins[role] = [f"{layout.reference(run, spec['name'])}/summary.json"] if spec["kind"] == "trained" else []
    if methods.OBJECTIVES[m["objective"]].translation:
        ins["translation"] = layout.translation(run)
    if methods.uses_targets_cache(m):
        ins["targets"] = f"{layout.targets(run, keys.targets_id(cfg, method), seed)}/meta.json"
    if m["data"] != "all":
        ins["scores"] = f"{layout.selection(run, keys.selection_id(cfg, method))}/scores.npy"
    return ins


def surrogate_lines(cfg: dict) -> dict:
    """name -> path of what the surrogate-lines job reads (`surrogate`: a list, empty where the
    surrogate is not trained here)."""
    run, spec = cfg["run"], cfg["students"]["teachers"]["surrogate"]
    return {"translation": layout.translation(run), "tokenizer": f"{layout.tokenizer(run, 'student')}/tokenizer.json",
            "corpus": f"{layout.corpus(run)}/manifest.json", "heldout": f"{layout.corpus(run)}/heldout/slices.json",
            "shards": f"{layout.shards(run, 'student')}/train.json",
            "surrogate": [f"{layout.reference(run, spec['name'])}/summary.json"] if spec["kind"] == "trained" else []}
