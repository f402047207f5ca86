"""The paper run, rehearsed offline: config/paper.yaml transformed by code into a run that this
machine can finish in minutes, with every hub id replaced by a local stand-in built here from
the embedded (registry) assets.

Kept from paper.yaml, whatever it says at the time: the domains and their readers (`hf_dataset`),
the methods and seeds, online LSAP, `compile`, the scattered data jobs, hub-kind tokenizers,
teachers and Table-1 models, the Slurm profile. Scaled down: every size, budget, document count,
part counts (corpus, scoring) and evaluation limit, and `compute.gpus` (2 DDP processes on gloo, under torchrun).
Replaced: hub ids by folders under the output directory, and lm-eval's hub-data tasks by the
pinned offline items (lm-eval's built-in tasks read their data from the hub).

Stand-ins are honest about what they are: text of the embedded corpus in HF `datasets` folders
(one per hub dataset, its configured split and text field, data files a multiple of the part
count so each part streams whole files); tokenizer folders of the embedded tokenizers (cl100k for
OLMo2's dolma2, Qwen3's own, Llama 3's own, GPT-2's for Mistral, whose tokenizer is not
embedded); and randomly initialised checkpoints of the hub models' own architectures, tiny.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from lsap import REPO_ROOT, config, models
from lsap.data import corpus, vocab
from lsap.io import assets
from lsap.io.checkpoints import umask_modes
from lsap.training import plan

TOKENIZER_OF = {"Qwen/": "qwen3", "allenai/OLMo": "cl100k", "meta-llama/": "llama3", "mistralai/": "gpt2"}
TINY_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
              "head_dim": 32, "intermediate_size": 128}
STUDENT = {"arch": "olmo2", "hidden": 64, "layers": 2, "heads": 2, "intermediate": 128}
REFERENCE = {"arch": "qwen3", "hidden": 32, "layers": 2, "heads": 2, "intermediate": 64}
SEQ_LEN, STUDENT_STEPS, REFERENCE_STEPS = 64, 12, 8
TRAIN_DOCS, HELDOUT_DOCS, FILES_PER_PART = 120, 20, 2


def _slug(hub_id: str) -> str:
    return hub_id.replace("/", "__")


def _tokenizer_name(hub_id: str) -> str:
    for prefix, name in TOKENIZER_OF.items():
        if hub_id.startswith(prefix):
            return name
    raise ValueError(f"no stand-in tokenizer for hub id {hub_id} (known prefixes: {', '.join(TOKENIZER_OF)})")


def _tokenizer_folder(hub_id: str, out: Path) -> Path:
    folder = out / "hub" / _slug(hub_id)
    if not (folder / "tokenizer.json").exists():
        vocab.save(vocab.load_pretrained(_tokenizer_name(hub_id)), folder)
    return folder


def _model_folder(hub_id: str, out: Path) -> Path:
    """A tiny, randomly initialised checkpoint of the hub model's architecture, with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = _tokenizer_folder(hub_id, out)
    if not (folder / "config.json").exists():
        arch = models.hub_table()[hub_id]
        n_vocab = len(vocab.load(folder))
        hf = AutoConfig.for_model(arch["model_type"], **TINY_MODEL, vocab_size=-(-n_vocab // 64) * 64,
                                  tie_word_embeddings=arch["tie_word_embeddings"], max_position_embeddings=4096)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(hf).save_pretrained(folder)
        umask_modes(folder)  # safetensors writes 0600: readable like every other output
    return folder


def _dataset_folder(src: dict, texts: list[str], n_files: int, out: Path) -> Path:
    """An HF `datasets` folder: `data/<split>-0000i-of-0000n.jsonl` holding `text_field`."""
    folder = out / "datasets" / _slug(src["dataset"] + ("-" + src["name"] if src.get("name") else ""))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        with open(folder / "data" / f"{src['split']}-{i:05d}-of-{n_files:05d}.jsonl", "w", encoding="utf-8") as f:
            for text in texts[i::n_files]:
                f.write(json.dumps({src["text_field"]: text}, ensure_ascii=False) + "\n")
    return folder


def _embedded_texts(out: Path) -> dict[str, list[str]]:
    """{tiny domain: its documents, shuffled} of the embedded corpus (all splits: a stand-in dataset
    is split again by the rehearsal's own corpus stage)."""
    import random

    tiny = config.load(REPO_ROOT / "config" / "tiny.yaml")
    for name in config.corpus_assets(tiny):
        assets.fetch(name, log=lambda *_: None)
    built = out / "embedded-corpus"
    if not (built / "manifest.json").exists():
        corpus.build(tiny, built, log=lambda *_: None)
    texts: dict[str, list[str]] = {}
    for split in corpus.SPLITS:
        for domain, text in corpus.iter_documents(built, split):
            texts.setdefault(domain, []).append(text)
    for domain, docs in texts.items():
        random.Random(domain).shuffle(docs)
    return texts


def _tiny_domain(column: str | None) -> str:
    """The tiny domain standing in for a Table-1 column (FW-E has none: the mixed Brown corpus)."""
    tiny = config.load(REPO_ROOT / "config" / "tiny.yaml")["corpus"]["domains"]
    return next((d for d, s in tiny.items() if column and s.get("table1") == column), "mixed")


def transform(paper: dict, out: Path) -> dict:
    """paper.yaml, scaled down, its hub ids replaced by stand-in folders under `out`."""
    cfg = copy.deepcopy(paper)
    texts = _embedded_texts(out)
    cfg["run"] = "rehearsal"
    c = cfg["corpus"]
    c["parts"] = min(c["parts"], 2)
    # held-out domains first, each from its own tiny domain; the training stand-in from what is left
    # of all of them: no document is in two stand-ins (the corpus stage would drop it as a duplicate)
    ordered = sorted(c["domains"].values(), key=lambda spec: spec["train"])
    for spec in ordered:
        for src in spec["sources"]:
            if src["reader"] != "hf_dataset":
                continue
            cap = TRAIN_DOCS if spec["train"] else HELDOUT_DOCS
            src["max_docs"] = min(src.get("max_docs") or cap, cap)
            if spec["train"]:
                left = [t for d in sorted(texts) for t in texts[d]]
                docs = [left[i] for i in range(0, len(left), max(1, len(left) // src["max_docs"]))][: src["max_docs"]]
            else:
                pool = texts[_tiny_domain(spec.get("table1"))]
                docs, pool[:] = pool[: src["max_docs"]], pool[src["max_docs"]:]
            n_files = FILES_PER_PART * c["parts"] if spec["train"] else 1
            src["dataset"] = str(_dataset_folder(src, docs, n_files, out))
            src["name"] = None  # a hub config name selects a subset of the hub dataset; the folder is that subset
            src.pop("revision", None)  # a folder has no revisions
    for spec in cfg["tokenizers"].values():
        if spec["kind"] == "hub":
            spec["id"] = str(_tokenizer_folder(spec["id"], out))
            spec.pop("revision", None)
    for m in [*cfg["students"]["teachers"].values(), *cfg["analysis"]["table1"]["models"]]:
        if m["kind"] == "hub":
            m["id"] = str(_model_folder(m["id"], out))
            m.pop("revision", None)
    t1 = cfg["analysis"]["table1"]
    t1.update(examples=2, seq_len=32, batch_size=4, seeds=t1.get("seeds", [21, 42, 67])[:1])
    cfg["shards"]["seq_len"] = SEQ_LEN
    cfg["evaluation"] = {"source": "offline", "limit": 4, "batch_size": 8, "bootstrap_iters": 100,
                         "bpb_max_bytes": 2000, "metric": paper["evaluation"].get("metric", "acc_norm_else_acc"),
                         # the probe kept, at 16 items; its sentences (≤ 300 characters) are longer than
                         # the rehearsal's 64-token context under a small vocabulary: rotary students score past it
                         "minimal_pairs_items": 16, "max_length": 512}
    t = cfg["training"]
    t.update(micro_batch=2, grad_accum=1, save_every_steps=4, checkpoint_fractions=[1.0], eval_sequences=8)
    t.pop("global_batch", None)  # the rehearsal's batch: one micro-batch per rank
    # scattered scoring kept, at 2 parts per selection (a gather of several, not 192 Slurm jobs)
    cfg["compute"] = {**cfg.get("compute", {}), "gpus": 2,
                      "scoring_parts": min(2, cfg.get("compute", {}).get("scoring_parts", 1))}
    batch = 2 * 1 * 2
    n_student = len(vocab.load(cfg["tokenizers"]["student"]["id"])) if cfg["tokenizers"]["student"]["kind"] == "hub" \
        else 4096
    cfg["students"]["model"] = dict(STUDENT)
    cfg["students"]["budget_flops"] = plan.budget_for_steps(STUDENT, n_student, SEQ_LEN, batch, STUDENT_STEPS)
    for ref in cfg["references"].values():
        ref["model"] = dict(REFERENCE)
        ref["budget_flops"] = plan.budget_for_steps(REFERENCE, n_student, SEQ_LEN, batch, REFERENCE_STEPS)
    return config.validate(cfg, source="the rehearsal of config/paper.yaml")


def build(paper_path: str | Path, out: str | Path) -> Path:
    """Stand-ins + the transformed config, written as `out`/rehearsal.yaml; returns its path."""
    out = Path(out).resolve()
    cfg = transform(config.load(paper_path), out)
    path = out / "rehearsal.yaml"
    path.write_text("# Generated by `python -m lsap rehearse` from " + str(paper_path) + ": do not edit.\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return path
