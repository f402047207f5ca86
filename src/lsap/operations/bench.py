"""`python -m lsap bench`: throughput of the training loop's own step (ce, lsap online, lsap cached,
kd, salt) and of the loss alone (CE vs LSAP, fused vs naive), with random weights at given shapes.

Shapes: `--shapes paper` (OLMo2-1B student, vocab 100,352; Qwen3-0.6B-shaped surrogate, vocab
151,936; seq 1024) or `--shapes cpu` (small, for CI and laptops). Token ids are random: this
measures speed, not learning. Translation tables come from the real tokenizer pair (cl100k ↔
Qwen3, Σ∩ 99,156) for paper shapes, a fixed random 90 % map for cpu shapes.
Writes one JSON: tokens/s, MFU in two conventions, peak memory, LSAP/CE ratios beside the FLOPs
bound 6N_b / (6N_b + 2N_s). MFU, standard (`mfu_standard`, torchtitan's / PaLM's): 6·N per trained
token over the parameters outside the embedding table (a head tied to it not counted either), plus
12·L·H·d_head·seq for attention, a teacher's forward 2·N + 4·L·H·d_head·seq, over the card's dense
bf16 peak from its data sheet (989 TFLOP/s for H100 SXM and H200; none for a CPU). MFU, measured
peak (`mfu_measured_peak`, this repo's earlier numbers): 6·N with embeddings (the papers' FLOPs,
`models.train_flops_per_token`) over the matmul rate this run measured.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import torch

from lsap import methods, models
from lsap.data import sampler
from lsap.models.flops import standard_flops_per_token
from lsap.models.fused_nll import CHUNK_ELEMENTS, fused_nll
from lsap.models.surrogate import CachedCandidates, Surrogate, write_cache
from lsap.operations.bench_surrogate import bench_surrogate
from lsap.operations.timing import Timer, allocated_bytes, device_name, matmul_peak, peak_memory_gib, spec_peak
from lsap.report import provenance
from lsap.training import loop

# paper.yaml's train split in sequences of 1,025 tokens (`lsap plan --config config/paper.yaml`)
PAPER_TRAIN_SEQUENCES = 51_512_195

SHAPES = {
    "paper": dict(student={"arch": "olmo2", "hidden": 2048, "layers": 16, "heads": 16, "intermediate": 8192,
                           "rope_theta": 500_000, "norm_eps": 1e-6, "vocab_multiple": 128},
                  # Qwen3-0.6B: head_dim 128 (not hidden/heads = 64), 151,936 embedding rows (the
                  # tokenizer's 151,669 ids, padded), tied: 596,049,920 parameters
                  surrogate={"arch": "qwen3", "hidden": 1024, "layers": 28, "heads": 16, "kv_heads": 8,
                             "head_dim": 128, "intermediate": 3072, "tie_embeddings": True},
                  v_student=100_278, v_surrogate=151_936, seq=1024, batch=8),
    "cpu": dict(student={"arch": "olmo2", "hidden": 128, "layers": 4, "heads": 4, "intermediate": 512},
                surrogate={"arch": "qwen3", "hidden": 96, "layers": 3, "heads": 4, "intermediate": 384},
                v_student=4096, v_surrogate=3072, seq=256, batch=16),
}


def build_lm(spec: dict, vocab_size: int, max_len: int, seed: int):
    """`models.build`, with a Qwen3 `head_dim` of its own when the spec gives one (Qwen3-0.6B: 128,
    where models.build takes hidden/heads = 64)."""
    if "head_dim" not in spec:
        return models.build(spec, vocab_size, max_len, seed)
    with torch.device("meta"):  # the config models.build would make, no weights
        like = models.build(spec, vocab_size, max_len, seed)
    cfg = like.config
    cfg.head_dim = spec["head_dim"]
    torch.manual_seed(seed)
    return type(like)(cfg)


def _tables(shape_name: str, v_b: int, v_s: int, path: str | None = None):
    """Σ∩ tables: from `path` (a translation .npz, as the device pack ships them), the real
    tokenizer pair for paper shapes, or a fixed random 90 % map for cpu shapes."""
    from lsap.data import vocab

    if path:
        b_to_s, s_to_b = vocab.load_translation(path)
    elif shape_name.startswith("paper"):
        b_to_s, s_to_b = vocab.translation_tables(vocab.load_pretrained("cl100k"), vocab.load_pretrained("qwen3"))
    else:
        b_to_s, s_to_b = None, None
    if b_to_s is not None:
        # the student's ids reach v_b (special tokens beyond the BPE ranks): none is in Σ∩
        pad = np.full(max(0, v_b - len(b_to_s)), vocab.NOT_IN_SURROGATE, np.int64)
        return np.concatenate([b_to_s, pad]), s_to_b
    rng = np.random.default_rng(0)
    b_to_s = np.full(v_b, -100, np.int64)
    s_to_b = np.full(v_s, -1, np.int64)
    shared = rng.choice(v_b, size=int(0.9 * v_s), replace=False)
    s_ids = rng.permutation(v_s)[: len(shared)]
    b_to_s[shared], s_to_b[s_ids] = s_ids, shared
    return b_to_s, s_to_b


def bench_loss(dev, n_tokens: int, hidden: int, vocab: int, k: int = 15, iters: int = 5) -> dict:
    """Loss forward+backward alone from fixed hidden states: CE vs LSAP (~10 % of slots active,
    as at α = 0.05 with a good surrogate), fused chunked vs naive full-vocabulary."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator(device="cpu").manual_seed(0)
    h = torch.randn(n_tokens, hidden, generator=g).to(dev, dtype).requires_grad_()
    W = (torch.randn(vocab, hidden, generator=g) * 0.02).to(dev).requires_grad_()
    ids = torch.randint(0, vocab, (n_tokens, 1 + k), generator=g).to(dev)
    w = torch.cat([torch.ones(n_tokens, 1), (torch.rand(n_tokens, k, generator=g) < 0.2).float()], 1).to(dev)
    ce_w = torch.zeros_like(w)
    ce_w[:, 0] = 1

    def fused(weights, chunk=None):
        return lambda: fused_nll(h, W, ids, weights, chunk=chunk).backward()

    def naive(weights):
        def run():
            with torch.autocast(dev.type, dtype=dtype, enabled=dev.type == "cuda"):
                logits = h @ W.T
            logp = torch.log_softmax(logits.float(), -1)
            (-(weights * logp.gather(1, ids)).sum()).backward()
        return run

    timer, out = Timer(dev), {}
    cpu_chunk = max(1, CHUNK_ELEMENTS // vocab)  # the CPU's chunk, for comparison on a GPU
    for name, fn in {"ce_fused": fused(ce_w), "lsap_fused": fused(w), "ce_naive": naive(ce_w),
                     "lsap_naive": naive(w), "ce_fused_cpu_chunks": fused(ce_w, cpu_chunk)}.items():
        out[name] = {"ms": 1000 * timer(fn, 2, iters), "peak_gib": peak_memory_gib(dev, fn)}
    out["lsap_over_ce_fused"] = out["lsap_fused"]["ms"] / out["ce_fused"]["ms"]
    out["lsap_over_ce_naive"] = out["lsap_naive"]["ms"] / out["ce_naive"]["ms"]
    return out


class CycledSequences:
    """A train split indexed at `n` sequences whose rows repeat a small array of real token rows:
    the sampler, the index and the gather run at the real split's size without its 211 GB."""

    def __init__(self, rows: np.ndarray, n: int):
        self.rows, self.n = rows, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, ids):
        return self.rows[np.asarray(ids) % len(self.rows)]


