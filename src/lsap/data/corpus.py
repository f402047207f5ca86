"""The corpus stage: one cleaned, deduplicated JSONL per domain with train/validation/reference
splits, and a manifest of document, character and byte counts.

Splits are decided per document by a hash of its text, so they do not depend on the order in
which sources are read, and adding a document never moves another one between splits.

Scatter/gather: `corpus.parts` jobs each build one slice (`part-PPP/`), a gather writes the
manifest that lists them, and readers see the parts as one corpus, in part order.
  - file sources (the registry assets, small): every part reads them whole, cleans and
    deduplicates exactly as one job would, and keeps the documents whose dedup hash falls in its
    slice; the parts are an exact partition of the one-job corpus, caps included.
  - hub datasets (`hf_dataset`): each part streams only its share of the data files
    (`lsap.data.sources.data_file_share`: every parts-th file; by rows where there are fewer files
    than parts), `max_docs` and
    `max_docs_per_domain` are split evenly between the parts, and exact duplicates are removed
    within a part (SlimPajama is already deduplicated across the whole dataset).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

from lsap.data.sources import read_source
from lsap.io.files import atomic_path, write_json

# teacher: the text the models trained for a method (surrogate, SALT/MiniPLM teachers) read, so
# that no student trains on its teacher's training data
SPLITS = ("train", "validation", "reference", "teacher")


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
    if u < splits["validation"] + splits["reference"] + splits.get("teacher", 0.0):
        return "teacher"  # drawn after the others: a config without it splits exactly as before
    return "train"


def part_name(part: int) -> str:
    return f"part-{part:03d}"


def _streams_its_slice(src: dict) -> bool:
    return src["reader"] == "hf_dataset"


def domain_documents(spec: dict, min_chars: int, max_docs: int | None, seen: set, part: int = 0,
                     parts: int = 1) -> Iterator[str]:
    """Cleaned documents of one domain in slice `part` of `parts`, minus short ones and exact
    (normalised) duplicates, including duplicates of documents already kept by an earlier domain."""
    if max_docs and parts > 1 and any(_streams_its_slice(s) for s in spec["sources"]):
        max_docs = math.ceil(max_docs / parts)
    kept = 0
    for src in spec["sources"]:
        sliced = _streams_its_slice(src)
        for text in read_source(src, part, parts):
            if len(text) < min_chars:
                continue
            key = _dedup_key(text)
            if key in seen:
                continue
            seen.add(key)
            kept += 1
            if sliced or int(key[:8], 16) % parts == part:
                yield text
            if max_docs and kept >= max_docs:
                return


def held_out_index(cfg: dict, log=print):
    """corpus.decontaminate's index of the held-out text, the same in every part: every document of
    a held-out domain (train: false; every part's share, read as that part reads it) and the validation documents
    of the training domains read from files (every part reads those whole). A hub-streamed training
    domain's own validation share is not indexed: a part sees only its slice of it (SlimPajama is
    near-deduplicated by its authors)."""
    from lsap.data.decontaminate import HeldOutIndex

    c = cfg["corpus"]
    index = HeldOutIndex(**c["decontaminate"])
    for spec in c["domains"].values():
        if spec["train"] and any(_streams_its_slice(s) for s in spec["sources"]):
            continue
        for p in range(c["parts"]):  # read as the parts read it: a hub set's share per part, files sliced
            for text in domain_documents(spec, c["min_chars"], c["max_docs_per_domain"], set(), p, c["parts"]):
                if assign_split(text, c["splits"], cfg["seed"], spec["train"]) == "validation":
                    index.add(text)
    log(f"[corpus] decontamination: {len(index)} held-out documents indexed")
    return index


def build(cfg: dict, out_dir: str | Path, part: int = 0, log=print) -> dict:
    """Slice `part` of the corpus (of cfg corpus.parts) into `out_dir`."""
    out_dir = Path(out_dir)
    c = cfg["corpus"]
    seen: set[str] = set()
    index = held_out_index(cfg, log) if c.get("decontaminate") else None
    manifest = {"splits": c["splits"], "seed": cfg["seed"], "part": part, "parts": c["parts"], "domains": {}}
    for domain, spec in c["domains"].items():
        counts = {s: Counter() for s in SPLITS}
        docs = domain_documents(spec, c["min_chars"], c["max_docs_per_domain"], seen, part, c["parts"])
        removed = 0
        with atomic_path(out_dir / f"{domain}.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
            for i, text in enumerate(docs):
                split = assign_split(text, c["splits"], cfg["seed"], spec["train"])
                if index is not None and split != "validation" and index.near_copy(text):
                    removed += 1  # a near-copy of held-out text: in no split a model trains on
                    continue
                f.write(json.dumps({"id": f"{domain}-{part:03d}-{i:08d}", "split": split, "text": text},
                                   ensure_ascii=False) + "\n")
                counts[split].update(documents=1, chars=len(text), bytes=len(text.encode("utf-8")))
        manifest["domains"][domain] = {
            "table1": spec.get("table1"), "train": spec["train"],
            "sources": [{k: v for k, v in s.items()} for s in spec["sources"]],
            **{s: dict(counts[s]) for s in SPLITS}, "near_copies_removed": removed,
        }
        total = sum(counts[s]["documents"] for s in SPLITS)
        log(f"[corpus] {part_name(part)} {domain:10s} {total:7d} docs  " + "  ".join(
            f"{s}={counts[s]['documents']}/{counts[s]['bytes'] / 1e6:.2f}MB" for s in SPLITS)
            + (f"  near-copies of held-out text removed={removed}" if index is not None else ""))
    if not any(d[s].get("documents") for d in manifest["domains"].values() for s in SPLITS):
        raise RuntimeError(f"corpus part {part} of {c['parts']} holds no document after corpus.min_chars "
                           f"({c['min_chars']}) and deduplication: check the sources and min_chars, or lower "
                           f"corpus.parts if the corpus has fewer documents than parts")
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def gather(cfg: dict, corpus_dir: str | Path, log=print) -> dict:
    """The corpus manifest: its parts, in order, and the documents, characters and bytes of every
    domain and split summed over them. A domain with no document anywhere is an error."""
    corpus_dir, c = Path(corpus_dir), cfg["corpus"]
    names = [part_name(p) for p in range(c["parts"])]
    manifest = {"splits": c["splits"], "seed": cfg["seed"], "parts": names, "domains": {}}
    for name in names:
        m = json.loads((corpus_dir / name / "manifest.json").read_text())
        for domain, d in m["domains"].items():
            into = manifest["domains"].setdefault(domain, {**d, **{s: {} for s in SPLITS}, "near_copies_removed": 0})
            for s in SPLITS:
                into[s] = dict(Counter(into[s]) + Counter(d[s]))
            into["near_copies_removed"] += d.get("near_copies_removed", 0)
    for domain, d in manifest["domains"].items():
        total = sum(d[s].get("documents", 0) for s in SPLITS)
        log(f"[corpus] {domain:10s} {total:9d} docs in {len(names)} parts")
        if total == 0:
            raise RuntimeError(f"corpus domain '{domain}' produced no documents: check its sources "
                               f"and corpus.min_chars ({c['min_chars']})")
    write_json(corpus_dir / "manifest.json", manifest)
    return manifest


def iter_documents(corpus_dir: str | Path, split: str, domains=None) -> Iterator[tuple[str, str]]:
    """(domain, text) for every document of a split, in corpus order (part by part); `corpus_dir`
    is the gathered corpus or one part of it."""
    corpus_dir = Path(corpus_dir)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    for part in manifest.get("parts") if isinstance(manifest.get("parts"), list) else ["."]:
        for domain in domains or manifest["domains"]:
            with open(corpus_dir / part / f"{domain}.jsonl", encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    if rec["split"] == split:
                        yield domain, rec["text"]
