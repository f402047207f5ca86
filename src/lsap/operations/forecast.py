"""`python -m lsap plan --config C [--json]`: every job of a config's DAG priced before launch.

Per job: FLOPs, tokens read, epochs over the data it reads, GPU-hours (or CPU-hours for the data
jobs), a peak-memory estimate and the Slurm resources the profile requests; warnings for a run
that repeats data and for a job whose runtime limit cannot hold one resume interval. Nothing is
trained or loaded: shapes come from configs (hub ids out of reach: config/hub_models.yaml).

Sources of each figure (the output names them):
  tokens of the data   the shard manifests where the shards stage ran, else `tokens_per_doc` ×
                       `max_docs` of each hub source (an estimate) split by corpus.splits
  GPU time             FLOPs / (compute.peak_tflops × compute.mfu): an assumed utilisation until a
                       GPU measurement exists (bench/gpu_check.sh)
  CPU time (data)      tokens / the tokens/s per core bench/data_prep.py measured (bench/data_prep-cpu.json)
  memory               16 B per trained parameter (fp32 weights, gradients, AdamW moments) +
                       34·b·s·h·L bytes of bf16 activations (Korthikanti et al. 2022, flash attention)
                       + bf16 teacher weights + fp32 teacher logits of one micro-batch + 2 GB runtime
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from lsap import REPO_ROOT, keys, methods
from lsap.config_types import RunConfig
from lsap.data import shards
from lsap.data.corpus import SPLITS, part_name
from lsap.io import layout
from lsap.models import flops
from lsap.operations import data_costs
from lsap.training import budget, plan

PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
DATA_BENCH = REPO_ROOT / "bench" / "data_prep-cpu.json"
# the surrogate-lines job's forwards over the held-out slices: its own bits per byte, its proposals
# at each α, its distribution at the predicted costs' positions (lsap.evaluation.surrogate_lines)
LINES_PASSES = 3


def vocab_size(cfg: RunConfig, role: str) -> int:
    from lsap import models
    from lsap.data import vocab

    built = REPO_ROOT / layout.tokenizer(cfg["run"], role)
    spec = cfg["tokenizers"][role]
    if (built / "tokenizer.json").exists():
        return len(vocab.load(built))
    if spec["kind"] == "bpe":
        return spec["vocab_size"]
    if spec["kind"] == "hub" and not Path(spec["id"]).is_dir():
        entry = models.hub_table().get(spec["id"])
        if entry is None:
            raise ValueError(f"tokenizers.{role}: hub id {spec['id']} is not in config/hub_models.yaml and the "
                             f"tokenizer stage has not run: add its vocabulary size there")
        return entry.get("tokenizer_vocab", entry["vocab_size"])
    return len(vocab.build(spec, None))


def data_tokens(cfg: RunConfig) -> dict[str, dict]:
    """{split: {tokens, source}} of the student's shards: measured, or estimated from the config."""
    out = {}
    for split in SPLITS:
        path = REPO_ROOT / layout.shards(cfg["run"], "student") / f"{split}.json"
        if path.exists():
            out[split] = {"tokens": json.loads(path.read_text())["n_tokens"], "source": "shard manifest"}
    if len(out) == len(SPLITS):
        return out
    c, total = cfg["corpus"], dict.fromkeys(SPLITS, 0.0)
    for spec in c["domains"].values():
        for src in spec["sources"]:
            if not spec["train"] and not src.get("tokens_per_doc"):
                continue  # a held-out domain: read by evaluation only
            if not (src.get("tokens_per_doc") and src.get("max_docs")):
                return {s: {"tokens": None, "source": "unknown until the shards stage ran (give hub sources "
                                                      "max_docs and tokens_per_doc)"} for s in total}
            n = src["max_docs"] * src["tokens_per_doc"]
            if not spec["train"]:
                total["validation"] += n
                continue
            for split in ("validation", "reference", "teacher"):
                total[split] += n * c["splits"][split]
            total["train"] += n * (1 - sum(c["splits"].values()))
    return {s: {"tokens": round(t), "source": "estimate: max_docs × tokens_per_doc"} for s, t in total.items()}


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


TRAINING_RULES = ("student", "reference_model")
# the Snakefile's localrules (tests/e2e/test_slurm_requests.py holds the two equal)
LOCAL_RULES = ("hub_snapshot", "hub_snapshot_eval", "corpus", "shards", "tokenizer", "translation", "overlap",
               "selection", "report", "notebook")  # the jobs run under torchrun on compute.gpus GPUs


