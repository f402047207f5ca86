"""Reference lines for the students' held-out scores: a unigram and an interpolated Kneser–Ney
bigram counted on the students' own training text, scored on exactly the tokens `lsap.data.heldout`
scores (same slices, same tokenizer, same packing). A student below the bigram has learnt
context; one at the unigram has learnt token frequencies only, and no verdict about an auxiliary
loss can be read from it.

Unigram: add-one over the tokenizer's vocabulary. Bigram (absolute discount d = 0.75):
  p(w|v) = max(c(v,w) − d, 0)/c(v) + d·N1+(v•)/c(v) · p_cont(w),   p_cont(w) = (N1+(•w) + 1)/(N1+(••) + V),
and p_cont(w) for a context never seen. Pairs are counted over the flat training streams, where
a document's first token follows the boundary token, as in the held-out packing.

Top-k accuracy counts a hit when fewer than k tokens score strictly higher than the true one
(ties resolved in the model's favour: counts tie often).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DISCOUNT = 0.75
MAX_TRAIN_TOKENS = 100_000_000  # from the start of the training stream: 0.8 GB of pair codes, < 8 GB to count


class Counts:
    """Unigram and bigram counts of token streams over a vocabulary of size V."""

    def __init__(self, streams, vocab_size: int, max_tokens: int = MAX_TRAIN_TOKENS):
        self.V = vocab_size
        uni = np.zeros(vocab_size, dtype=np.int64)
        codes, left = [], max_tokens
        for s in streams:
            s = np.asarray(s[:left], dtype=np.int64)
            left -= len(s)
            if len(s):
                uni += np.bincount(s, minlength=vocab_size)[:vocab_size]
                codes.append(s[:-1] * vocab_size + s[1:])
            if left <= 0:
                break
        self.tokens = int(uni.sum())
        self.uni = uni
        self.pairs, self.pair_counts = np.unique(np.concatenate(codes) if codes else np.zeros(0, np.int64),
                                                 return_counts=True)
        prev, nxt = self.pairs // vocab_size, self.pairs % vocab_size
        self.ctx = np.bincount(prev, weights=self.pair_counts, minlength=vocab_size)  # c(v)
        self.followers = np.bincount(prev, minlength=vocab_size)  # N1+(v•)
        cont = np.bincount(nxt, minlength=vocab_size)  # N1+(•w)
        self.p_cont = (cont + 1) / (len(self.pairs) + vocab_size)
        self.p_uni = (uni + 1) / (self.tokens + vocab_size)

    def pair_count(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        code = prev * self.V + nxt
        at = np.clip(np.searchsorted(self.pairs, code), 0, max(0, len(self.pairs) - 1))
        return np.where(self.pairs[at] == code, self.pair_counts[at], 0) if len(self.pairs) else np.zeros(len(code))

    def bigram_p(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        c_v = self.ctx[prev]
        seen = c_v > 0
        safe = np.where(seen, c_v, 1)
        p = np.maximum(self.pair_count(prev, nxt) - DISCOUNT, 0) / safe + \
            DISCOUNT * self.followers[prev] / safe * self.p_cont[nxt]
        return np.where(seen, p, self.p_cont[nxt])

    def unigram_rank(self, nxt: np.ndarray) -> np.ndarray:
        """How many tokens are strictly more probable than each true token under the unigram."""
        ordered = np.sort(self.p_uni)
        return len(ordered) - np.searchsorted(ordered, self.p_uni[nxt], side="right")

    def bigram_rank(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """The same under the bigram, per context: its followers scored exactly, and the tokens that
        never followed it, whose score is the back-off alone, counted by a search in p_cont."""
        ordered = np.sort(self.p_cont)
        p_true = self.bigram_p(prev, nxt)
        rank = np.empty(len(nxt), dtype=np.int64)
        order = np.argsort(prev, kind="stable")
        contexts, starts = np.unique(prev[order], return_index=True)
        for v, at in zip(contexts, np.split(order, starts[1:]), strict=True):
            if self.ctx[v] == 0:  # an unseen context: p = p_cont
                rank[at] = len(ordered) - np.searchsorted(ordered, p_true[at], side="right")
                continue
            lo, hi = np.searchsorted(self.pairs, [v * self.V, (v + 1) * self.V])
            ws = self.pairs[lo:hi] % self.V
            weight = DISCOUNT * self.followers[v] / self.ctx[v]
            p_f = np.sort((self.pair_counts[lo:hi] - DISCOUNT) / self.ctx[v] + weight * self.p_cont[ws])
            above_f = len(p_f) - np.searchsorted(p_f, p_true[at], side="right")  # followers above the true token
            # non-followers above: every token whose back-off score beats it, minus the followers among them
            threshold = p_true[at] / weight
            cont_f = np.sort(self.p_cont[ws])
            above_nf = (len(ordered) - np.searchsorted(ordered, threshold, side="right")) - \
                (len(cont_f) - np.searchsorted(cont_f, threshold, side="right"))
            rank[at] = above_f + above_nf
        return rank


def scores(counts: Counts, stream: np.ndarray, scored: np.ndarray, n_bytes: int, ks=(1, 5)) -> dict:
    """{unigram: {...}, bigram: {...}} of one packed held-out slice (lsap.data.heldout.pack)."""
    at = np.flatnonzero(scored)
    prev, nxt = stream[at - 1], stream[at]
    out = {}
    for name, p, rank in (("unigram", counts.p_uni[nxt], counts.unigram_rank(nxt)),
                          ("bigram", counts.bigram_p(prev, nxt), counts.bigram_rank(prev, nxt))):
        nll = float(-np.log(p).sum())
        out[name] = {"bpb": nll / (math.log(2) * n_bytes), "nll_nats": nll, "tokens": len(at), "bytes": n_bytes,
                     **{f"top{k}": float((rank < k).mean()) if len(at) else None for k in ks}}
    return out


def choice_tokens(tok, context: str, choice: str, delimiter: str) -> tuple[np.ndarray, int]:
    """(the token stream, where the choice's tokens start), split as lm-eval's HFLM splits a
    (context, continuation) request: an empty context becomes the boundary token; otherwise
    context + continuation is encoded whole and cut after the context's own tokens."""
    from lsap.data import vocab

    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    if not context:
        return np.array([vocab.boundary_id(tok), *enc(choice)], dtype=np.int64), 1
    ctx = enc(context)
    return np.array(enc(context + delimiter + choice), dtype=np.int64), len(ctx)


def probe_scores(counts: Counts, tok, probes: dict[str, list[dict]]) -> dict:
    """{unigram|bigram: {probe task: {acc, n, margins}}}: the probes' items scored by summed
    log-likelihood of each choice (math.fsum, exact and order-free, so a unigram gives the two
    orderings of one sentence exactly the same score and the tie goes to the first choice)."""
    from lsap.data import probe

    out = {"unigram": {}, "bigram": {}}
    for task, items in probes.items():
        delimiter = "" if task == probe.TASK["minimal_pairs"] else " "
        for name in out:
            def loglik(ctx, choice, name=name, delimiter=delimiter):
                ids, start = choice_tokens(tok, ctx, choice, delimiter)
                nxt, prev = ids[start:], ids[start - 1:-1]
                p = counts.p_uni[nxt] if name == "unigram" else counts.bigram_p(prev, nxt)
                return math.fsum(np.log(p).tolist())
            acc, margins = probe.accuracy(items, loglik)
            out[name][task] = {"acc": acc, "n": len(items), "margins": np.round(margins, 5).tolist()}
    return out


def reference_lines(shards_dir, tokenizer_dir, corpus_dir, ecfg: dict, out) -> dict:
    """The reference-lines job: unigram and bigram counted on the student training shard, scored on
    each domain's held-out slice as the evaluation scores it -> one JSON."""
    from lsap.data import heldout, shards, vocab
    from lsap.io.files import write_json

    tok = vocab.load(tokenizer_dir)
    data = shards.open_shard(shards_dir, "train", tokenizer=vocab.fingerprint(tokenizer_dir), verify=False)
    counts = Counts(data.parts, len(tok))
    scored, _ = heldout.select_slices(corpus_dir, "validation", ecfg["bpb_max_bytes"])
    result = {"train_tokens_counted": counts.tokens, "train_tokens": int(sum(len(p) for p in data.parts)),
              "vocab_size": len(tok), "discount": DISCOUNT, "unigram": {}, "bigram": {}}
    for domain, texts in scored.items():
        stream, mask = heldout.pack(tok, texts)
        for name, s in scores(counts, stream, mask, sum(len(t.encode("utf-8")) for t in texts)).items():
            result[name][domain] = s
    from lsap.data import probe

    items = {probe.TASK[p]: probe.read(Path(corpus_dir) / "heldout" / f"{p}.jsonl") for p in probe.wanted(ecfg)}
    result["probes"] = probe_scores(counts, tok, items)
    write_json(out, result)
    return result