# the arms the bench times, as `methods:` entries built by their plugins (lsap.methods), knobs at
# their defaults unless named; the cached arms read a targets cache of the bench's rows
BENCH_METHODS = {
    "ce": {"objective": "ce"},
    "lsap_online": {"objective": "lsap", "alpha": 0.05},
    "lsap_cached": {"objective": "lsap", "alpha": 0.05, "targets": "cached"},
    "sparse_kd": {"objective": "sparse_kd"},
    "kd": {"objective": "kd"},
    "salt": {"objective": "salt"},   # its KD phase (SALT's steps 1..n_KD), where the teacher runs
}


def _objectives(dev, s: dict, shape_name: str, tables: str | None, compile_: bool, cache_dir: str, rows, student):
    """The objectives the methods build (through the registry), with random-weight teachers at the
    shapes' sizes, and the bytes of teacher weights each one keeps on the device (a run of that
    method alone holds only those)."""
    surrogate_lm = build_lm(s["surrogate"], s["v_surrogate"], s["seq"], seed=1).to(dev)
    surrogate_lm = surrogate_lm.to(models.inference_dtype(dev)).eval().requires_grad_(False)
    b_to_s, s_to_b = _tables(shape_name, s["v_student"], s["v_surrogate"], tables)
    sur = Surrogate(surrogate_lm, b_to_s, s_to_b, pad_id=0, compile_=compile_)
    write_cache(sur, rows, cache_dir, batch_size=s["batch"], meta={"bench": True})
    cache = CachedCandidates(cache_dir, sur.top_k, sur.probabilities, len(rows))
    # SALT's teacher: a model of about half the student's width in the student's vocabulary
    half = {**s["student"], "hidden": s["student"]["hidden"] // 2, "intermediate": s["student"]["intermediate"] // 2}
    salt_lm = build_lm(half, s["v_student"], s["seq"], seed=2).to(dev)
    salt_lm = salt_lm.to(models.inference_dtype(dev)).eval().requires_grad_(False)
    n_rows = len(rows)
    # what the builders would load from a run's files, built here: the surrogate, the cache as runs
    # read it (memmap rows gathered on the host; the ids cycle over the bench's rows), SALT's teacher
    inputs = {"surrogate": sur, "tables": (sur.b_to_s.cpu().numpy(), sur.s_to_b.cpu().numpy()),
              "candidates": (lambda i, t, ids: cache(np.asarray(ids) % n_rows, i.device), sur.flops_per_token),
              "salt_teacher": salt_lm, "n_sequences": n_rows}
    objs = {name: methods.OBJECTIVES[e["objective"]].build(None, methods.parse(e), student, inputs, dev)
            for name, e in BENCH_METHODS.items()}
    nbytes = {m: sum(p.numel() * p.element_size() for p in lm.parameters()) for m, lm in
              (("sur", surrogate_lm), ("salt", salt_lm))}
    teacher = {"ce": None, "lsap_online": surrogate_lm, "lsap_cached": None, "sparse_kd": None, "kd": surrogate_lm,
               "salt": salt_lm}   # the model each arm runs in its step (cached arms: none)
    held = {n: 0 if lm is None else nbytes["sur" if lm is surrogate_lm else "salt"] for n, lm in teacher.items()}
    extra = {"surrogate_params": models.n_params(surrogate_lm), "salt_teacher_params": models.n_params(salt_lm),
             "surrogate_flops_per_token": sur.flops_per_token,
             # forward FLOPs per token each method's teacher adds, standard convention (what ran:
             # the cached targets' surrogate did not run in the step)
             "teacher_standard_flops_per_token": {
                 n: 0 if lm is None else standard_flops_per_token(lm, s["seq"], train=False) for n, lm in teacher.items()}}
    extra["surrogate"] = sur
    return objs, held, sum(nbytes.values()), extra


def bench_steps(dev, shape_name: str, compile_: bool, iters: int, warmup: int, rounds: int = 3,
                out: dict | None = None, save=lambda: None, tables: str | None = None,
                n_index: int = PAPER_TRAIN_SEQUENCES) -> dict:
    """Tokens/s, MFU, peak memory and host time of the training loop's own step
    (`loop.forward_backward` + `loop.optimizer_step` over `loop.MicroBatches`) for each
    objective. Every objective is warmed up first (compilation), then measured in interleaved
    rounds (ce, lsap, kd, salt, ce, …), `iters` steps each; each ratio to CE is the median of the
    per-round ratios, so neither the order nor a load that changes during the run decides it."""
    import tempfile

    s = SHAPES[shape_name]
    out = {} if out is None else out
    student = models.build(s["student"], s["v_student"], s["seq"], seed=0).to(dev)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, s["v_student"], (4 * s["batch"], s["seq"] + 1), generator=g).numpy().astype(np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        objs, held, teachers_bytes, extra = _objectives(dev, s, shape_name, tables, compile_, f"{tmp}/cache", rows,
                                                        student)
        sur = extra.pop("surrogate")
        dist = loop.Dist()
        net = loop.compiled_trunk(student, dist, compile_)
        opt = torch.optim.AdamW(student.parameters(), lr=1e-4, fused=dev.type == "cuda")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, loop.lr_lambda(10 ** 6, 0.0, 0.1))
        autocast = loop.autocast_for(dev)
        # the paper's train split, indexed at its real size: the sampler permutes all of it
        t0 = time.perf_counter()
        index = np.arange(n_index)
        batches = loop.MicroBatches(CycledSequences(rows, n_index), lambda *_: index, s["batch"], 1, dist, 0, dev)
        next(iter(batches(0, 1)))
        tokens = s["batch"] * s["seq"]
        peak = matmul_peak(dev)
        train_fpt = models.train_flops_per_token(student)
        std = {"student": standard_flops_per_token(student, s["seq"]), "peak": spec_peak(device_name(dev)),
               "teacher": extra["teacher_standard_flops_per_token"]}
        out.update({"student_params": models.n_params(student), **extra, "matmul_peak_tflops": peak / 1e12,
                    "student_standard_flops_per_token": std["student"],
                    "spec_peak_tflops": std["peak"] / 1e12 if std["peak"] else None,
                    "tokens_per_step": tokens, "train_index_sequences": n_index,
                    "first_epoch_permutation_s": time.perf_counter() - t0,
                    "flops_bound_lsap_over_ce": train_fpt / (train_fpt + extra["surrogate_flops_per_token"]),
                    "warmup_steps": warmup, "steps_per_round": iters, "rounds": rounds, "per_round": []})
        save()
        step = [0]

        def run_steps(obj, n):
            for _ in range(n):
                loop.forward_backward(net, obj, batches(step[0], 10 ** 6), step[0], 10 ** 6, 1, dist, autocast,
                                       student, 1.0)
                loop.optimizer_step(opt, sched)
                step[0] += 1

        for name, obj in list(objs.items()):  # warm-up: compilation and allocator growth, not timed
            obj.bind(student)
            try:
                run_steps(obj, warmup)
            except Exception as e:  # one method's failure (a compile error, memory) must not hide the rest
                if name == "ce":
                    raise
                out[name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                del objs[name]
                save()
        timer = Timer(dev)
        per_round = out["per_round"]
        for r in range(rounds):
            this = {}
            for name, obj in objs.items():
                base = allocated_bytes(dev)
                if r == 0 and dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                host0 = batches.host_s
                sec = timer(lambda obj=obj: run_steps(obj, 1), 0, iters)
                this[name] = {"tok_s": tokens / sec, "host_ms": 1000 * (batches.host_s - host0) / iters}
                if r == 0 and dev.type == "cuda":
                    # as a run of this method alone would hold it: without the other methods' teachers
                    own = torch.cuda.max_memoryallocated_bytes() - (teachers_bytes - held[name])
                    out.setdefault("peak_gib", {})[name] = own / 2 ** 30
                    out.setdefault("step_gib", {})[name] = (torch.cuda.max_memoryallocated_bytes() - base) / 2 ** 30
            per_round.append(this)
            _summarise(out, per_round, tokens, train_fpt, objs, peak, std)
            save()
        if "lsap_online" in objs:
            out["surrogate_breakdown"] = bench_surrogate(dev, sur, torch.from_numpy(rows[: s["batch"]]).long().to(dev))
            save()
    return out


def _summarise(out: dict, per_round: list[dict], tokens: int, train_fpt: float, objs: dict, peak: float,
               std: dict) -> None:
    """Per method: median tokens/s over rounds, MFU at that rate in both conventions, host time;
    per method but CE: the median over rounds of its ratio to that round's CE (and the memory ratio)."""
    for name, obj in objs.items():
        tok_s = float(np.median([r[name]["tok_s"] for r in per_round]))
        flops = train_fpt + obj.teacher_flops_per_token  # the cached targets are charged, not run:
        ran = train_fpt if std["teacher"][name] == 0 else flops  # MFU counts what the device computed
        ran_std = std["student"] + std["teacher"][name]
        out[name] = {"tok_s": tok_s, "step_ms": 1000 * tokens / tok_s,
                     "mfu_standard": tok_s * ran_std / std["peak"] if std["peak"] else None,
                     "mfu_measured_peak": tok_s * ran / peak,
                     "host_ms_per_step": float(np.median([r[name]["host_ms"] for r in per_round])),
                     "peak_gib": out.get("peak_gib", {}).get(name)}
        if name != "ce":
            out[f"{name}_over_ce_throughput"] = float(np.median([r[name]["tok_s"] / r["ce"]["tok_s"]
                                                                 for r in per_round]))
            if out[name]["peak_gib"]:
                out[f"{name}_over_ce_memory"] = out[name]["peak_gib"] / out["ce"]["peak_gib"]


def sampler_cost(n: int = PAPER_TRAIN_SEQUENCES, world: int = 8, micro: int = 8, accum: int = 2,
                 steps: int = 20) -> dict:
    """The sampler's host time at the paper's split: the one-time permutation of an epoch, then
    one step's micro-batch positions of one rank (each of `world` ranks computes its own)."""
    sampler.epoch_permutation.cache_clear()
    t0 = time.perf_counter()
    sampler.sample_ids(0, micro, accum, loop.Dist(0, world), n, 0)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        sampler.sample_ids(step, micro, accum, loop.Dist(step % world, world), n, 0)
    return {"sequences": n, "world": world, "micro_batch": micro, "grad_accum": accum, "setup_s": setup,
            "ms_per_step": 1000 * (time.perf_counter() - t0) / steps}


# the bench's fixed cost (building the models, compiling student and surrogate, the loss part):
# about 160 of the 194 s the H200 took at paper shapes (bench/NOTES.md); 25 s at CPU shapes on 2 cores
SETUP_S = {"paper": 160.0, "cpu": 25.0}
ASSUMED_STEP_S = {"paper": 0.25, "cpu": 0.6}  # the slowest method's step (KD: 0.215 s on the H200)


def price(shapes: str, iters: int, rounds: int, warmup: int | None = None) -> int:
    """Seconds `run` is expected to take: its fixed cost plus every step of each of its methods at the
    slowest method's step time (the check refuses a part priced beyond the time left)."""
    warmup = max(2, iters // 3) if warmup is None else warmup
    return round(SETUP_S[shapes] + len(BENCH_METHODS) * (warmup + rounds * iters) * ASSUMED_STEP_S[shapes])


def summary(steps: dict) -> str:
    """One line per method: tokens/s, the ratio to CE, MFU in both conventions."""
    peak = steps.get("spec_peak_tflops")
    over = f"over {peak:g} TFLOP/s (data sheet, dense bf16)" if peak else "n/a: no data-sheet peak for this device"
    lines = [f"MFU standard: torchtitan's FLOPs {over}; measured-peak: 6N with embeddings over "
             f"{steps['matmul_peak_tflops']:.3g} TFLOP/s measured"]
    for name in BENCH_METHODS:
        m = steps.get(name)
        if not m or "tok_s" not in m:
            continue
        ratio = steps.get(f"{name}_over_ce_throughput")
        std = f"{m['mfu_standard']:.3f}" if m["mfu_standard"] is not None else "n/a"
        lines.append(f"{name:12s} {m['tok_s']:10,.0f} tok/s  {'' if ratio is None else f'{ratio:.3f}x CE':9s}  "
                     f"MFU standard {std}  measured-peak {m['mfu_measured_peak']:.3f}")
    b = steps.get("surrogate_breakdown")
    if b:
        lines.append(f"candidate step: {b['selection_ms']:.2f} ms (before lsap.models.topk: "
                     f"{b['selection_legacy_ms']:.2f} ms); "
                     f"forward + candidates {b['candidates_ms']:.2f} ms")
    return "\n".join(lines)


def run(shapes: str, device: str, compile_: bool, iters: int, out_path: str | None, rounds: int = 3,
        tables: str | None = None, n_index: int = PAPER_TRAIN_SEQUENCES) -> dict:
    dev = torch.device(device)
    models.enable_tf32()
    s = SHAPES[shapes]
    result = {"shapes": shapes, "device": device_name(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "compile": compile_, "complete": False, "provenance": provenance.identity()}

    def save():  # after every measured part: a run stopped at its time limit keeps what it measured
        text = json.dumps(result, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
        if out_path:
            from lsap.io.files import write_text

            write_text(out_path, text + "\n")
        return text

    save()  # the run's identity first: a check stopped at once still leaves its JSON
    result["sampler"] = sampler_cost()
    result["loss"] = bench_loss(dev, s["batch"] * s["seq"], s["student"]["hidden"], -(-s["v_student"] // 64) * 64)
    save()
    result["steps"] = {}
    bench_steps(dev, shapes, compile_, iters, warmup=max(2, iters // 3), rounds=rounds, out=result["steps"],
                save=save, tables=tables, n_index=n_index)
    result["complete"] = True
    print(save())
    print(summary(result["steps"]))
    return result
