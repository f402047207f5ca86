"""Token shards: each split as flat memory-mapped token arrays (EOS after every document), read
as packed fixed-length sequences, with manifests that must agree with the bytes on disk.

A sequence is seq_len + 1 tokens (inputs and shifted targets), chunks do not overlap, and the
order is corpus order: selection methods (MiniPLM, SALT_DS) index sequences by position.

Scatter/gather: one job per corpus part writes `part-PPP/<split>.bin` (+ its manifest and its
unigram counts); the gather writes `<split>.json`, which lists the parts, and `open_shard` reads
them as one dataset. Each part packs its own sequences (at most one partial sequence per part is
dropped).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsap.data import corpus, fast_encode, vocab
from lsap.io.files import atomic_path, read_json, sha256_file, write_json

FORMAT = 3  # 2: the manifest carries the unigram entropy; 3: parts, listed by the gathered manifest
_BATCH_DOCS = 1024
SPLITS = corpus.SPLITS


class ShardError(RuntimeError):
    """A shard whose manifest disagrees with its contents (or with the expected tokenizer)."""


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_split(tok_dir: str | Path, corpus_dir: str | Path, split: str, out_dir: str | Path,
                seq_len: int, log=print) -> dict:
    tok = vocab.load(tok_dir)
    enc = fast_encode.encoder(tok)
    try:
        return _write_split(tok, enc, tok_dir, corpus_dir, split, out_dir, seq_len, log)
    except fast_encode.Mismatch as e:
        # the shard must hold HF's ids: start again with HF's encoder (nothing was published)
        log(f"[shards] {split}: the {enc.kind} encoder differs from the tokenizer ({e}); re-encoding with HF")
        return _write_split(tok, fast_encode.hf_encoder(tok), tok_dir, corpus_dir, split, out_dir,
                            seq_len, log)


def _write_split(tok, enc, tok_dir, corpus_dir, split, out_dir, seq_len, log) -> dict:
    eos, n_vocab = vocab.eos_id(tok), len(tok)
    dtype = token_dtype(n_vocab)
    out_dir = Path(out_dir)
    stats: dict[str, Counter] = {}
    unigram = np.zeros(n_vocab, dtype=np.int64)
    n_tokens, n_batches = 0, 0

    def flush(f, batch):
        nonlocal n_tokens, n_batches
        texts = [t for _, t in batch]
        ids = enc.encode(texts)
        # the first batch checked whole, then every VERIFY_STRIDE-th document
        enc.check(texts, ids, stride=1 if n_batches == 0 else fast_encode.VERIFY_STRIDE)
        n_batches += 1
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) + 1
        for (domain, text), n in zip(batch, lengths.tolist(), strict=True):
            stats.setdefault(domain, Counter()).update(documents=1, tokens=n, bytes=len(text.encode("utf-8")))
        flat = np.full(int(lengths.sum()), eos, dtype=dtype)   # EOS where no document token lands
        ends = np.cumsum(lengths) - 1
        body = np.ones(len(flat), dtype=bool)
        body[ends] = False
        flat[body] = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=len(flat) - len(ids))
        flat.tofile(f)
        unigram[:] += np.bincount(flat, minlength=n_vocab)
        n_tokens += len(flat)

    with atomic_path(out_dir / f"{split}.bin") as tmp:
        with open(tmp, "wb") as f:
            batch = []
            for item in corpus.iter_documents(corpus_dir, split):
                batch.append(item)
                if len(batch) == _BATCH_DOCS:
                    flush(f, batch)
                    batch = []
            if batch:
                flush(f, batch)
        digest = sha256_file(tmp)
    with atomic_path(out_dir / f"{split}.unigram.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, unigram)
    manifest = {
        "format": FORMAT, "split": split, "dtype": dtype.name, "n_tokens": n_tokens,
        "seq_len": seq_len, "n_sequences": n_tokens // (seq_len + 1), "eos_id": eos,
        "vocab_size": n_vocab, "tokenizer": vocab.fingerprint(tok_dir), "sha256": digest,
        "documents": sum(s["documents"] for s in stats.values()),
        "domains": {d: dict(s) for d, s in stats.items()},
        # the loss of a model that ignores context: a trained LM must fall well below it
        "unigram_entropy": _entropy(unigram),
    }
    write_json(out_dir / f"{split}.json", manifest)
    log(f"[shards] {split:10s} {manifest['documents']:7d} docs {n_tokens:10,d} tokens "
        f"{manifest['n_sequences']:7d} x {seq_len + 1} ({dtype.name}, {enc.kind} encoder)")
    return manifest


def _entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the distribution the counts describe."""
    p = counts[counts > 0] / max(counts.sum(), 1)
    return float(-(p * np.log(p)).sum())


