"""The fast encoder gives the Hugging Face tokenizer's ids exactly, and a shard job that meets a
difference re-encodes with HF."""

import numpy as np

from lsap.data import corpus, fast_encode, shards, vocab
from lsap.data.corpus import iter_documents

PRETRAINED = ["cl100k", "gpt2", "qwen3", "llama3", "smollm2"]
# text that has tripped tokenizers: added-token text, CRLF, a long run, other scripts' digits,
# combining marks (NFC), emoji, full-width letters, whitespace runs before digits, nothing
EDGES = ["<|endoftext|> hi <|im_start|>", "a\r\nb\r\n\r\n", "x" * 5000, "٣٤٥ ½ ²", "e\u0301 café",
         "😀👍🏽", "Ａｂｃ", "  multiple   spaces\n\n\n", "a  5 x 12 34\n\n5", "$5.00 '5 '12", "", "   "]


def _tokenizers(texts):
    for name in PRETRAINED:
        yield name, vocab.load_pretrained(name)
    for split_digits in (False, True):
        yield f"bpe split_digits={split_digits}", vocab.train_bpe(texts, 2000, split_digits=split_digits)


def _assert_same_ids(texts, train_texts):
    for name, tok in _tokenizers(train_texts):
        enc = fast_encode.encoder(tok)
        assert enc.kind == "tiktoken", f"{name} fell back to HF"
        want = tok(texts, add_special_tokens=False)["input_ids"]   # HF's __call__: the ids of record
        got = enc.encode(texts)
        bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
        assert not bad, f"{name}: {len(bad)} of {len(texts)} texts differ, first {texts[bad[0]][:60]!r}"


def test_every_tokenizer_of_the_repo_encodes_as_hf(small_corpus, fetched):
    texts = [t for s in corpus.SPLITS for _, t in iter_documents(small_corpus, s)]
    _assert_same_ids(texts + EDGES, texts)


def test_a_planted_difference_makes_the_job_re_encode_with_hf(small_corpus, tmp_path, monkeypatch):
    texts = [t for _, t in iter_documents(small_corpus, "train")]
    tok_dir = vocab.save(vocab.train_bpe(texts, 700), tmp_path / "tok")
    clean = shards.write_split(tok_dir, small_corpus, "train", tmp_path / "clean", 32, log=lambda *_: None)

    ranks = fast_encode._ranks

    def swapped(spec):   # two merged tokens trade ranks: tiktoken now merges in another order
        r = ranks(spec)
        a, b = sorted(r, key=r.get)[400], sorted(r, key=r.get)[600]
        r[a], r[b] = r[b], r[a]
        return r
    monkeypatch.setattr(fast_encode, "_ranks", swapped)
    assert fast_encode.encoder(vocab.load(tok_dir)).kind == "tiktoken"
    logs = []
    planted = shards.write_split(tok_dir, small_corpus, "train", tmp_path / "planted", 32, log=logs.append)
    assert any("re-encoding with HF" in line for line in logs), logs
    assert planted["sha256"] == clean["sha256"]
    assert np.array_equal(np.load(tmp_path / "planted" / "train.unigram.npy"),
                          np.load(tmp_path / "clean" / "train.unigram.npy"))
