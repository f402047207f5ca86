"""`python -m lsap bench`: throughput of the training step (ce, lsap online, lsap cached) and of
the loss alone (CE vs LSAP, fused vs naive), with random weights at given shapes.

Shapes: `--shapes paper` (OLMo2-1B student, vocab 100,352; Qwen3-0.6B-shaped surrogate, vocab
151,936; seq 1024) or `--shapes cpu` (small, for CI and laptops). Token ids are random: this
measures speed, not learning. Translation tables come from the real tokenizer pair (cl100k ↔
Qwen3, Σ∩ 99,156) for paper shapes, a fixed random 90 % map for cpu shapes.
Writes one JSON: tokens/s, MFU against a measured matmul peak, peak memory, LSAP/CE ratios
beside the FLOPs bound 6N_b / (6N_b + 2N_s).
"""

from __future__ import annotations

import json
import math
import platform
import time

import numpy as np
import torch

from lsap import models, objectives
from lsap.fused_nll import fused_nll
from lsap.surrogate import Surrogate

SHAPES = {
    "paper": dict(student={"arch": "olmo2", "hidden": 2048, "layers": 16, "heads": 16, "intermediate": 8192},
                  surrogate={"arch": "qwen3", "hidden": 1024, "layers": 28, "heads": 16, "kv_heads": 8,
                             "intermediate": 3072, "tie_embeddings": True},
                  v_student=100_278, v_surrogate=151_669, seq=1024, batch=8),
    "cpu": dict(student={"arch": "olmo2", "hidden": 128, "layers": 4, "heads": 4, "intermediate": 512},
                surrogate={"arch": "qwen3", "hidden": 96, "layers": 3, "heads": 4, "intermediate": 384},
                v_student=4096, v_surrogate=3072, seq=256, batch=16),
}


