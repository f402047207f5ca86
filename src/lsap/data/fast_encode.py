"""Batch encoding at tiktoken's speed, with the Hugging Face tokenizer's ids.

Data prep spends its time in the tokenizer: HF's `__call__` encodes ≈ 0.2–0.7 M tokens/s per core
here, tiktoken's Rust core 2–3× that. A byte-level BPE (GPT-2, cl100k and OLMo2's dolma2, Qwen3,
Llama-3, SmolLM2, the BPEs trained by this repo) is a tiktoken rank table when its merge order
follows its ids: merging the adjacent pair whose merged token has the lowest id is then merging by
the merge list's order. `encoder(tok)` reads the tokenizer's own JSON and builds that table where
the tokenizer qualifies (no normaliser or NFC, a split regex or individual digits then byte-level
mapping, no dropout or prefixes, merges in id order, or `ignore_merges` with ids = tiktoken's
ranks); anything else gets HF's Rust backend without masks. The two could still disagree where
tiktoken merges two tokens HF has no merge for, so `shards.write_split` checks a job's first batch
and every 32nd document after it against HF, and re-encodes the whole job with HF on any
difference (`Encoder.check`, `Mismatch`): a shard never holds ids HF would not give.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Callable

# HF's ByteLevel pre-tokenizer with use_regex: GPT-2's split pattern
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Digits(individual_digits) then that ByteLevel: every digit alone, and a whitespace run before a
# digit ends its piece (HF splits at the digit first, so the run is not held back from it)
DIGITS_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""


VERIFY_STRIDE = 32   # after a job's first batch, every 32nd document is also encoded by HF


class Mismatch(RuntimeError):
    """The fast encoder gave ids the Hugging Face tokenizer would not."""


@dataclass
class Encoder:
    """`encode(texts) -> list of id lists` (no special tokens added); `kind`: 'tiktoken' or 'hf'."""
    encode: Callable[[list[str]], list[list[int]]]
    kind: str
    reference: Callable[[list[str]], list[list[int]]]   # HF's own encoding, for check()

    def check(self, texts: list[str], ids: list[list[int]], stride: int = 1) -> None:
        """Raise Mismatch unless every stride-th text's ids are HF's."""
        if self.kind == "hf":
            return
        sample = texts[::stride]
        for text, got, want in zip(sample, ids[::stride], self.reference(sample), strict=True):
            if got != want:
                raise Mismatch(f"text {text[:40]!r}...: {got[:8]}... against HF's {want[:8]}...")


def _pattern(spec: dict) -> str | None:
    """The split regex of a byte-level pre-tokenizer that tiktoken reproduces, else None."""
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel":
        return GPT2_PATTERN if pre.get("use_regex", True) and not pre.get("add_prefix_space") else None
    if pre.get("type") != "Sequence" or len(pre.get("pretokenizers", [])) != 2:
        return None
    split, byte_level = pre["pretokenizers"]
    if (split.get("type") == "Digits" and split.get("individual_digits")
            and byte_level.get("type") == "ByteLevel" and byte_level.get("use_regex", True)
            and not byte_level.get("add_prefix_space")):
        return DIGITS_PATTERN
    if (split.get("type") != "Split" or "Regex" not in split.get("pattern", {}) or split.get("invert")
            or split.get("behavior") != "Isolated" or byte_level.get("type") != "ByteLevel"
            or byte_level.get("use_regex", True) or byte_level.get("add_prefix_space")):
        return None
    return split["pattern"]["Regex"]


def _ranks(spec: dict) -> dict[bytes, int] | None:
    """id per token's bytes when the merges run in id order, one merge per merged token; else None."""
    from lsap.data.vocab import _byte_decoder

    model = spec.get("model") or {}
    if (model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback")
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix")):
        return None
    decoder, vocab = _byte_decoder(), model["vocab"]
    if not all(ch in decoder for piece in vocab for ch in piece):
        return None
    ranks = {bytes(decoder[ch] for ch in piece): i for piece, i in vocab.items()}
    if len(ranks) != len(vocab):
        return None
    if model.get("ignore_merges"):
        # a pre-token that is itself a token is that token (tiktoken does the same); the rest merge
        # by rank. Converted tiktoken vocabularies (cl100k, GPT-2, Llama-3) have ids = tiktoken's
        # ranks but a merge list in another order; check() and the corpus test hold them to HF.
        return ranks
    last = -1
    for merge in model["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        merged = vocab.get(a + b)
        if merged is None or merged <= last:
            return None
        last = merged
    return ranks


def hf_encoder(tok) -> Encoder:
    """HF's Rust backend, batch-encoded without attention masks or offsets."""
    backend = tok.backend_tokenizer

    def hf(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return Encoder(hf, "hf", hf)


def encoder(tok) -> Encoder:
    """The fastest encoder that gives `tok`'s ids (a transformers fast tokenizer)."""
    hf = hf_encoder(tok)
    spec = json.loads(tok.backend_tokenizer.to_str())
    norm = spec.get("normalizer")
    nfc = norm is not None and norm.get("type") == "NFC"   # Qwen's: applied here before tiktoken
    pattern = _pattern(spec) if norm is None or nfc else None
    ranks = _ranks(spec) if pattern else None
    if ranks is None:
        return hf
    import tiktoken

    # HF splits an added token's text out as that token (even with add_special_tokens=False)
    enc = tiktoken.Encoding("lsap", pat_str=pattern, mergeable_ranks=ranks,
                            special_tokens={t.content: i for i, t in tok.added_tokens_decoder.items()})

    def fast(texts: list[str]) -> list[list[int]]:
        if nfc:
            texts = [unicodedata.normalize("NFC", t) for t in texts]
        return enc.encode_batch(texts, num_threads=1, allowed_special="all")
    return Encoder(fast, "tiktoken", hf.encode)