def gather(shards_dir: str | Path, n_parts: int, log=print) -> dict[str, dict]:
    """`<split>.json` for every split: the parts in order, their sizes and hashes, and the split's
    totals (documents and tokens per domain, the unigram entropy of all parts together)."""
    shards_dir, out = Path(shards_dir), {}
    names = [corpus.part_name(p) for p in range(n_parts)]
    for split in SPLITS:
        parts = [read_json(shards_dir / n / f"{split}.json") for n in names]
        for n, p in zip(names, parts, strict=True):  # content verified here, once: jobs check sizes
            if problem := _part_problem(shards_dir / n / f"{split}.bin", p, p, verify=True):
                raise ShardError(f"{shards_dir / n / f'{split}.bin'}: {problem}: rerun the shards jobs of {n}")
        for key in ("format", "seq_len", "dtype", "eos_id", "vocab_size", "tokenizer"):
            if len({str(p[key]) for p in parts}) != 1:
                raise ShardError(f"the parts of {shards_dir}/{split} disagree on {key}: rerun their shards jobs")
        unigram = sum(np.load(shards_dir / n / f"{split}.unigram.npy") for n in names)
        domains: dict[str, Counter] = {}
        for p in parts:
            for d, c in p["domains"].items():
                domains[d] = domains.get(d, Counter()) + Counter(c)
        first = parts[0]
        manifest = {k: first[k] for k in ("format", "seq_len", "dtype", "eos_id", "vocab_size", "tokenizer")}
        manifest.update(
            split=split, n_tokens=sum(p["n_tokens"] for p in parts), n_sequences=sum(p["n_sequences"] for p in parts),
            documents=sum(p["documents"] for p in parts), domains={d: dict(c) for d, c in domains.items()},
            unigram_entropy=_entropy(unigram),
            parts=[{"bin": f"{n}/{split}.bin", **{k: p[k] for k in ("n_tokens", "n_sequences", "sha256")}}
                   for n, p in zip(names, parts, strict=True)],
            # one hash of the whole split: what caches and selections keyed on this data record
            sha256=hashlib.sha256("".join(p["sha256"] for p in parts).encode()).hexdigest())
        write_json(shards_dir / f"{split}.json", manifest)
        log(f"[shards] {split:10s} {manifest['documents']:9d} docs {manifest['n_tokens']:14,d} tokens "
            f"{manifest['n_sequences']:9d} sequences in {n_parts} parts")
        out[split] = manifest
    return out


