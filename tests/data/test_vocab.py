import pytest

from lsap.data import vocab

TEXT = "Hello world — naïve café 🎉 the quick brown fox.\n  tabs\tand 12345 <|endoftext|>-free text"

# ids checked against the published tokenizers ("Hello world" in cl100k / GPT-2 / Qwen3 / SmolLM2)
KNOWN = {"cl100k": [9906, 1917], "gpt2": [15496, 995], "qwen3": [9707, 1879], "llama3": [9906, 1917],
         "smollm2": [19556, 905]}
SIZES = {"cl100k": 100257, "gpt2": 50257, "qwen3": 151669, "llama3": 128256, "smollm2": 49152}


@pytest.fixture(scope="module", params=sorted(KNOWN))
def pretrained(request, fetched):
    return request.param, vocab.load_pretrained(request.param)


def test_pretrained_tokenizers_load_offline_and_round_trip(pretrained):
    name, tok = pretrained
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == KNOWN[name]
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == TEXT
    assert len(tok) >= SIZES[name]
    assert tok.eos_token_id is not None


def test_pretrained_survives_save_and_load(pretrained, tmp_path):
    name, tok = pretrained
    vocab.save(tok, tmp_path / name)
    again = vocab.load(tmp_path / name)
    assert again(TEXT, add_special_tokens=False)["input_ids"] == tok(TEXT, add_special_tokens=False)["input_ids"]
    assert again.eos_token_id == tok.eos_token_id


def test_trained_bpe_round_trips_and_differs_by_spec(small_corpus, tmp_path):
    from lsap.data.corpus import iter_documents

    texts = [t for _, t in iter_documents(small_corpus, "train")]
    student = vocab.train_bpe(texts, 600)
    surrogate = vocab.train_bpe(texts, 500, split_digits=True)
    assert len(student) == 600 and len(surrogate) == 500
    for tok in (student, surrogate):
        ids = tok(TEXT, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == TEXT  # byte-level: lossless on any string
        assert tok.eos_token == vocab.EOS and tok.pad_token == vocab.PAD
    assert len(surrogate("12345", add_special_tokens=False)["input_ids"]) == 5  # digits split
    vocab.save(student, tmp_path / "s")
    fp = vocab.fingerprint(tmp_path / "s")
    vocab.save(vocab.load(tmp_path / "s"), tmp_path / "s2")
    assert vocab.fingerprint(tmp_path / "s2") == fp
    assert student.get_vocab() != surrogate.get_vocab()


def test_bpe_without_text_is_refused():
    with pytest.raises(ValueError, match="needs training text"):
        vocab.build({"kind": "bpe", "vocab_size": 500})


def test_hub_kind_loads_a_local_directory(tmp_path, fetched):
    """The paper config names hub ids; a local HF directory stands in for the hub."""
    vocab.save(vocab.load_pretrained("qwen3"), tmp_path / "Qwen3-stand-in")
    tok = vocab.build({"kind": "hub", "id": str(tmp_path / "Qwen3-stand-in")})
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == KNOWN["qwen3"]
