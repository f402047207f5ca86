"""The held-out probes (lsap.data.probe) on a real corpus: items built from its validation text, their
lm-eval task, and the n-gram reference lines that score the same items."""

import json

import numpy as np

from lsap import config
from lsap.data import heldout, ngram, probe, vocab


def _validation(corpus_dir):
    from lsap.data import corpus

    docs = {}
    for domain, text in corpus.iter_documents(corpus_dir, "validation"):
        docs.setdefault(domain, []).append(text)
    for domain, text in corpus.iter_documents(corpus_dir, "train"):   # more sentences for the count test
        docs.setdefault(domain, []).append(text)
    return docs


def test_minimal_pairs_are_seeded_swaps_of_two_adjacent_words_in_every_domain(small_corpus):
    docs = _validation(small_corpus)
    items = probe.minimal_pairs(docs, 120, seed=7)
    assert items == probe.minimal_pairs(docs, 120, seed=7)
    assert items != probe.minimal_pairs(docs, 120, seed=8)
    assert {it["domain"] for it in items} == set(docs)          # round-robin over every domain
    golds = [it["gold"] for it in items]
    assert 0.3 < np.mean(golds) < 0.7                            # the gold sentence's position is random
    for it in items:
        good, bad = it["choices"][it["gold"]].split(), it["choices"][1 - it["gold"]].split()
        i = it["swap_at"]
        assert i >= 1 and good != bad and sorted(good) == sorted(bad)
        assert bad[:i] + bad[i + 2:] == good[:i] + good[i + 2:] and (bad[i], bad[i + 1]) == (good[i + 1], good[i])


def test_continuation_items_hold_the_true_span_among_three_others(small_corpus):
    docs = _validation(small_corpus)
    items = probe.continuation(docs, 40, seed=3)
    assert len(items) == 40
    for it in items:
        assert len(it["context"].split()) == probe.CONTEXT_WORDS and len(it["choices"]) == 4
        assert all(len(c.split()) == probe.SPAN_WORDS for c in it["choices"])
        text = next(t for t in docs[it["domain"]] if it["context"] in " ".join(t.split()))
        assert it["context"] + " " + it["choices"][it["gold"]] in " ".join(text.split())


def test_unigram_sits_at_chance_and_bigram_above_it_on_real_text(small_corpus, tiny_cfg, fetched, tmp_path):
    """The n-gram lines on the same items: the unigram scores both orderings exactly alike (ties go
    to the first choice, the gold's position is random), so it sits near 50 %; a bigram of the
    text reads word order and must be clearly above it. Items from a held-out split, counts from train."""
    from lsap.data import corpus

    tok = vocab.load_pretrained("gpt2")   # the real GPT-2 BPE (an embedded asset)
    train = [t for _, t in corpus.iter_documents(small_corpus, "train")]
    streams = [np.array([vocab.boundary_id(tok), *tok(t, add_special_tokens=False)["input_ids"]]) for t in train]
    counts = ngram.Counts(streams, len(tok))
    val = {}
    for domain, text in corpus.iter_documents(small_corpus, "validation"):
        val.setdefault(domain, []).append(text)
    items = probe.minimal_pairs(val, 400, seed=1)
    lines = ngram.probe_scores(counts, tok, {"lsap_minimal_pairs": items})
    uni, bi = lines["unigram"]["lsap_minimal_pairs"], lines["bigram"]["lsap_minimal_pairs"]
    assert uni["n"] == len(items) and abs(uni["acc"] - 0.5) < 0.08
    assert np.all(np.asarray(uni["margins"]) == 0) or np.mean(np.asarray(uni["margins"]) == 0) > 0.9
    assert bi["acc"] > uni["acc"] + 0.1


def test_heldout_job_writes_slices_once_and_scorers_read_them(small_corpus, tiny_cfg, monkeypatch):
    """Fails before the heldout job existed: every scorer re-parsed the corpus for its slices."""
    cfg = config.validate({**tiny_cfg, "evaluation": {**tiny_cfg["evaluation"], "minimal_pairs_items": 50}})
    counts = heldout.write_heldout(cfg, small_corpus, log=lambda *_: None)
    assert counts == {"minimal_pairs": 50}
    saved = json.loads((small_corpus / "heldout" / "slices.json").read_text())
    assert saved["max_bytes"] == cfg["evaluation"]["bpb_max_bytes"]
    from lsap.data import corpus

    def no_scan(*a, **k):
        raise AssertionError("the corpus was parsed again")
    monkeypatch.setattr(corpus, "iter_documents", no_scan)
    scored, fit = heldout.select_slices(small_corpus, "validation", cfg["evaluation"]["bpb_max_bytes"])
    assert scored == saved["scored"] and fit == saved["fit"]
    assert len(probe.read(small_corpus / "heldout" / "minimal_pairs.jsonl")) == 50


def test_the_probe_task_loads_through_lm_eval(small_corpus, tiny_cfg):
    from lsap.evaluation import benchmarks

    cfg = config.validate({**tiny_cfg, "evaluation": {**tiny_cfg["evaluation"], "minimal_pairs_items": 20}})
    heldout.write_heldout(cfg, small_corpus, log=lambda *_: None)
    task = benchmarks.probe_task("lsap_minimal_pairs", small_corpus / "heldout" / "minimal_pairs.jsonl")
    docs = list(task.test_docs())
    assert len(docs) == 20
    assert task.doc_to_choice(docs[0]) == docs[0]["choices"] and task.doc_to_target(docs[0]) == docs[0]["gold"]
    assert task.doc_to_text(docs[0]) == "" and task.config.target_delimiter == ""
