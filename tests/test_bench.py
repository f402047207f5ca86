"""The benchmark runs the training loop's own step and reports what it promises (CPU shapes here;
paper shapes on a GPU, bench/gpu_check.sh)."""

import json

import numpy as np
import pytest
import torch

from lsap import bench

METHODS = ("ce", "lsap_online", "lsap_cached", "kd", "salt")


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
        assert s[name]["tok_s"] > 0 and s[name]["mfu"] > 0 and s[name]["host_ms_per_step"] > 0
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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paper_shapes_on_gpu(tmp_path):
    r = bench.run("paper", "cuda", compile_=True, iters=5, out_path=str(tmp_path / "gpu.json"))
    assert r["steps"]["lsap_online_over_ce_memory"] < 1.5
