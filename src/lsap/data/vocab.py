"""Tokenizers: load real ones fully offline (cl100k, GPT-2, Qwen3, Llama-3, SmolLM2, Gemma-3),
or train the tiny config's small byte-level BPEs. Every tokenizer leaves this module as a
Hugging Face fast tokenizer saved in HF format, so downstream code never asks where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from lsap.io.assets import asset_path
from lsap.io.files import atomic_dir, sha256_file

EOS = "<|endoftext|>"
PAD = "<|pad|>"

# tiktoken's split patterns (public constants of tiktoken_ext.openai_public)
_CL100K_PAT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
               r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# name -> (asset, path key, loader kind, extra). cl100k stands in for OLMo2's dolma2 tokenizer
# (a modified cl100k); SmolLM2 and Gemma-3 tokenizers come out of their GGUF files.
PRETRAINED = {
    "cl100k": ("tiktoken-cl100k", "cl100k", "tiktoken", (_CL100K_PAT, 100257)),
    "gpt2": ("whisper-gpt2", "gpt2", "tiktoken", (_GPT2_PAT, 50256)),
    "qwen3": ("qwen3-tokenizer", "tokenizer", "tokenizer_json", None),
    "llama3": ("llama3-tokenizer", "tokenizer", "tokenizer_json", None),
    "smollm2": ("smollm2", "gguf", "gguf", None),
    "gemma3": ("gemma3", "gguf", "gguf", None),
}


def load_pretrained(name: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    asset, key, kind, extra = PRETRAINED[name]
    path = asset_path(asset, key)
    if kind == "tiktoken":
        from transformers.convert_slow_tokenizer import TikTokenConverter

        pattern, eos_id = extra
        backend = TikTokenConverter(vocab_file=str(path), pattern=pattern,
                                    extra_special_tokens={EOS: eos_id}).converted()
        return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, bos_token=EOS,
                                       unk_token=None, clean_up_tokenization_spaces=False)
    if kind == "tokenizer_json":
        return AutoTokenizer.from_pretrained(str(path.parent), clean_up_tokenization_spaces=False)
    from lsap.io import gguf_cache

    return AutoTokenizer.from_pretrained(str(gguf_cache.tokenizer_folder(path)), clean_up_tokenization_spaces=False)


def train_bpe(texts: Iterable[str], vocab_size: int, split_digits: bool = False):
    """A byte-level BPE (GPT-2 style) trained on `texts`; every byte is in the base alphabet,
    so any string encodes and decodes losslessly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False)


def build(spec: dict, train_texts: Iterable[str] | None = None):
    """The tokenizer a config's `tokenizers.<role>` section describes."""
    if spec["kind"] == "bpe":
        if train_texts is None:
            raise ValueError("a 'bpe' tokenizer needs training text (the corpus train split)")
        return train_bpe(train_texts, spec["vocab_size"], spec.get("split_digits", False))
    if spec["kind"] == "pretrained":
        return load_pretrained(spec["name"])
    from transformers import AutoTokenizer

    from lsap.io import snapshot

    with snapshot.reading(spec["id"]):
        return AutoTokenizer.from_pretrained(spec["id"], revision=spec.get("revision"), clean_up_tokenization_spaces=False)


def save(tok, out_dir: str | Path) -> Path:
    with atomic_dir(out_dir) as tmp:
        tok.save_pretrained(str(tmp))
    return Path(out_dir)


def build_role(cfg: dict, role: str, corpus_dir, out_dir) -> Path:
    """The tokenizer stage: one role's tokenizer (a BPE trained on the corpus train split, or a
    pretrained one), saved in HF format."""
    from lsap.data import corpus

    spec = cfg["tokenizers"][role]
    texts = None
    if spec["kind"] == "bpe":
        texts = (t for _, t in corpus.iter_documents(corpus_dir, "train", spec["train_domains"]))
    tok = build(spec, texts)
    save(tok, out_dir)
    print(f"[tokenizer] {role}: {spec} -> {out_dir} ({len(tok)} tokens)")
    return Path(out_dir)


