"""Token shards: each split as one flat memory-mapped token array (EOS after every document),
read as packed fixed-length sequences, with a manifest that must agree with the bytes on disk.

A sequence is seq_len + 1 tokens (inputs and shifted targets), chunks do not overlap, and the
order is corpus order: selection methods (MiniPLM, SALT_DS) index sequences by position.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsap import corpus, vocab
from lsap.files import atomic_path, read_json, sha256_file, write_json

FORMAT = 2  # 2: the manifest carries the unigram entropy
_BATCH_DOCS = 256


class ShardError(RuntimeError):
    """A shard whose manifest disagrees with its contents (or with the expected tokenizer)."""


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_split(tok_dir: str | Path, corpus_dir: str | Path, split: str, out_dir: str | Path,
                seq_len: int, log=print) -> dict:
    tok = vocab.load(tok_dir)
    eos, n_vocab = vocab.eos_id(tok), len(tok)
    dtype = token_dtype(n_vocab)
    out_dir = Path(out_dir)
    stats: dict[str, Counter] = {}
    unigram = np.zeros(n_vocab, dtype=np.int64)
    n_tokens = 0

    def flush(f, batch):
        nonlocal n_tokens
        ids = tok([t for _, t in batch], add_special_tokens=False)["input_ids"]
        for (domain, text), doc in zip(batch, ids, strict=True):
            stats.setdefault(domain, Counter()).update(documents=1, tokens=len(doc) + 1,
                                                       bytes=len(text.encode("utf-8")))
        flat = np.fromiter((t for doc in ids for t in (*doc, eos)), dtype=np.int64)
        np.asarray(flat, dtype=dtype).tofile(f)
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
        f"{manifest['n_sequences']:7d} x {seq_len + 1} ({dtype.name})")
    return manifest


def _entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the distribution the counts describe."""
    p = counts[counts > 0] / max(counts.sum(), 1)
    return float(-(p * np.log(p)).sum())


@dataclass
class Shard:
    path: Path
    manifest: dict
    tokens: np.ndarray  # flat memmap

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    @property
    def sequences(self) -> np.ndarray:
        """(n_sequences, seq_len + 1) view of the packed token stream (the tail is dropped)."""
        n, width = self.manifest["n_sequences"], self.seq_len + 1
        return self.tokens[: n * width].reshape(n, width)

    def __len__(self) -> int:
        return self.manifest["n_sequences"]


def open_shard(bin_path: str | Path, tokenizer: str | None = None, verify: bool = True) -> Shard:
    """Open a shard, refusing it if the manifest and the file disagree. `tokenizer`: the
    fingerprint the caller expects; `verify`: also check the content hash and the id range."""
    bin_path = Path(bin_path)
    man_path = bin_path.with_suffix(".json")
    if not bin_path.exists() or not man_path.exists():
        raise ShardError(f"shard {bin_path} or its manifest {man_path.name} is missing: rerun the shards stage")
    m = read_json(man_path)
    problem = None
    if m.get("format") != FORMAT:
        problem = f"format {m.get('format')} != {FORMAT}"
    elif bin_path.stat().st_size != m["n_tokens"] * np.dtype(m["dtype"]).itemsize:
        problem = (f"file holds {bin_path.stat().st_size} bytes, manifest says {m['n_tokens']} "
                   f"{m['dtype']} tokens")
    elif tokenizer is not None and tokenizer != m["tokenizer"]:
        problem = f"it was made with tokenizer {m['tokenizer'][:12]}, expected {tokenizer[:12]}"
    elif verify and sha256_file(bin_path) != m["sha256"]:
        problem = "its sha256 differs from the manifest's (the file was changed or truncated)"
    if problem is None:
        tokens = np.memmap(bin_path, dtype=m["dtype"], mode="r") if m["n_tokens"] else np.zeros(0, m["dtype"])
        if verify and m["n_tokens"] and int(tokens.max()) >= m["vocab_size"]:
            problem = f"it holds token ids >= its vocabulary size {m['vocab_size']}"
        else:
            return Shard(bin_path, m, tokens)
    raise ShardError(f"refusing shard {bin_path}: {problem}. Delete it and rerun the shards stage.")
