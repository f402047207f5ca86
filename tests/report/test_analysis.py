"""Table 1 counting (exact, bounded, monotone) and the analysis stage on real LMs."""

import math

import torch

from lsap.report import analysis

ALPHAS = [0.01, 0.05, 0.2]


def naive_count(logits, alpha):
    return (torch.softmax(logits.double(), -1) > alpha).sum(-1)


def test_hand_built_distribution_is_counted_exactly():
    p = torch.tensor([0.4, 0.3, 0.16, 0.1, 0.03, 0.008, 0.002])
    counts = analysis.count_above(p.log()[None, None], ALPHAS)
    assert counts[:, 0, 0].tolist() == [5, 4, 2]


def test_bound_is_reached_and_never_exceeded():
    for alpha in ALPHAS:
        k = analysis.max_count(alpha)
        flat = torch.full((1, 1, 500), -1e4)
        flat[..., :k] = 0.0  # k equal entries of 1/k > α each: the most that fit
        assert analysis.count_above(flat, [alpha]).item() == k == math.ceil(1 / alpha) - 1
    g = torch.Generator().manual_seed(0)
    for temp in (0.1, 1.0, 5.0, 20.0):
        logits = torch.randn(4, 33, 3000, generator=g) * temp
        c = analysis.count_above(logits, ALPHAS, chunk=17)
        for j, a in enumerate(ALPHAS):
            assert int(c[j].max()) <= analysis.max_count(a)
            assert torch.equal(c[j], naive_count(logits, a))
        assert (c[0] >= c[1]).all() and (c[1] >= c[2]).all()  # fall as α rises


def test_bf16_logits_are_counted_from_float32_log_probs():
    logits = (torch.randn(2, 5, 1000) * 4).bfloat16()
    c = analysis.count_above(logits, ALPHAS)
    for j, a in enumerate(ALPHAS):
        assert torch.equal(c[j], naive_count(logits.float(), a))


def test_an_optional_table1_model_that_cannot_load_is_named_not_fatal(tiny_cfg, tmp_path):
    """A gated model (no licence accepted on the nodes) marked optional: Table 1 leaves it out and
    says which and why; the same model not marked optional stops the job. Run with the hub
    offline, in a child process (huggingface_hub reads HF_HUB_OFFLINE when imported)."""
    import json
    import os
    import subprocess
    import sys

    gated = {"kind": "hub", "id": "meta-llama/Llama-3.1-8B"}
    code = ("import json, sys; from lsap import config; from lsap.report import analysis; "
            "cfg = config.validate(json.loads(sys.argv[1])); "
            "r = analysis.table1(cfg, sys.argv[2], log=lambda *_: None); "
            "print(json.dumps({'missing': r.get('missing'), 'rows': analysis.table1_frame(r, cfg).model.tolist()}))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for optional in (True, False):
        cfg = {**tiny_cfg, "analysis": {**tiny_cfg["analysis"], "table1": {
            **tiny_cfg["analysis"]["table1"], "models": [{**gated, "optional": optional}]}}}
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(tmp_path)], capture_output=True,
                              text=True, env=env, timeout=300)
        if optional:
            assert proc.returncode == 0, proc.stderr[-2000:]
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            assert out["missing"]["Llama-3.1-8B"]["id"] == gated["id"] and out["missing"]["Llama-3.1-8B"]["reason"]
            assert out["rows"][0] == "Llama-3.1-8B (not loaded)"
        else:
            assert proc.returncode != 0 and "OSError" in proc.stderr
