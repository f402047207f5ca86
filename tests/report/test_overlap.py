"""Σ∩ over byte strings and the translation tables, with the real tokenizers."""

import numpy as np
import pytest

from lsap.data import vocab


@pytest.fixture(scope="module")
def toks(fetched):
    return {n: vocab.load_pretrained(n) for n in ("cl100k", "qwen3", "gpt2", "smollm2")}


@pytest.mark.parametrize("base, sur, size", [
    ("cl100k", "qwen3", 99_156),   # DESIGN.md: 98.9 % of cl100k
    ("cl100k", "smollm2", 39_201),
    ("gpt2", "smollm2", 36_960),   # DESIGN.md's 36,961 also counts the shared <|endoftext|> special
])
def test_intersection_sizes_match_the_measured_ones(toks, base, sur, size):
    b_to_s, s_to_b = vocab.translation_tables(toks[base], toks[sur])
    assert vocab.intersection_size(b_to_s) == size
    assert int((s_to_b != vocab.NOT_IN_BASE).sum()) == size + 1  # + the explicit boundary pair


def test_translation_round_trips_on_the_intersection(toks):
    base, sur = toks["cl100k"], toks["smollm2"]
    b_to_s, s_to_b = vocab.translation_tables(base, sur)
    inside = np.flatnonzero(b_to_s != vocab.NOT_IN_SURROGATE)
    assert np.array_equal(s_to_b[b_to_s[inside]], inside)  # one vectorised indexing op each way
    b_bytes, s_bytes = vocab.token_bytes(base), vocab.token_bytes(sur)
    for b in inside[::997]:
        if b != vocab.boundary_id(base):
            assert b_bytes[b] == s_bytes[b_to_s[b]]


def test_tokens_outside_the_intersection_map_to_the_markers(toks):
    base, sur = toks["cl100k"], toks["smollm2"]
    b_to_s, s_to_b = vocab.translation_tables(base, sur)
    s_vocab = set(vocab.token_bytes(sur))
    outside = [i for i, b in enumerate(vocab.token_bytes(base)) if b is not None and b not in s_vocab]
    assert len(outside) == len(base) - 39_201 - 1
    assert (b_to_s[outside] == vocab.NOT_IN_SURROGATE).all()
    s_outside = [i for i, b in enumerate(vocab.token_bytes(sur)) if s_to_b[i] == vocab.NOT_IN_BASE]
    assert len(s_outside) == len(sur) - 39_201 - 1
    # a real sentence: its translated ids decode to the same text wherever they are in Σ∩
    ids = np.array(base("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"])
    mapped = b_to_s[ids]
    assert (mapped != vocab.NOT_IN_SURROGATE).all()
    assert sur.decode(mapped.tolist()) == "The quick brown fox jumps over the lazy dog."


def test_boundary_token_is_mapped_explicitly(toks):
    b_to_s, s_to_b = vocab.translation_tables(toks["cl100k"], toks["qwen3"])
    b_eos, s_eos = vocab.boundary_id(toks["cl100k"]), vocab.boundary_id(toks["qwen3"])
    assert toks["qwen3"].convert_ids_to_tokens(s_eos) == "<|endoftext|>"  # not the instruct EOS
    assert b_to_s[b_eos] == s_eos and s_to_b[s_eos] == b_eos


def test_sentencepiece_style_vocabulary_reduces_to_bytes():
    """Gemma-style pieces: '▁' is a space and '<0xNN>' a raw byte."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    pieces = {"<eos>": 0, "▁the": 1, "<0x41>": 2, "ab": 3}
    backend = Tokenizer(models.BPE(vocab=pieces, merges=[]))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")
    assert vocab.token_bytes(tok) == [None, b" the", b"A", b"ab"]


def test_saved_tables_load_back(toks, tmp_path):
    meta = vocab.save_translation(tmp_path / "t.npz", toks["gpt2"], toks["smollm2"])
    b_to_s, s_to_b = vocab.load_translation(tmp_path / "t.npz")
    assert meta["intersection"] == 36_960 and b_to_s.shape == (len(toks["gpt2"]),)
    assert s_to_b.shape == (len(toks["smollm2"]),)
