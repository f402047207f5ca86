import json

import numpy as np
import pytest

from lsap.data import shards, vocab
from lsap.data.corpus import iter_documents


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
    s = shards.open_shard(shard_dir, "train", tokenizer=vocab.fingerprint(student_dir))
    m = s.manifest
    docs = list(iter_documents(small_corpus, "train"))
    assert m["dtype"] == "uint16" and m["documents"] == len(docs)
    assert int((s.parts[0] == m["eos_id"]).sum()) == len(docs)  # one EOS after every document
    assert sum(d["tokens"] for d in m["domains"].values()) == m["n_tokens"] == len(s.parts[0])
    assert s.sequences.shape == (m["n_tokens"] // 33, 33)
    p = np.bincount(s.parts[0]) / len(s.parts[0])
    assert m["unigram_entropy"] == pytest.approx(-(p[p > 0] * np.log(p[p > 0])).sum())
    assert np.array_equal(s.sequences[1], s.parts[0][33:66])
    tok = vocab.load(student_dir)
    first_doc = s.parts[0][: int(np.argmax(s.parts[0] == m["eos_id"]))]
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
    return tmp_path


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
        shards.open_shard(_tampered(shard_dir, tmp_path, **edits), "train")


def test_wrong_tokenizer_is_refused(shard_dir):
    with pytest.raises(shards.ShardError, match="made with tokenizer"):
        shards.open_shard(shard_dir, "train", tokenizer="f" * 64)


def test_missing_shard_names_the_fix(tmp_path):
    with pytest.raises(shards.ShardError, match="rerun the shards stage"):
        shards.open_shard(tmp_path, "train")


def test_large_vocabularies_get_uint32():
    assert shards.token_dtype(50257) == np.uint16
    assert shards.token_dtype(65536) == np.uint16
    assert shards.token_dtype(100352) == np.uint32


def test_shards_in_a_large_real_vocabulary(small_corpus, tmp_path, fetched):
    d = vocab.save(vocab.load_pretrained("qwen3"), tmp_path / "qwen3")
    m = shards.write_split(d, small_corpus, "validation", tmp_path / "s", seq_len=64, log=lambda *_: None)
    s = shards.open_shard(tmp_path / "s", "validation", tokenizer=vocab.fingerprint(d))
    assert m["dtype"] == "uint32" and int(s.parts[0].max()) > 65535


@pytest.fixture(scope="module")
def three_parts(tiny_cfg, fetched, student_dir, tmp_path_factory):
    """The capped tiny corpus in one part and in three, each tokenised, the three gathered."""
    from lsap import config
    from lsap.data import corpus

    out = {}
    for n in (1, 3):
        cfg = config.validate({**tiny_cfg, "corpus": {**tiny_cfg["corpus"], "max_docs_per_domain": 40, "parts": n}})
        root = tmp_path_factory.mktemp(f"parts{n}")
        for p in range(n):
            corpus.build(cfg, root / "corpus" / corpus.part_name(p), part=p, log=lambda *_: None)
            for split in shards.SPLITS:
                shards.write_split(student_dir, root / "corpus" / corpus.part_name(p), split,
                                   root / "shards" / corpus.part_name(p), seq_len=32, log=lambda *_: None)
        corpus.gather(cfg, root / "corpus", log=lambda *_: None)
        shards.gather(root / "shards", n, log=lambda *_: None)
        out[n] = root
    return out


def test_parts_partition_the_one_job_corpus_exactly(three_parts):
    one, three = (sorted(iter_documents(three_parts[n] / "corpus", split)) for n in (1, 3) for split in ["train"])
    assert one == three and len(one) > 100
    for split in ("validation", "reference"):
        assert sorted(iter_documents(three_parts[1] / "corpus", split)) == \
            sorted(iter_documents(three_parts[3] / "corpus", split))
    sizes = [sum(1 for _ in iter_documents(three_parts[3] / "corpus" / f"part-00{p}", "train")) for p in range(3)]
    assert sum(sizes) == len(one) and min(sizes) > len(one) / 5  # every part gets its share


def test_gathered_parts_read_as_one_dataset(three_parts, student_dir):
    s = shards.open_shard(three_parts[3] / "shards", "train", tokenizer=vocab.fingerprint(student_dir))
    rows = np.concatenate([shards.open_shard(three_parts[3] / "shards" / f"part-00{p}", "train").sequences
                           for p in range(3)])
    assert len(s) == len(rows) == s.manifest["n_sequences"] and len(s.parts) == 3
    assert s.manifest["documents"] == sum(1 for _ in iter_documents(three_parts[3] / "corpus", "train"))
    pick = np.random.default_rng(0).choice(len(s), 50)
    assert np.array_equal(s.sequences[pick], rows[pick]) and np.array_equal(s.sequences[5:9], rows[5:9])
    assert np.array_equal(s.sequences[len(s) - 1], rows[-1])
    with pytest.raises(IndexError):
        s.sequences[[len(s)]]
    one = shards.open_shard(three_parts[1] / "shards", "train")
    assert s.manifest["unigram_entropy"] == pytest.approx(one.manifest["unigram_entropy"], abs=1e-9)


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "part-001" / "train.bin").unlink(), r"part-001/train.bin: the file is missing"),
    (lambda d: (d / "part-002" / "train.bin").write_bytes(b"\0" * (d / "part-002" / "train.bin").stat().st_size),
     r"part-002/train.bin: its sha256 differs"),
])
def test_a_missing_or_damaged_part_is_refused_by_name(three_parts, tmp_path, damage, match):
    import shutil

    copy = tmp_path / "shards"
    shutil.copytree(three_parts[3] / "shards", copy)
    damage(copy)
    with pytest.raises(shards.ShardError, match=match + r".* Delete .* and rerun the shards stage"):
        shards.open_shard(copy, "train")


