"""The benchmark runs the training loop's own step and reports what it promises (CPU shapes here;
paper shapes on a GPU, bench/gpu_check.sh)."""

import json

import numpy as np
import pytest
import torch

from lsap.models import flops
from lsap.operations import bench, timing

METHODS = ("ce", "lsap_online", "lsap_cached", "sparse_kd", "kd", "salt")  # bench.BENCH_METHODS, stated apart


def test_cpu_bench_measures_every_method_in_interleaved_rounds(tmp_path):
    out = tmp_path / "bench.json"
    r = bench.run("cpu", "cpu", compile_=False, iters=2, out_path=str(out), rounds=3)
    saved = json.loads(out.read_text())
    assert saved["shapes"] == "cpu" and saved["complete"] and saved["provenance"]["git_commit"]
    s = r["steps"]
    assert 0 < s["flops_bound_lsap_over_ce"] < 1
    # the sampler indexed the paper's train split at its real size
    assert s["train_index_sequences"] == bench.PAPER_TRAIN_SEQUENCES == 51_512_195
    assert len(s["per_round"]) == 3 and all(set(rnd) == set(METHODS) for rnd in s["per_round"])
    for name in METHODS:
        assert s[name]["tok_s"] > 0 and s[name]["mfu_measured_peak"] > 0 and s[name]["host_ms_per_step"] > 0
        assert s[name]["mfu_standard"] is None  # a CPU has no data-sheet peak
    assert s["spec_peak_tflops"] is None and s["student_standard_flops_per_token"] > 0
    # the candidate step alone, beside the one it replaced: the same candidates
    b = s["surrogate_breakdown"]
    assert b["selection_ms"] > 0 and b["selection_legacy_ms"] > 0 and b["selection_same_slots"]
    assert b["selection_max_abs_diff_logp"] < 1e-4 and not b["selection_compiled"]
    # each ratio is the median of the per-round ratios (not a ratio of medians, not one round's):
    # how fast each is, is noise on a shared machine, so no test asserts a speed
    for name in METHODS[1:]:
        per_round = [rnd[name]["tok_s"] / rnd["ce"]["tok_s"] for rnd in s["per_round"]]
        assert s[f"{name}_over_ce_throughput"] == pytest.approx(float(np.median(per_round)))
    loss = r["loss"]
    assert loss["ce_fused"]["ms"] > 0 and loss["lsap_over_ce_fused"] > 0


def test_paper_vocabularies_through_the_loop_on_cpu(tmp_path):
    """The paper path's arithmetic at the paper's vocabularies (the real cl100k ↔ Qwen3 tables,
    student ids up to 100,278 beyond the BPE ranks) with one thin layer: what the GPU check runs."""
    p = bench.SHAPES["paper"]
    bench.SHAPES["paper-thin"] = dict(p, seq=16, batch=2,
                                      student={**p["student"], "layers": 1, "hidden": 64, "heads": 2, "intermediate": 128},
                                      surrogate={**p["surrogate"], "layers": 1, "hidden": 64, "heads": 2, "kv_heads": 1,
                                                 "intermediate": 128})
    try:
        out = bench.bench_steps(torch.device("cpu"), "paper-thin", False, iters=1, warmup=1, rounds=1,
                                n_index=10_000)
    finally:
        del bench.SHAPES["paper-thin"]
    assert all(out[name]["tok_s"] > 0 for name in METHODS)
    assert 0.5 < out["flops_bound_lsap_over_ce"] < 1


def test_paper_surrogate_is_qwen3_0_6b_and_flops_in_the_standard_convention():
    """Built on the meta device (no weights): Qwen3-0.6B's 596,049,920 parameters with head_dim 128,
    and torchtitan's FLOPs per token for it and the OLMo2-1B student."""
    p = bench.SHAPES["paper"]
    with torch.device("meta"):
        sur = bench.build_lm(p["surrogate"], p["v_surrogate"], p["seq"], seed=1)
        student = bench.build_lm(p["student"], p["v_student"], p["seq"], seed=0)
    assert sur.config.head_dim == 128 and sur.config.vocab_size == 151_936 and sur.config.tie_word_embeddings
    assert bench.models.n_params(sur) == 596_049_920
    non_embedding = 596_049_920 - 151_936 * 1024  # the tied head goes with the embedding table
    assert flops.standard_flops_per_token(sur, 1024, train=False) == 2 * non_embedding + 4 * 28 * 16 * 128 * 1024
    emb = 100_352 * 2048  # OLMo2-1B: untied, so its head counts
    n = bench.models.n_params(student)
    assert flops.standard_flops_per_token(student, 1024) == 6 * (n - emb) + 12 * 16 * 16 * 128 * 1024
    assert timing.spec_peak("NVIDIA H200") == timing.spec_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert timing.spec_peak("NVIDIA H100 PCIe") == 756e12 and timing.spec_peak("x86_64") is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paper_shapes_on_gpu(tmp_path):
    r = bench.run("paper", "cuda", compile_=True, iters=5, out_path=str(tmp_path / "gpu.json"))
    assert r["steps"]["lsap_online_over_ce_memory"] < 1.5
