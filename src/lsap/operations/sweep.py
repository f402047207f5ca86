"""Every student of a config and its evaluation in one process, the headline comparison first
(`python -m lsap sweep`): for a GPU machine, where each process's start (imports, CUDA, loading the
surrogate) costs more than a small student's training, and a time limit may cut the sweep short.

It writes exactly the files the DAG's `student` and `evaluate` jobs write, under the same job keys,
so a `snakemake` run afterwards finds them done and renders the report. The jobs it reads (corpus,
shards, Σ∩, selections) come first: `snakemake --omit-from student`. A targets cache it builds itself
before the first pair that reads it, as the DAG's `targets` job would (on the device the cache is
built from the surrogate there: gigabytes no call could carry), and the pair is priced with it. The
surrogate's own lines (the DAG's `surrogate_lines` job: SmolLM2 over the held-out slices, minutes of
a GPU, an hour and more than 24 GB on a laptop) run last, their price kept back from the pairs, so
the report finds them beside the students. A pair whose
evaluation exists is skipped; a student interrupted mid-run resumes from its checkpoint (where the
config saves resume states: gpu-small on the device does not, a discarded machine keeps nothing).

On the device (bench/gpu_check.sh) two variables steer it, since `python -m lsap sweep` takes no
options for them: LSAP_SWEEP_DEADLINE (epoch seconds) stops it before a pair priced beyond the time
left (`pair_prices`), and LSAP_SWEEP_ARCHIVE names the one archive the results leave in, rewritten
after each pair (lsap.operations.sweep_results), so a timeout keeps every pair that finished."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lsap import keys, methods
from lsap.io import layout
from lsap.stages import inputs

# seconds per pair on the GPU machine beyond the student's compute (`lsap plan` at compute.mfu):
# the model built, the surrogate moved to the GPU, the checkpoints written (assumed, not measured)
STUDENT_FIXED_S = 8.0
# per checkpoint: loaded, lm-eval's tasks built, the minimal-pairs probe's requests, bits per byte
# over each domain's held-out slice (assumed; the benchmarks' own requests are priced by `lsap plan`)
EVAL_CHECKPOINT_S = 6.0
ARCHIVE_S = 2.0  # the results archive rewritten after each pair
# a targets cache beyond the surrogate's forward (`lsap plan`): ids and log-probs written and their
# sha256 taken (≈ 0.8 GB per gpu-small seed), read back and checked by each student that reads it
TARGETS_FIXED_S = 10.0
# the surrogate lines beyond their forwards (`lsap plan`): the surrogate loaded again (de-quantised
# once already), the probe's 2,000 requests through lm-eval (≈ 5 ms each outside the model), the
# temperature grid, the predicted costs' float64 arithmetic on the host's cores (assumed, not measured)
LINES_FIXED_S = 40.0


def order(cfg: dict) -> list[tuple[str, int]]:
    """(method, seed) pairs: CE and the pre-registered contrast seed by seed, then the rest."""
    s = cfg["students"]
    head = [m for m in dict.fromkeys([methods.BASELINE, s.get("primary_contrast")]) if m in s["methods"]]
    return ([(m, seed) for seed in s["seeds"] for m in head]
            + [(m, seed) for m in s["methods"] if m not in head for seed in s["seeds"]])


def pair_prices(cfg: dict) -> list[tuple[tuple[str, int], float]]:
    """((method, seed), seconds) in `order`: the student's and its evaluation's GPU time at
    compute.mfu (lsap.operations.forecast) plus the fixed costs above."""
    from lsap.operations import forecast

    gpu = {(j["job"], j.get("method")): (j["gpu_hours"] or 0.0) * 3600 for j in forecast.price(cfg)["jobs"]}
    fixed = STUDENT_FIXED_S + EVAL_CHECKPOINT_S * len(cfg["training"]["checkpoint_fractions"]) + ARCHIVE_S
    # the plan prices each cache once, under the first method of its spec: by folder here
    cache_s = {_cache(cfg, *label.rsplit("-s", 1)): v for (job, label), v in gpu.items() if job == "targets"}
    built, out = set(), []
    for m, s in order(cfg):
        seconds = gpu.get(("student", f"{m}-s{s}"), 0.0) + gpu.get(("evaluate", f"{m}-s{s}"), 0.0) + fixed
        cache = _cache(cfg, m, s)
        if cache and cache not in built:  # the first pair that reads a cache builds it
            built.add(cache)
            seconds += cache_s[cache] + TARGETS_FIXED_S
        out.append(((m, s), seconds))
    return out


def lines_price(cfg: dict) -> float:
    """Seconds of the surrogate-lines job in the sweep's process; 0 where the run has none (no LSAP α)."""
    from lsap.operations import forecast

    rows = [j for j in forecast.price(cfg)["jobs"] if j["job"] == "surrogate_lines"]
    return rows[0]["gpu_hours"] * 3600 + LINES_FIXED_S if rows else 0.0


def lines_reserve(cfg: dict) -> float:
    """The seconds `run` keeps back from the pairs for the surrogate's lines: their price while
    they are still to run, else 0."""
    lines = _lines(cfg)
    return lines_price(cfg) if lines is not None and not os.path.exists(lines) else 0.0


def _lines(cfg: dict) -> str | None:
    """The surrogate-lines JSON the report reads, or None where the run has none."""
    from lsap.config import lsap_alphas

    return layout.analysis(cfg["run"], "surrogate_lines.json") if lsap_alphas(cfg) else None