def slurm_resources(rule: str, cfg: RunConfig, profile: dict) -> dict:
    """What the Slurm profile requests for a rule's job (None: a local rule, run where snakemake runs)."""
    if rule in LOCAL_RULES:
        return {"local": True}
    res = {**profile["default-resources"], **profile.get("set-resources", {}).get(rule, {})}
    if "cpus_per_gpu" in res:  # training jobs take compute.gpus GPUs (DDP), the others one
        res["gpus"] = cfg["compute"]["gpus"] if rule in TRAINING_RULES else min(1, cfg["compute"]["gpus"])
    return {k: v for k, v in res.items() if k in ("slurm_partition", "runtime", "mem_mb", "cpus_per_task",
                                                   "cpus_per_gpu", "mem_mb_per_cpu", "gpus", "nodes")}


def memory_gb(train_spec: dict | None, train_params: int, cfg: RunConfig, teacher_params: int = 0,
              teacher_vocab: int = 0) -> float:
    t, seq = cfg["training"], cfg["shards"]["seq_len"]
    b = 16 * train_params
    if train_spec:
        b += 34 * t["micro_batch"] * seq * train_spec["hidden"] * train_spec["layers"]
    b += 2 * teacher_params + 4 * t["micro_batch"] * seq * teacher_vocab
    return round(b / 1e9 + 2, 1)


FIELDS = ("job", "method", "steps", "tokens", "flops", "epochs", "gpu_hours", "cpu_hours", "memory_gb", "disk_gb",
          "slurm")
# bytes a job leaves on disk: a trained model's checkpoints (safetensors, one per checkpoint fraction:
# fp32 on CPU, bf16 on GPU) and its resume state (fp32 weights + AdamW's two moments, two generations); a token
# of shards (uint16/uint32) or of corpus text (about 4.4 bytes, bench/data_prep); a cached
# candidate (int32 id + float32 log-prob)
CHECKPOINT_BYTES, RESUME_BYTES, CANDIDATE_BYTES = {"cpu": 4, "gpu": 2}, 2 * 12, 8


def _row(job: str, method: str, **kw) -> dict:
    return {f: kw.get(f) for f in FIELDS} | {"job": job, "method": method} | kw


def _teacher_shape(cfg: RunConfig, role: str) -> tuple[int, int, int]:
    """(2N FLOPs/token, parameters, vocabulary) of a students.teachers source."""
    src = cfg["students"]["teachers"][role]
    if src["kind"] == "trained":
        ref = cfg["references"][src["name"]]
        v = vocab_size(cfg, ref["tokenizer"])
        fpt = flops.forward_flops_per_token(ref["model"], v, cfg["shards"]["seq_len"])
        return fpt, fpt // 2, v
    from lsap import models

    hf = models.source_config(cfg, src)
    fpt = flops.source_flops_per_token(cfg, src)
    return fpt, fpt // 2, hf.vocab_size


def _table1_fpt(cfg: RunConfig, m: dict) -> int:
    if m["kind"] == "trained":
        ref = cfg["references"][m["name"]]
        return flops.forward_flops_per_token(ref["model"], vocab_size(cfg, ref["tokenizer"]), cfg["shards"]["seq_len"])
    return flops.source_flops_per_token(cfg, m)


def _scoring_parts(cfg: RunConfig, mname: str, pool: int | None, flops_per_token: float, rate: float, profile: dict,
                   warnings: list) -> list[dict]:
    """The selection_part jobs of a method's scoring (the batch-aligned ranges of lsap.data.scores), and
    a warning naming compute.scoring_parts when the longest part would not finish in one submission:
    a part is written at its end, so a retry redoes it whole."""
    from lsap.data.scores import part_ranges

    seq, parts, res = cfg["shards"]["seq_len"], cfg["compute"]["scoring_parts"], slurm_resources("selection_part", cfg,
                                                                                                    profile)
    ranges = part_ranges(pool, cfg["training"]["micro_batch"], parts) if pool is not None else [None] * parts
    rows = [_row("selection_part", f"{mname} part {i}", tokens=(r[1] - r[0]) * seq if r else None,
                 flops=(r[1] - r[0]) * seq * flops_per_token if r else None,
                 gpu_hours=(r[1] - r[0]) * seq * flops_per_token / rate / 3600 if r else None, slurm=res)
            for i, r in enumerate(ranges)]
    longest = max((r["gpu_hours"] or 0) for r in rows)
    if "runtime" in res and longest * 60 > res["runtime"]:
        need = math.ceil(sum(r["gpu_hours"] for r in rows) * 60 / res["runtime"] * 1.25)
        warnings.append(f"selection {mname}: a scoring part takes ~{longest:.1f} h, beyond one submission of "
                        f"{res['runtime']} min: raise compute.scoring_parts to about {need} (now {parts})")
    return rows


