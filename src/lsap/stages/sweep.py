"""Every student of a config and its evaluation in one process, the headline comparison first
(`python -m lsap sweep`): for a GPU machine, where each process's start (imports, CUDA, loading the
surrogate) costs more than a small student's training, and a time limit may cut the sweep short.

It writes exactly the files the DAG's `student` and `evaluate` jobs write, under the same job keys,
so a `snakemake` run afterwards finds them done and renders the report. The jobs it reads (corpus,
shards, Σ∩, targets caches, selections) come first: `snakemake --omit-from student`. A pair whose
evaluation exists is skipped; a student interrupted mid-run resumes from its checkpoint."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lsap import inputs, keys, layout


def order(cfg: dict) -> list[tuple[str, int]]:
    """(method, seed) pairs: CE and the pre-registered contrast seed by seed, then the rest."""
    s = cfg["students"]
    head = [m for m in dict.fromkeys(["ce", s.get("primary_contrast")]) if m in s["methods"]]
    return ([(m, seed) for seed in s["seeds"] for m in head]
            + [(m, seed) for m in s["methods"] if m not in head for seed in s["seeds"]])


def _benchmark(path: str, seconds: float) -> None:
    """The seconds in Snakemake's benchmark format (its `s` column), where the DAG's job writes them."""
    from lsap.files import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, f"s\n{seconds:.4f}\n")


def run(cfg: dict, log=print) -> list[tuple[str, int]]:
    """Train and evaluate every pair not yet evaluated; returns the pairs it ran."""
    from lsap import evaluate
    from lsap.stages import train as stage_train

    if cfg["compute"]["gpus"] > 1:
        raise SystemExit("lsap sweep runs one process on one device: with compute.gpus > 1 use snakemake")
    name, done = cfg["run"], []
    if not os.path.exists(f"{layout.corpus(name)}/heldout/slices.json"):  # the evaluations read it
        raise SystemExit("lsap sweep: the heldout job's corpus/heldout/ is not there yet: run "
                         "`snakemake --configfile <config> --omit-from student` first")
    for method, seed in order(cfg):
        run_dir, out = layout.student(name, method, seed), layout.evaluation(name, f"{method}-s{seed}")
        if os.path.exists(out):
            continue
        ins = inputs.student(cfg, method, seed)
        missing = [p for v in ins.values() for p in ([v] if isinstance(v, str) else v) if not os.path.exists(p)]
        if missing:
            raise SystemExit(f"lsap sweep: {method} seed {seed} reads {missing[0]}, not there yet: run "
                             f"`snakemake --configfile <config> --omit-from student` first")
        t = time.perf_counter()
        if not os.path.exists(f"{run_dir}/summary.json"):
            stage_train.run_job(cfg, "student", os.path.dirname(ins["tokenizer"]), os.path.dirname(ins["shards"]),
                                run_dir, keys.key(cfg, "student", method=method, seed=seed), method, seed,
                                translation=ins.get("translation"),
                                targets=os.path.dirname(ins["targets"]) if "targets" in ins else None,
                                scores=ins.get("scores"))
            _benchmark(f"{layout.run_dir(name)}/benchmarks/students/{method}-s{seed}.tsv", time.perf_counter() - t)
        t = time.perf_counter()
        evaluate.evaluate_run(run_dir, layout.corpus(name), cfg["evaluation"], out)
        _benchmark(f"{layout.run_dir(name)}/benchmarks/evaluate_{method}-s{seed}.tsv", time.perf_counter() - t)
        log(f"[sweep] {method} seed {seed}: trained and evaluated")
        done.append((method, seed))
    return done