def test_content_is_verified_once_at_the_gather_and_a_job_checks_sizes_and_the_manifest(three_parts, tmp_path,
                                                                                      monkeypatch):
    import json
    import shutil

    copy = tmp_path / "shards"
    shutil.copytree(three_parts[3] / "shards", copy)
    bin_path = copy / "part-001" / "train.bin"
    data = bytearray(bin_path.read_bytes())
    data[10] ^= 1
    bin_path.write_bytes(bytes(data))  # same size, one bit: only hashing finds it
    with pytest.raises(shards.ShardError, match=r"part-001/train.bin: its sha256 differs .* rerun the shards jobs"):
        shards.gather(copy, 3, log=lambda *_: None)
    # a job start (verify=False) reads no content: sizes, format and the manifest's own hashes
    monkeypatch.setattr(shards, "sha256_file", lambda *_: pytest.fail("a job start hashed a shard"))
    assert len(shards.open_shard(three_parts[3] / "shards", "train", verify=False)) > 0
    man = json.loads((copy / "train.json").read_text())
    man["parts"][0]["sha256"] = "0" * 64
    (copy / "train.json").write_text(json.dumps(man))
    with pytest.raises(shards.ShardError, match="parts' hashes do not make up the split's sha256"):
        shards.open_shard(copy, "train", verify=False)
    bin_path.write_bytes(bytes(data[:-2]))
    man["parts"][0]["sha256"] = json.loads((three_parts[3] / "shards" / "train.json").read_text())["parts"][0]["sha256"]
    (copy / "train.json").write_text(json.dumps(man))
    with pytest.raises(shards.ShardError, match="part-001/train.bin: file holds .* bytes, manifest says"):
        shards.open_shard(copy, "train", verify=False)


def test_more_parts_than_documents_is_a_clear_error(tiny_cfg, fetched, tmp_path):
    from lsap import config
    from lsap.data import corpus

    cfg = config.validate({**tiny_cfg, "corpus": {**tiny_cfg["corpus"], "max_docs_per_domain": 2, "parts": 64}})
    with pytest.raises(RuntimeError, match=r"corpus part \d+ of 64 holds no document.*lower corpus.parts"):
        for p in range(64):
            corpus.build(cfg, tmp_path / corpus.part_name(p), part=p, log=lambda *_: None)