class Timer:
    """Wall time of a callable: CUDA events on GPU (no host sync inside the timed region)."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def __call__(self, fn, warmup: int, iters: int) -> float:
        for _ in range(warmup):
            fn()
        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000 / iters
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t) / iters


def matmul_peak(dev) -> float:
    """Measured dense matmul FLOP/s (bf16 on GPU, float32 on CPU): the MFU denominator."""
    n, dtype = (8192, torch.bfloat16) if dev.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    return 2 * n ** 3 / Timer(dev)(lambda: a @ b, 3, 10)


def _tables(shape_name: str, v_b: int, v_s: int):
    if shape_name == "paper":
        from lsap import vocab

        return vocab.translation_tables(vocab.load_pretrained("cl100k"), vocab.load_pretrained("qwen3"))
    rng = np.random.default_rng(0)
    b_to_s = np.full(v_b, -100, np.int64)
    s_to_b = np.full(v_s, -1, np.int64)
    shared = rng.choice(v_b, size=int(0.9 * v_s), replace=False)
    s_ids = rng.permutation(v_s)[: len(shared)]
    b_to_s[shared], s_to_b[s_ids] = s_ids, shared
    return b_to_s, s_to_b


def _peak_mem(dev, fn) -> float | None:
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2 ** 30


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

    def fused(weights):
        return lambda: fused_nll(h, W, ids, weights).backward()

    def naive(weights):
        def run():
            with torch.autocast(dev.type, dtype=dtype, enabled=dev.type == "cuda"):
                logits = h @ W.T
            logp = torch.log_softmax(logits.float(), -1)
            (-(weights * logp.gather(1, ids)).sum()).backward()
        return run

    timer, out = Timer(dev), {}
    for name, fn in {"ce_fused": fused(ce_w), "lsap_fused": fused(w), "ce_naive": naive(ce_w),
                     "lsap_naive": naive(w)}.items():
        out[name] = {"ms": 1000 * timer(fn, 2, iters), "peak_gib": _peak_mem(dev, fn)}
    out["lsap_over_ce_fused"] = out["lsap_fused"]["ms"] / out["ce_fused"]["ms"]
    out["lsap_over_ce_naive"] = out["lsap_naive"]["ms"] / out["ce_naive"]["ms"]
    return out


def bench_steps(dev, shape_name: str, compile_: bool, iters: int, warmup: int, out: dict | None = None,
                save=lambda: None) -> dict:
    """Tokens/s, MFU and peak memory of one training step per objective; each objective's figures
    go into `out` and are saved (`save()`) as soon as they exist, so a run cut short keeps them."""
    s = SHAPES[shape_name]
    student = models.build(s["student"], s["v_student"], s["seq"], seed=0).to(dev)
    surrogate_lm = models.build(s["surrogate"], s["v_surrogate"], s["seq"], seed=1).to(dev)
    surrogate_lm = surrogate_lm.to(models.inference_dtype(dev)).eval().requires_grad_(False)
    b_to_s, s_to_b = _tables(shape_name, s["v_student"], s["v_surrogate"])
    sur = Surrogate(surrogate_lm, b_to_s, s_to_b, pad_id=0)
    if compile_ and dev.type == "cuda":
        sur.model = torch.compile(sur.model)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, s["v_student"], (s["batch"], s["seq"] + 1), generator=g).to(dev)
    cached = sur.candidates(x[:, :-1], x[:, 1:])
    # SALT's teacher: a model of about half the student's width in the student's vocabulary
    half = {**s["student"], "hidden": s["student"]["hidden"] // 2, "intermediate": s["student"]["intermediate"] // 2}
    salt_lm = models.build(half, s["v_student"], s["seq"], seed=2).to(dev)
    salt_lm = salt_lm.to(models.inference_dtype(dev)).eval().requires_grad_(False)

    @torch.inference_mode()
    def salt_logits(i):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            return salt_lm(input_ids=i).logits
    kd_teacher = objectives.dense_teacher(sur.logits, log_q=objectives.sigma_log_q(sur.s_to_b))
    objs = {
        "ce": objectives.CrossEntropy(),
        "lsap_online": objectives.LSAP(lambda i, t, _: sur.candidates(i, t), 0.05,
                                       teacher_flops_per_token=sur.flops_per_token),
        "lsap_cached": objectives.LSAP(lambda i, t, _: cached, 0.05, teacher_flops_per_token=sur.flops_per_token),
        "kd": objectives.TeacherKD(kd_teacher, 0.5, sur.flops_per_token, name="kd"),
        # its KD phase (SALT's steps 1..n_KD), where the teacher runs
        "salt": objectives.TeacherKD(objectives.dense_teacher(salt_logits, rho=0.25), 0.667,
                                     models.forward_flops_per_token(salt_lm), name="salt"),
    }
    net = models.Trunk(student)
    net = torch.compile(net) if compile_ and dev.type == "cuda" else net
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, fused=dev.type == "cuda")
    tokens = s["batch"] * s["seq"]
    peak = matmul_peak(dev)
    train_fpt = models.train_flops_per_token(student)
    out = {} if out is None else out
    out.update({"student_params": models.n_params(student), "surrogate_params": models.n_params(surrogate_lm),
                "matmul_peak_tflops": peak / 1e12, "tokens_per_step": tokens,
                "flops_bound_lsap_over_ce": train_fpt / (train_fpt + sur.flops_per_token)})
    save()
    timer = Timer(dev)
    for name, obj in objs.items():
        obj.bind(student)

        def step(obj=obj):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss, parts = obj(net, x, None, 0, 100)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        sec = timer(step, warmup, iters)
        flops = tokens * (train_fpt + (obj.teacher_flops_per_token if name != "lsap_cached" else 0))
        out[name] = {"tok_s": tokens / sec, "step_ms": 1000 * sec, "mfu": flops / sec / peak,
                     "peak_gib": _peak_mem(dev, step)}
        if name != "ce":
            out[f"{name}_over_ce_throughput"] = out[name]["tok_s"] / out["ce"]["tok_s"]
            if dev.type == "cuda":
                out[f"{name}_over_ce_memory"] = out[name]["peak_gib"] / out["ce"]["peak_gib"]
        save()
    return out


def run(shapes: str, device: str, compile_: bool, iters: int, out_path: str | None) -> dict:
    dev = torch.device(device)
    models.enable_tf32()
    s = SHAPES[shapes]
    result = {"shapes": shapes, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
              or platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "compile": compile_, "complete": False}

    def save():  # after every measured part: a run stopped at its time limit keeps what it measured
        text = json.dumps(result, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
        if out_path:
            from lsap.files import write_text

            write_text(out_path, text + "\n")
        return text

    save()  # the run's identity first: a check stopped at once still leaves its JSON
    result["loss"] = bench_loss(dev, s["batch"] * s["seq"], s["student"]["hidden"], -(-s["v_student"] // 64) * 64)
    save()
    result["steps"] = {}
    bench_steps(dev, shapes, compile_, iters, warmup=max(2, iters // 3), out=result["steps"], save=save)
    result["complete"] = True
    print(save())
    return result
