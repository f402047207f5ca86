"""The corpus stage: one cleaned, deduplicated JSONL per domain with train/validation/reference
splits, and a manifest of document, character and byte counts.

Splits are decided per document by a hash of its text, so they do not depend on the order in
which sources are read, and adding a document never moves another one between splits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

from lsap.files import atomic_path, write_json
from lsap.sources import read_source

SPLITS = ("train", "validation", "reference")


def _dedup_key(text: str) -> str:
    return hashlib.sha1(re.sub(r"\s+", " ", text.casefold()).strip().encode()).hexdigest()


def assign_split(text: str, splits: dict, seed: int, train: bool = True) -> str:
    """Deterministic split of one document: a uniform draw from a hash of (seed, text)."""
    if not train:
        return "validation"  # a held-out-only domain (paper: the Table-1 datasets)
    u = int(hashlib.sha256(f"{seed}\x00{text}".encode()).hexdigest()[:15], 16) / 16**15
    if u < splits["validation"]:
        return "validation"
    if u < splits["validation"] + splits["reference"]:
        return "reference"
    return "train"


def domain_documents(spec: dict, min_chars: int, max_docs: int | None, seen: set) -> Iterator[str]:
    """Cleaned documents of one domain, minus short ones and exact (normalised) duplicates,
    including duplicates of documents already kept by an earlier domain."""
    kept = 0
    for src in spec["sources"]:
        for text in read_source(src):
            if len(text) < min_chars:
                continue
            key = _dedup_key(text)
            if key in seen:
                continue
            seen.add(key)
            yield text
            kept += 1
            if max_docs and kept >= max_docs:
                return


def build(cfg: dict, out_dir: str | Path, log=print) -> dict:
    out_dir = Path(out_dir)
    c = cfg["corpus"]
    seen: set[str] = set()
    manifest = {"splits": c["splits"], "seed": cfg["seed"], "domains": {}}
    for domain, spec in c["domains"].items():
        counts = {s: Counter() for s in SPLITS}
        with atomic_path(out_dir / f"{domain}.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
            for i, text in enumerate(domain_documents(spec, c["min_chars"], c["max_docs_per_domain"], seen)):
                split = assign_split(text, c["splits"], cfg["seed"], spec["train"])
                f.write(json.dumps({"id": f"{domain}-{i:07d}", "split": split, "text": text},
                                   ensure_ascii=False) + "\n")
                counts[split].update(documents=1, chars=len(text), bytes=len(text.encode("utf-8")))
        manifest["domains"][domain] = {
            "table1": spec.get("table1"), "train": spec["train"],
            "sources": [{k: v for k, v in s.items()} for s in spec["sources"]],
            **{s: dict(counts[s]) for s in SPLITS},
        }
        total = sum(counts[s]["documents"] for s in SPLITS)
        log(f"[corpus] {domain:10s} {total:7d} docs  " + "  ".join(
            f"{s}={counts[s]['documents']}/{counts[s]['bytes'] / 1e6:.2f}MB" for s in SPLITS))
        if total == 0:
            raise RuntimeError(f"corpus domain '{domain}' produced no documents: check its sources "
                               f"and corpus.min_chars ({c['min_chars']})")
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def iter_documents(corpus_dir: str | Path, split: str, domains=None) -> Iterator[tuple[str, str]]:
    """(domain, text) for every document of a split, in corpus order."""
    corpus_dir = Path(corpus_dir)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    for domain in domains or manifest["domains"]:
        with open(corpus_dir / f"{domain}.jsonl", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec["split"] == split:
                    yield domain, rec["text"]