class PackedSequences:
    """(n_sequences, seq_len + 1) sequences of several parts, indexed as one array (ints, slices,
    index arrays); each lookup copies only the rows it returns."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.offsets[-1]), parts[0].shape[1])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index, dtype=np.int64)
        flat = np.atleast_1d(index)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"sequence index out of range 0..{len(self) - 1}")
        part = np.searchsorted(self.offsets, flat, side="right") - 1
        rows = np.empty((len(flat), self.shape[1]), dtype=self.dtype)
        for p in np.unique(part):
            at = part == p
            rows[at] = self.parts[p][flat[at] - self.offsets[p]]
        return rows[0] if index.ndim == 0 else rows


@dataclass
class Shard:
    path: Path                  # the split's manifest
    manifest: dict
    parts: list[np.ndarray]     # flat token memmaps, one per part

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    @property
    def sequences(self):
        """(n_sequences, seq_len + 1) view of the packed token streams (each part's tail dropped)."""
        width = self.seq_len + 1
        views = [t[: (len(t) // width) * width].reshape(-1, width) for t in self.parts]
        return views[0] if len(views) == 1 else PackedSequences(views)

    def __len__(self) -> int:
        return self.manifest["n_sequences"]


def unigram_counts(shard: "Shard") -> np.ndarray:
    """The split's token counts (the sum of its parts' `<split>.unigram.npy`, written beside them)."""
    bins = [p["bin"] for p in shard.manifest.get("parts") or [{"bin": f"{shard.manifest['split']}.bin"}]]
    return sum(np.load(shard.path.parent / b.replace(".bin", ".unigram.npy")) for b in bins)


def open_shard(shards_dir: str | Path, split: str, tokenizer: str | None = None, verify: bool = True) -> Shard:
    """Split `split` of a shards folder (gathered parts, or the files of one part), refusing it if a
    manifest and its files disagree (format, tokenizer, sizes, the parts' hashes against the
    split's). `tokenizer`: the fingerprint the caller expects; `verify`: also hash every part and
    check its id range. The gather verified the content once; a job opens with verify=False (a
    paper-size split is ≈ 200 GB: hashing it in every rank of every job start took minutes)."""
    shards_dir = Path(shards_dir)
    man_path = shards_dir / f"{split}.json"
    if not man_path.exists():
        raise ShardError(f"shard manifest {man_path} is missing: rerun the shards stage")
    m = read_json(man_path)
    parts = m.get("parts") or [{"bin": f"{split}.bin", **{k: m.get(k) for k in ("n_tokens", "n_sequences", "sha256")}}]
    problem = None
    if m.get("format") != FORMAT:
        problem = f"format {m.get('format')} != {FORMAT}"
    elif tokenizer is not None and tokenizer != m["tokenizer"]:
        problem = f"it was made with tokenizer {m['tokenizer'][:12]}, expected {tokenizer[:12]}"
    elif m.get("parts") and hashlib.sha256("".join(p["sha256"] for p in parts).encode()).hexdigest() != m["sha256"]:
        problem = "its parts' hashes do not make up the split's sha256 (the manifest was edited)"
    tokens = []
    for p in parts if problem is None else []:
        bin_path = shards_dir / p["bin"]
        problem = _part_problem(bin_path, p, m, verify)
        if problem:
            problem = f"{bin_path}: {problem}"
            break
        tokens.append(np.memmap(bin_path, dtype=m["dtype"], mode="r") if p["n_tokens"] else np.zeros(0, m["dtype"]))
    if problem is None:
        return Shard(man_path, m, tokens)
    raise ShardError(f"refusing shard {man_path}: {problem}. Delete {shards_dir} and rerun the shards stage "
                     f"(snakemake rebuilds it).")


def _part_problem(bin_path: Path, part: dict, m: dict, verify: bool) -> str | None:
    if not bin_path.exists():
        return "the file is missing"
    if bin_path.stat().st_size != part["n_tokens"] * np.dtype(m["dtype"]).itemsize:
        return f"file holds {bin_path.stat().st_size} bytes, manifest says {part['n_tokens']} {m['dtype']} tokens"
    if verify and sha256_file(bin_path) != part["sha256"]:
        return "its sha256 differs from the manifest's (the file was changed or truncated)"
    if verify and part["n_tokens"]:
        if int(np.memmap(bin_path, dtype=m["dtype"], mode="r").max()) >= m["vocab_size"]:
            return f"it holds token ids >= its vocabulary size {m['vocab_size']}"
    return None
