"""A checkpoint a lab can use: weights readable like every other output, the tokenizer's special
ids in config.json, a model card in the final checkpoint.

The run is real and tiny: this repository's own documentation as a one-domain corpus, a BPE
trained on it, real shards, and the train stage (`stages.train.run_job`) in this process, so the
files checked are exactly what a training job writes."""

import json
import os
import stat

import pytest

from lsap import REPO_ROOT, config, models
from lsap.data import shards, vocab

TINY = {"arch": "olmo2", "hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}
SEQ, MICRO, ACCUM, STEPS = 32, 4, 1, 8


def tiny_corpus(root):
    """The repository's Markdown, one document per paragraph; every 10th to validation."""
    paras = [p.strip() for f in sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]
             for p in f.read_text().split("\n\n") if len(p.strip()) > 80]
    out = root / "corpus"
    out.mkdir(parents=True)
    recs = [{"id": f"doc{i}", "split": "validation" if i % 10 == 0 else "train", "text": t} for i, t in enumerate(paras)]
    (out / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (out / "manifest.json").write_text(json.dumps({"domains": {"docs": {}}}))
    return out, [r["text"] for r in recs if r["split"] == "train"]


def tiny_setup(root):
    """A tiny student's inputs: (the validated config, the tokenizer folder, the shards folder)."""
    corpus, texts = tiny_corpus(root)
    tok_dir = vocab.save(vocab.train_bpe(texts, 300), root / "tok")
    for split in ("train", "validation"):
        shards.write_split(tok_dir, corpus, split, root / "shards", seq_len=SEQ, log=lambda *_: None)
    cfg = config.load(REPO_ROOT / "config" / "tiny.yaml")
    cfg = {**cfg, "training": {**cfg["training"], "micro_batch": MICRO, "grad_accum": ACCUM, "save_every_steps": 4,
                               "eval_sequences": 4, "lr": 1e-3},
           "students": {**cfg["students"], "model": TINY, "primary_contrast": None}}
    probe = models.build(TINY, len(vocab.load(tok_dir)), SEQ, 0)
    cfg["students"]["budget_flops"] = (STEPS + 0.5) * models.train_flops_per_token(probe) * MICRO * ACCUM * SEQ
    return config.validate(cfg), tok_dir, root / "shards"


def tiny_run(root):
    """The train stage on a tiny student, in this process: (the run folder, the config, the tokenizer)."""
    from lsap.stages.train import run_job

    cfg, tok_dir, shards_dir = tiny_setup(root)
    out = root / "students" / "ce-s0"
    run_job(cfg, "student", tok_dir, shards_dir, out, key="testkey", method="ce", seed=0)
    return out, cfg, tok_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    old = os.umask(0o022)  # a lab's usual umask: files 0644, folders 0755
    try:
        yield tiny_run(tmp_path_factory.mktemp("ckpt"))
    finally:
        os.umask(old)


def test_weights_have_the_mode_of_every_other_file(run):
    """Fails on the code before this change: save_pretrained writes model.safetensors through a
    temporary file, so it is 0600 while config.json and the tokenizer beside it are 0644."""
    out, _, _ = run
    folders = sorted((out / "checkpoints").glob("frac-*"))
    assert len(folders) >= 2
    for folder in folders:
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}
        assert "model.safetensors" in modes and "config.json" in modes and "tokenizer.json" in modes, modes
        assert set(modes.values()) == {0o644}, {k: oct(v) for k, v in modes.items()}


def test_config_names_the_tokenizers_special_ids(run):
    """Fails on the code before this change: config.json held bos/eos/pad = null (models.build sets
    none), so generation never stops at the end of a document."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, _ = run
    folder = out / "checkpoints" / "frac-1.00"
    tok = AutoTokenizer.from_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert AutoModelForCausalLM.from_pretrained(folder).config.eos_token_id == tok.eos_token_id
    # the weight record still matches: the ids went into config.json, not into the weights
    from lsap.io import checkpoints

    checkpoints.verify(folder)


def test_final_checkpoint_has_a_model_card(run):
    """Fails on the code before this change: no checkpoint had a README.md."""
    from lsap.report.provenance import git_commit

    out, cfg, _ = run
    card = (out / "checkpoints" / "frac-1.00" / "README.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    for row in ("| method | `ce`", "| budget |", "| tokens |", "| data |", "| held-out |", "| provenance |"):
        assert row in card, (row, card)
    assert f"{summary['tokens']:,}" in card and f"{summary['final_val_loss']:.4g}" in card
    assert git_commit() in card and "config `tiny` hash" in card and "job key `testkey`" in card
    assert not (out / "checkpoints" / "frac-0.25" / "README.md").exists()  # the final one only
