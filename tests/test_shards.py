import json

import numpy as np
import pytest

from lsap import shards, vocab
from lsap.corpus import iter_documents


@pytest.fixture(scope="module")
def student_dir(small_corpus, tmp_path_factory):
    texts = [t for _, t in iter_documents(small_corpus, "train")]
    return vocab.save(vocab.train_bpe(texts, 700), tmp_path_factory.mktemp("tok") / "student")


@pytest.fixture(scope="module")
def shard_dir(student_dir, small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    for split in ("train", "validation"):
        shards.write_split(student_dir, small_corpus, split, out, seq_len=32, log=lambda *_: None)
    return out


def test_manifest_matches_contents(shard_dir, student_dir, small_corpus):
    s = shards.open_shard(shard_dir / "train.bin", tokenizer=vocab.fingerprint(student_dir))
    m = s.manifest
    docs = list(iter_documents(small_corpus, "train"))
    assert m["dtype"] == "uint16" and m["documents"] == len(docs)
    assert int((s.tokens == m["eos_id"]).sum()) == len(docs)  # one EOS after every document
    assert sum(d["tokens"] for d in m["domains"].values()) == m["n_tokens"] == len(s.tokens)
    assert s.sequences.shape == (m["n_tokens"] // 33, 33)
    p = np.bincount(s.tokens) / len(s.tokens)
    assert m["unigram_entropy"] == pytest.approx(-(p[p > 0] * np.log(p[p > 0])).sum())
    assert np.array_equal(s.sequences[1], s.tokens[33:66])
    tok = vocab.load(student_dir)
    first_doc = s.tokens[: int(np.argmax(s.tokens == m["eos_id"]))]
    assert tok.decode(first_doc.tolist()) == docs[0][1]


def _tampered(shard_dir, tmp_path, edit_bin=None, edit_manifest=None):
    for ext in (".bin", ".json"):
        (tmp_path / f"train{ext}").write_bytes((shard_dir / f"train{ext}").read_bytes())
    if edit_bin:
        data = bytearray((tmp_path / "train.bin").read_bytes())
        edit_bin(data)
        (tmp_path / "train.bin").write_bytes(bytes(data))
    if edit_manifest:
        m = json.loads((tmp_path / "train.json").read_text())
        edit_manifest(m)
        (tmp_path / "train.json").write_text(json.dumps(m))
    return tmp_path / "train.bin"


@pytest.mark.parametrize("case, match", [
    ("truncated", "file holds .* bytes, manifest says"),
    ("flipped", "sha256 differs"),
    ("count", "file holds .* bytes, manifest says"),
    ("vocab", "token ids >= its vocabulary size"),
])
def test_disagreeing_shard_is_refused(shard_dir, tmp_path, case, match):
    edits = {
        "truncated": dict(edit_bin=lambda d: d.__delitem__(slice(-2, None))),
        "flipped": dict(edit_bin=lambda d: d.__setitem__(100, d[100] ^ 1)),
        "count": dict(edit_manifest=lambda m: m.update(n_tokens=m["n_tokens"] - 1)),
        "vocab": dict(edit_manifest=lambda m: m.update(vocab_size=10)),
    }[case]
    with pytest.raises(shards.ShardError, match=match):
        shards.open_shard(_tampered(shard_dir, tmp_path, **edits))


def test_wrong_tokenizer_is_refused(shard_dir):
    with pytest.raises(shards.ShardError, match="made with tokenizer"):
        shards.open_shard(shard_dir / "train.bin", tokenizer="f" * 64)


def test_missing_shard_names_the_fix(tmp_path):
    with pytest.raises(shards.ShardError, match="rerun the shards stage"):
        shards.open_shard(tmp_path / "train.bin")


def test_large_vocabularies_get_uint32():
    assert shards.token_dtype(50257) == np.uint16
    assert shards.token_dtype(65536) == np.uint16
    assert shards.token_dtype(100352) == np.uint32


def test_shards_in_a_large_real_vocabulary(small_corpus, tmp_path, fetched):
    d = vocab.save(vocab.load_pretrained("qwen3"), tmp_path / "qwen3")
    m = shards.write_split(d, small_corpus, "validation", tmp_path / "s", seq_len=64, log=lambda *_: None)
    s = shards.open_shard(tmp_path / "s" / "validation.bin", tokenizer=vocab.fingerprint(d))
    assert m["dtype"] == "uint32" and int(s.tokens.max()) > 65535