def _fixed_costs(row: dict, job: str, label: str, train_min: float, params: int, steps: int, cfg: RunConfig,
                 res: dict, warnings: list) -> None:
    """Adds the saves and start-up to a training row (`wall_hours`), and warns when one submission
    cannot hold them all, or holds them with less than 10 % to spare (naming the MFU it needs)."""
    saves, save_s, start_s = plan.fixed_seconds(cfg, train_min, params, steps)
    total, rate = train_min + (save_s + start_s) / 60, plan.FIXED_COSTS["write_bytes_per_s"]
    row.update(saves=saves, save_hours=save_s / 3600, startup_hours=start_s / 3600, wall_hours=total / 60)
    lim = res.get("runtime")
    if not lim or total <= lim * 0.9:
        return
    need = cfg["compute"]["mfu"] * train_min / max(1e-9, lim - (save_s + start_s) / 60)
    what = (f"{job} {label}: ~{train_min / 60:.1f} h of training + {saves} saves (~{save_s / 60:.0f} min at "
            f"{rate / 1e9:g} GB/s) + ~{start_s / 60:.0f} min start-up = {total / 60:.1f} h")
    warnings.append(f"{what}, beyond one submission of {lim} min: it ends at the time limit and resumes in "
                    f"another (a second start-up). Raise the runtime or compute.gpus" if total > lim else
                    f"{what} in one submission of {lim} min: under 10 % to spare; it finishes in one only at "
                    f"MFU >= {need:.1%} (assumed {cfg['compute']['mfu']:.0%}): measure it (bench/gpu_check.sh)")


