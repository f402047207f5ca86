"""The held-out probes: multiple-choice items built from a run's own validation text, scored by
lm-eval as it scores any multiple-choice task (the summed log-likelihood of each choice).

Why a probe: the paper claims benchmark accuracy, which lm-eval reads by comparing the
log-likelihoods of a few candidates. Bits per byte charges LSAP's objective a fixed cost by
design (its optimum at λ = 1 is flat over the surrogate's candidates, lsap.methods.objective_cost), while
a likelihood comparison between two orderings of the same words barely sees it. And a small
student can pass these items, where the public benchmarks sit at chance until far larger scales.

    minimal_pairs  a held-out sentence against the same sentence with two adjacent words (neither
                   the first) swapped; the choice is the whole sentence after the document boundary.
                   A model blind to word order scores 50 % in expectation: both choices hold the
                   same words, the gold one sits first or second at random, and a tie goes to the
                   first choice (lm-eval's argmax), so a unigram model lands near 50 %.
    continuation   30 words of a held-out document, then its true next 10 words against 10-word
                   spans of 3 other held-out documents (4-way): near chance at bigram level, for
                   configs whose students model longer context (gpu-small, paper).

Items are seeded by the run's seed and drawn round-robin over the domains, so every domain is in
the probe; the files are the lm-eval tasks' local datasets (lsap.evaluation.benchmarks).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from lsap.io.files import atomic_path

PROBES = ("minimal_pairs", "continuation")
TASK = {"minimal_pairs": "lsap_minimal_pairs", "continuation": "lsap_continuation"}  # lm-eval task names
CHANCE = {"lsap_minimal_pairs": 50.0, "lsap_continuation": 25.0}
WORD = re.compile(r"^[A-Za-z]+$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_WORDS, MAX_WORDS, MAX_CHARS = 6, 40, 300
CONTEXT_WORDS, SPAN_WORDS, DISTRACTORS = 30, 10, 3


def _sentences(text: str) -> list[list[str]]:
    out = []
    for s in SENTENCE_END.split(text.strip()):
        words = s.split()
        if MIN_WORDS <= len(words) <= MAX_WORDS and len(s) <= MAX_CHARS:
            out.append(words)
    return out


def _swappable(words: list[str]) -> list[int]:
    """Positions i (not the first word) where words i and i+1 are plain, different words."""
    return [i for i in range(1, len(words) - 1)
            if WORD.match(words[i]) and WORD.match(words[i + 1]) and words[i].lower() != words[i + 1].lower()]


def _round_robin(per_domain: dict[str, list], n: int) -> list:
    """Up to n entries, taking one from each domain in turn (domains in their given order)."""
    out, lists = [], [list(v) for v in per_domain.values()]
    i = 0
    while len(out) < n and any(i < len(v) for v in lists):
        out.extend(v[i] for v in lists if i < len(v))
        i += 1
    return out[:n]


def minimal_pairs(docs: dict[str, list[str]], n_items: int, seed: int) -> list[dict]:
    """{domain: texts} -> up to n_items {id, domain, choices, gold}."""
    per_domain = {}
    for d, (domain, texts) in enumerate(docs.items()):
        rng = np.random.default_rng([seed, 101, d])
        seen, cands = set(), []
        for text in texts:
            for words in _sentences(text):
                key = " ".join(words)
                if key not in seen and _swappable(words):
                    seen.add(key)
                    cands.append(words)
        order = rng.permutation(len(cands))
        items = []
        for k in order:
            words = cands[k]
            at = _swappable(words)
            i = at[int(rng.integers(len(at)))]
            bad = words[:i] + [words[i + 1], words[i]] + words[i + 2:]
            gold = int(rng.integers(2))
            good_s, bad_s = " ".join(words), " ".join(bad)
            items.append({"domain": domain, "choices": [good_s, bad_s] if gold == 0 else [bad_s, good_s],
                          "gold": gold, "swap_at": i})
        per_domain[domain] = items
    return [{"id": k, **it} for k, it in enumerate(_round_robin(per_domain, n_items))]


def continuation(docs: dict[str, list[str]], n_items: int, seed: int) -> list[dict]:
    """{domain: texts} -> up to n_items {id, domain, context, choices, gold}: the true next span
    against spans of other documents (any domain)."""
    pool = [(domain, t.split()) for domain, texts in docs.items() for t in texts]
    pool = [(dom, w) for dom, w in pool if len(w) >= CONTEXT_WORDS + SPAN_WORDS]
    if len(pool) <= DISTRACTORS:
        return []
    per_domain: dict[str, list] = {}
    rng = np.random.default_rng([seed, 202])
    for j in rng.permutation(len(pool)):
        domain, words = pool[j]
        s = int(rng.integers(len(words) - CONTEXT_WORDS - SPAN_WORDS + 1))
        true = " ".join(words[s + CONTEXT_WORDS:s + CONTEXT_WORDS + SPAN_WORDS])
        others = [o for o in rng.choice(len(pool), DISTRACTORS + 1, replace=False) if o != j][:DISTRACTORS]
        spans = []
        for o in others:
            w = pool[o][1]
            a = int(rng.integers(len(w) - SPAN_WORDS + 1))
            spans.append(" ".join(w[a:a + SPAN_WORDS]))
        gold = int(rng.integers(DISTRACTORS + 1))
        spans.insert(gold, true)
        per_domain.setdefault(domain, []).append(
            {"domain": domain, "context": " ".join(words[s:s + CONTEXT_WORDS]), "choices": spans, "gold": gold})
    ordered = {d: per_domain[d] for d in docs if d in per_domain}
    return [{"id": k, **it} for k, it in enumerate(_round_robin(ordered, n_items))]


BUILDERS = {"minimal_pairs": minimal_pairs, "continuation": continuation}


def write(items: list[dict], path: str | Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    return Path(path)


def read(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def wanted(ecfg: dict) -> dict[str, int]:
    """{probe: items} of the probes a config's evaluation asks for (0 or null: not run)."""
    return {p: ecfg.get(f"{p}_items") or 0 for p in PROBES if ecfg.get(f"{p}_items")}


def accuracy(items: list[dict], loglik) -> tuple[float, np.ndarray]:
    """(accuracy, per-item margin log p(gold) − max other) of a scorer `loglik(context, choice) ->
    float` on items, choosing as lm-eval does: the first choice of highest log-likelihood."""
    hits, margins = [], []
    for it in items:
        ctx = it.get("context", "")
        ll = np.array([loglik(ctx, c) for c in it["choices"]])
        hits.append(int(np.argmax(ll)) == it["gold"])
        margins.append(ll[it["gold"]] - np.max(np.delete(ll, it["gold"])))
    return float(np.mean(hits)) if hits else float("nan"), np.asarray(margins)
