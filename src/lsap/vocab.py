"""Tokenizers: load real ones fully offline (cl100k, GPT-2, Qwen3, Llama-3, SmolLM2, Gemma-3),
or train the tiny config's small byte-level BPEs. Every tokenizer leaves this module as a
Hugging Face fast tokenizer saved in HF format, so downstream code never asks where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from lsap.assets import asset_path
from lsap.files import atomic_dir, sha256_file

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
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name,
                                         clean_up_tokenization_spaces=False)


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

    return AutoTokenizer.from_pretrained(spec["id"], clean_up_tokenization_spaces=False)


def save(tok, out_dir: str | Path) -> Path:
    with atomic_dir(out_dir) as tmp:
        tok.save_pretrained(str(tmp))
    return Path(out_dir)


def load(tok_dir: str | Path):
    """A tokenizer saved by this module's `save` (the form every later stage reads)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir), clean_up_tokenization_spaces=False)


def fingerprint(tok_dir: str | Path) -> str:
    """Identity of a saved tokenizer: the hash of its tokenizer.json (vocabulary, merges, specials)."""
    return sha256_file(Path(tok_dir) / "tokenizer.json")


def eos_id(tok) -> int:
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {tok.name_or_path} has no EOS token: documents cannot be separated")
    return tok.eos_token_id