def price(cfg: RunConfig) -> dict:
    profile, c = _profile(), cfg["compute"]
    rate = c["peak_tflops"] * 1e12 * c["mfu"]
    seq, data = cfg["shards"]["seq_len"], data_tokens(cfg)
    v_student = vocab_size(cfg, "student")
    jobs, warnings = [], []
    bench = json.loads(DATA_BENCH.read_text()) if DATA_BENCH.exists() else None
    per_part = data_costs.part_tokens(cfg, data)
    res = slurm_resources("shards_part", cfg, profile)
    for role in cfg["shards"]["roles"]:
        jobs += [_row("shards_part", f"{role} {part_name(p)}", tokens=n, disk_gb=n * shards.token_dtype(v_student).itemsize
                      / 1e9 if n else None, cpu_hours=n / (bench["tokens_per_s_per_core_stage"] * res.get(
                          "cpus_per_task", 1)) / 3600 if n and bench else None, slurm=res) for p, n in enumerate(per_part)]
    text_bpt = bench["bytes_per_token"] if bench else 4.0
    jobs += [_row("corpus_part", part_name(p), tokens=n, disk_gb=n * text_bpt / 1e9 if n else None,
                  slurm=slurm_resources("corpus_part", cfg, profile)) for p, n in enumerate(per_part)]

    def training_job(job, label, spec, run, split_tokens, teacher=(0, 0, 0)):
        """One training job's row, from its budget record (lsap.training.budget: what the job itself trains)."""
        p = run.plan
        fpt, flops = p.train_flops_per_token, run.spent_flops
        epochs = p.tokens / split_tokens if split_tokens else None
        hours = flops / rate / 3600
        res = slurm_resources(job, cfg, profile)
        row = _row(job, label, steps=p.steps, tokens=p.tokens, flops=flops,
                   epochs=epochs, gpu_hours=hours, memory_gb=memory_gb(spec, fpt // 6, cfg, teacher[1], teacher[2]),
                   disk_gb=fpt // 6 * (CHECKPOINT_BYTES["gpu" if c["gpus"] else "cpu"]
                                       * len(cfg["training"]["checkpoint_fractions"]) + RESUME_BYTES)
                   / 1e9, slurm=res)
        if epochs and epochs > 1.0:
            warnings.append(f"{job} {label} reads its data {epochs:.2f} times (repeats data)")
        wall_min = hours * 60 / max(1, c["gpus"])
        t = cfg["training"]
        _fixed_costs(row, job, label, wall_min, fpt // 6, p.steps, cfg, res, warnings)
        fr = sorted(t["checkpoint_fractions"])  # a resume point at each, every save_every_steps / _minutes
        first_gap = min(b - a for a, b in zip([0.0] + fr[:-1], fr, strict=True))
        gap = min(t["save_every_steps"] or math.inf, max(1, round(first_gap * p.steps)))
        interval = min(wall_min * min(1.0, gap / max(p.steps, 1)), t.get("save_every_minutes") or math.inf)
        if "runtime" in res and interval > res["runtime"]:
            warnings.append(f"{job} {label}: ~{interval:.0f} min between resume checkpoints, beyond the job's "
                            f"runtime limit of {res['runtime']} min: only the save before the time limit (read "
                            f"from Slurm) lets it resume. Set training.save_every_minutes below the runtime")
        elif "runtime" in res and wall_min > res["runtime"] * (1 + profile.get("retries", 0)):
            warnings.append(f"{job} {label}: ~{wall_min / 60:.1f} h of wall time needs "
                            f"{math.ceil(wall_min / res['runtime'])} submissions of {res['runtime']} min; the profile "
                            f"allows {1 + profile.get('retries', 0)} (raise runtime or retries)")
        jobs.append(row)
        return row, p

    for name, ref in cfg["references"].items():
        training_job("reference_model", name, ref["model"], budget.reference(cfg, name, vocab_size(cfg, ref["tokenizer"]),
                                                                             seq), data[ref["split"]]["tokens"])
    s, caches = cfg["students"], set()
    for mname in s["methods"]:
        m = cfg["methods"][mname]
        kind = methods.OBJECTIVES[m["objective"]]
        teacher = _teacher_shape(cfg, kind.teachers[0]) if kind.teachers else (0, 0, 0)
        readable = data["train"]["tokens"]
        if readable:
            readable *= methods.kept_fraction(m)
        scoring = 0.0
        if m["data"] != "all":
            scorers = sum(_teacher_shape(cfg, r)[0] for r in methods.DATA[m["data"]].roles)
            p0 = budget.student(cfg, mname, v_student, seq, teacher_flops_per_token=teacher[0])   # as the jobs size them
            # data of unknown size (file sources before the shards stage): a pool_factor still sizes the pool
            n_data = data["train"]["tokens"] // (seq + 1) if data["train"]["tokens"] else math.inf
            pool = budget.pool_size(cfg, mname, n_data, p0)
            known = pool != math.inf  # unknown: the whole shard of a corpus not yet tokenised
            scoring = pool * seq * scorers if known else 0.0
            jobs += _scoring_parts(cfg, mname, pool if known else None, scorers, rate, profile, warnings)
        if methods.uses_targets_cache(m) and keys.targets_id(cfg, mname) not in caches:
            caches.add(keys.targets_id(cfg, mname))  # one cache per spec and seed, shared by its methods
            p0 = budget.student(cfg, mname, v_student, seq, teacher_flops_per_token=teacher[0])   # as the jobs size them
            jobs += [_row("targets", f"{mname}-s{seed}", tokens=p0.tokens, flops=p0.tokens * teacher[0],
                          disk_gb=p0.tokens * m["top_k"] * CANDIDATE_BYTES / 1e9,
                          gpu_hours=p0.tokens * teacher[0] / rate / 3600,
                          memory_gb=memory_gb(None, 0, cfg, teacher[1], teacher[2]),
                          slurm=slurm_resources("targets", cfg, profile)) for seed in s["seeds"]]
        run = budget.student(cfg, mname, v_student, seq, scoring, teacher_flops_per_token=teacher[0])
        for seed in s["seeds"]:
            row, _ = training_job("student", f"{mname}-s{seed}", s["model"], run, readable, teacher)
            ledger = run.ledger()
            row["ledger"] = {k: ledger[f"{k}_flops"] for k in ("training", "teacher_inference", "selection",
                                                                 "trained_models")}
    # evaluation: bits per byte on every domain at every checkpoint (lm-eval's benchmarks come on top)
    e, n_ckpt = cfg["evaluation"], len(cfg["training"]["checkpoint_fractions"])
    eval_tokens = (e["bpb_max_bytes"] or 0) * len(cfg["corpus"]["domains"]) / text_bpt * n_ckpt
    student_fpt = flops.forward_flops_per_token(s["model"], v_student, seq)
    jobs += [_row("evaluate", f"{mname}-s{seed}", tokens=eval_tokens, flops=eval_tokens * student_fpt,
                  gpu_hours=eval_tokens * student_fpt / rate / 3600, slurm=slurm_resources("evaluate", cfg, profile))
             for mname in s["methods"] for seed in s["seeds"]]
    from lsap.config import lsap_alphas

    if lsap_alphas(cfg):  # the surrogate on the held-out slices: bits per byte, proposals, predicted costs
        sur_fpt = _teacher_shape(cfg, "surrogate")[0]
        lines_tokens = (e["bpb_max_bytes"] or 0) * len(cfg["corpus"]["domains"]) / text_bpt * LINES_PASSES
        jobs.append(_row("surrogate_lines", "surrogate", tokens=lines_tokens, flops=lines_tokens * sur_fpt,
                         gpu_hours=lines_tokens * sur_fpt / rate / 3600,
                         slurm=slurm_resources("surrogate_lines", cfg, profile)))
    t1 = cfg["analysis"]["table1"]
    t1_tokens = t1["examples"] * sum(1 for d in cfg["corpus"]["domains"].values() if d.get("table1")) * t1["seq_len"]
    t1_flops = t1_tokens * sum(_table1_fpt(cfg, m) for m in t1["models"]) * len(cfg["analysis"].get("seeds", [0]))
    jobs.append(_row("table1", f"{len(t1['models'])} models", tokens=t1_tokens, flops=t1_flops,
                     gpu_hours=t1_flops / rate / 3600, slurm=slurm_resources("table1", cfg, profile)))
    for j in jobs:  # one process per job outside training (torchrun runs only the training jobs)
        lim = j["slurm"].get("runtime")
        if j["job"] in ("targets", "evaluate", "table1") and lim and j["gpu_hours"] * 60 > lim * (
                1 + profile.get("retries", 0)):
            warnings.append(f"{j['job']} {j['method']}: ~{j['gpu_hours']:.0f} h on one process, beyond "
                            f"{1 + profile.get('retries', 0)} submissions of {lim} min (its work is not split over "
                            f"GPUs or jobs)")
    from lsap.operations.data_costs import download_size

    snap = download_size(cfg, bench["bytes_per_token"] if bench else 4.0)
    jobs += [_row(**r) for r in data_costs.local_rules(cfg, jobs, snap, warnings)]
    from lsap.models import FROM_TABLE

    return {"config": cfg["run"], "data": data, "jobs": jobs, "warnings": warnings,
            "rates": {"gpu": f"{c['mfu']:g} MFU of {c['peak_tflops']:g} TFLOP/s per GPU (assumed: config compute.mfu, "
                             f"compute.peak_tflops; no GPU measurement yet)",
                      "cpu": (f"{bench['tokens_per_s_per_core_stage']:,} tokens/s per core ({DATA_BENCH.name}, "
                              f"{bench['date']})") if bench else "no data-prep measurement (bench/data_prep.py)"},
            "hub_configs_from_table": sorted(FROM_TABLE), "hub_snapshot": snap,
            "local_bound_cpu_min": data_costs.LOCAL_CPU_MIN, "fixed_costs": plan.FIXED_COSTS}


# start-up of one job of the sweep (process, imports, model and data loading, evaluation's task
# setup): 7 s measured per job in the CPU smoke (316 s for 46 jobs on 2 cores); assumed 15 s on a
# GPU machine, where compilation comes on top
JOB_START_S = {"cpu": 7.0, "gpu": 15.0}


def sweep_seconds(config_path: str, device: str = "gpu") -> int:
    """The GPU check's price of a config's sweep: its jobs' GPU-hours at compute.mfu (`price`) plus
    a start-up per process: one per data job, one for every student and evaluation together (the
    GPU check runs them in one process, lsap.operations.sweep); a check refuses to start a sweep it
    cannot finish in the time left."""
    from lsap import config

    jobs = [j for j in price(config.load(config_path))["jobs"] if j["gpu_hours"] is not None]
    processes = sum(j["job"] not in ("student", "evaluate") for j in jobs) + 1
    return round(sum(j["gpu_hours"] for j in jobs) * 3600 + JOB_START_S[device] * processes)