def load(tok_dir: str | Path):
    """A tokenizer saved by this module's `save` (the form every later stage reads)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir), clean_up_tokenization_spaces=False)


def fingerprint(tok_dir: str | Path) -> str:
    """Identity of a saved tokenizer: the hash of its tokenizer.json (vocabulary, merges, specials)."""
    return sha256_file(Path(tok_dir) / "tokenizer.json")


def boundary_id(tok) -> int:
    """The document-boundary token: <|endoftext|> where the vocabulary has it (an instruct
    model's EOS is its end-of-turn token, not a document boundary), else EOS."""
    return tok.convert_tokens_to_ids(EOS) if EOS in tok.get_vocab() else eos_id(tok)


def eos_id(tok) -> int:
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {tok.name_or_path} has no EOS token: documents cannot be separated")
    return tok.eos_token_id


# ---- Σ∩: the shared vocabulary, over the tokens' byte strings ------------------------------
NOT_IN_SURROGATE = -100  # F_b→s marker: the paper's -100, fed to the surrogate as a masked pad
NOT_IN_BASE = -1         # F_s→b marker: stands for the paper's -inf (the target is dropped)


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: byte-level BPE writes byte b as this character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def token_bytes(tok) -> list[bytes | None]:
    """The byte string of every id (None for special tokens, which are matched explicitly).

    Byte-level BPE (GPT-2, cl100k, Qwen3, Llama-3, SmolLM2) maps bytes to printable characters;
    SentencePiece-style vocabularies (Gemma) write a space as '▁' and raw bytes as '<0xNN>'.
    """
    import json

    backend = json.loads(tok.backend_tokenizer.to_str())
    byte_level = "ByteLevel" in json.dumps(backend.get("decoder"))
    decoder = _byte_decoder()
    special = {t.content for t in tok.added_tokens_decoder.values() if t.special}
    out: list[bytes | None] = [None] * len(tok)
    for piece, i in tok.get_vocab().items():
        if i >= len(out) or piece in special:
            continue
        if byte_level:
            if all(ch in decoder for ch in piece):
                out[i] = bytes(decoder[ch] for ch in piece)
            else:  # an added, non-special token written in plain text
                out[i] = piece.encode("utf-8")
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out[i] = bytes([int(piece[3:5], 16)])
        else:
            out[i] = piece.replace("\u2581", " ").encode("utf-8")
    return out


def _first_id(byte_list: list[bytes | None]) -> dict[bytes, int]:
    ids: dict[bytes, int] = {}
    for i, b in enumerate(byte_list):
        if b is not None and b not in ids:  # duplicates: the lowest id is canonical
            ids[b] = i
    return ids


def translation_tables(base, surrogate) -> tuple[np.ndarray, np.ndarray]:
    """F_b→s (len |Σ_b|, NOT_IN_SURROGATE outside Σ∩) and F_s→b (len |Σ_s|, NOT_IN_BASE outside).

    Σ∩ is the set of byte strings in both vocabularies. EOS maps to EOS explicitly, so the
    surrogate sees document boundaries; other special tokens are outside Σ∩.
    """
    b_ids, s_ids = _first_id(token_bytes(base)), _first_id(token_bytes(surrogate))
    b_to_s = np.full(len(base), NOT_IN_SURROGATE, dtype=np.int64)
    s_to_b = np.full(len(surrogate), NOT_IN_BASE, dtype=np.int64)
    for piece, b in b_ids.items():
        s = s_ids.get(piece)
        if s is not None:
            b_to_s[b], s_to_b[s] = s, b
    b_eos, s_eos = boundary_id(base), boundary_id(surrogate)
    b_to_s[b_eos], s_to_b[s_eos] = s_eos, b_eos
    return b_to_s, s_to_b


def intersection_size(b_to_s: np.ndarray, count_specials: bool = False) -> int:
    """|Σ∩| (the EOS↔EOS pair is a special token: not counted unless asked)."""
    return int((b_to_s != NOT_IN_SURROGATE).sum()) - (0 if count_specials else 1)


def save_translation(path, base, surrogate) -> dict:
    """Both tables of a (base, surrogate) pair as one .npz, with the sizes they were built for."""
    from lsap.io.files import atomic_path

    b_to_s, s_to_b = translation_tables(base, surrogate)
    meta = {"base_size": len(base), "surrogate_size": len(surrogate), "intersection": intersection_size(b_to_s),
            "base_boundary": boundary_id(base), "surrogate_boundary": boundary_id(surrogate)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, b_to_s=b_to_s, s_to_b=s_to_b, **{k: np.int64(v) for k, v in meta.items()})
    return meta


def load_translation(path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["b_to_s"], z["s_to_b"]