def _run_lines(cfg: dict, out: str, log) -> None:
    """The DAG's surrogate_lines job in this process (lsap.evaluation.surrogate_lines), with its benchmark."""
    from lsap import models
    from lsap.evaluation.surrogate_lines import surrogate_lines

    name, ins = cfg["run"], inputs.surrogate_lines(cfg)
    models.require_gpu(cfg, "surrogate_lines")
    t = time.perf_counter()
    surrogate_lines(cfg, ins["translation"], os.path.dirname(ins["tokenizer"]), os.path.dirname(ins["corpus"]), out,
                    os.path.dirname(ins["shards"]))
    _benchmark(f"{layout.run_dir(name)}/benchmarks/surrogate_lines.tsv", time.perf_counter() - t)
    log(f"[sweep] the surrogate's lines: {out}")


def _cache(cfg: dict, method: str, seed) -> str | None:
    """The targets cache folder a pair reads (one per targets spec and seed), or None."""
    if not methods.uses_targets_cache(cfg["methods"][method]):
        return None
    return layout.targets(cfg["run"], keys.targets_id(cfg, method), seed)


def _build_cache(cfg: dict, method: str, seed: int, ins: dict, log) -> None:
    """The DAG's targets job for this pair, in this process (lsap.stages.targets), with its benchmark."""
    from lsap.stages import targets

    folder = _cache(cfg, method, seed)
    t = time.perf_counter()
    targets.cache_job(cfg, method, seed, os.path.dirname(ins["tokenizer"]), os.path.dirname(ins["shards"]),
                      ins.get("translation"), folder, log=log)
    _benchmark(f"{layout.run_dir(cfg['run'])}/benchmarks/targets_{keys.targets_id(cfg, method)}-s{seed}.tsv",
               time.perf_counter() - t)


def _benchmark(path: str, seconds: float) -> None:
    """The seconds in Snakemake's benchmark format (its `s` column), where the DAG's job writes them."""
    from lsap.io.files import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, f"s\n{seconds:.4f}\n")


def run(cfg: dict, log=print, deadline: float | None = None, archive: str | None = None) -> list[tuple[str, int]]:
    """Train and evaluate every pair not yet evaluated, the next one only where its price fits
    before `deadline` (epoch seconds; default LSAP_SWEEP_DEADLINE, none: no limit); after each,
    the results into `archive` (default LSAP_SWEEP_ARCHIVE, none: not written). Returns the pairs it ran."""
    from lsap.evaluation import evaluate
    from lsap.operations import sweep_results
    from lsap.stages import train as stage_train

    deadline = deadline if deadline is not None else (float(os.environ["LSAP_SWEEP_DEADLINE"])
                                                      if os.environ.get("LSAP_SWEEP_DEADLINE") else None)
    archive = archive or os.environ.get("LSAP_SWEEP_ARCHIVE") or None
    prices = dict(pair_prices(cfg)) if deadline is not None else {}
    lines = _lines(cfg)
    todo_lines = lines is not None and not os.path.exists(lines)
    reserve = lines_reserve(cfg) if deadline is not None else 0.0  # kept for the lines, run last

    if cfg["compute"]["gpus"] > 1:
        raise SystemExit("lsap sweep runs one process on one device: with compute.gpus > 1 use snakemake")
    name, done = cfg["run"], []
    if not os.path.exists(f"{layout.corpus(name)}/heldout/slices.json"):  # the evaluations read it
        raise SystemExit("lsap sweep: the heldout job's corpus/heldout/ is not there yet: run "
                         "`snakemake --configfile <config> --omit-from student` first")
    missing = [p for v in (inputs.surrogate_lines(cfg).values() if todo_lines else [])
               for p in ([v] if isinstance(v, str) else v) if not os.path.exists(p)]
    if missing:  # known now, not after the pairs
        raise SystemExit(f"lsap sweep: the surrogate's lines read {missing[0]}, not there yet: run "
                         f"`snakemake --configfile <config> --omit-from student` first")
    for method, seed in order(cfg):
        run_dir, out = layout.student(name, method, seed), layout.evaluation(name, f"{method}-s{seed}")
        if os.path.exists(out):
            continue
        if deadline is not None and time.time() + prices[(method, seed)] + reserve > deadline:
            log(f"[sweep] stopped before {method} seed {seed}: priced at {prices[(method, seed)]:.0f} s, "
                f"{max(0.0, deadline - time.time()):.0f} s left ({reserve:.0f} s kept for the surrogate's lines)")
            break
        ins = inputs.student(cfg, method, seed)
        built_here = {ins["targets"]} if "targets" in ins else set()
        missing = [p for v in ins.values() for p in ([v] if isinstance(v, str) else v)
                   if not os.path.exists(p) and p not in built_here]
        if missing:
            raise SystemExit(f"lsap sweep: {method} seed {seed} reads {missing[0]}, not there yet: run "
                             f"`snakemake --configfile <config> --omit-from student` first")
        if built_here and not os.path.exists(ins["targets"]):
            _build_cache(cfg, method, seed, ins, log)
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
        if archive:
            sweep_results.archive(name, archive)
    if todo_lines:
        if deadline is not None and time.time() + reserve > deadline:
            log(f"[sweep] the surrogate's lines not run: priced at {reserve:.0f} s, "
                f"{max(0.0, deadline - time.time()):.0f} s left")
        else:
            _run_lines(cfg, lines, log)
            if archive:
                sweep_results.archive(name, archive)
    return done
