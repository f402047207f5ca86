"""Held-out decontamination: a training document that is a near-copy of held-out text is dropped.

WikiText, ArXiv and PG19 are also SlimPajama sources, so without this the held-out bits per byte
of those domains would partly be measured on text the students read. Near-copy: a MinHash
estimate of the Jaccard similarity of the two documents' word n-grams at or above `threshold`
(datasketch's LSH finds the candidates, loosely; each is then checked against its stored
signature, so an LSH false positive removes nothing). Exact copies are caught by the corpus's own deduplication;
this catches the edited, re-wrapped and re-punctuated ones.
"""

from __future__ import annotations

import re

WORD = re.compile(r"\w+")


class HeldOutIndex:
    """MinHash signatures of the held-out documents, queried with each training document."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1):
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.num_perm, self.ngram = threshold, num_perm, ngram
        # candidates from a lower similarity than the threshold: LSH tuned at 0.8 (9 bands of 13) misses
        # 7 % of the pairs at Jaccard 0.9 and 60 % at 0.8 (it missed 1 of 10 planted near-copies at
        # 0.905); tuned at 0.5 (25 bands of 5), 2e-10 and 5e-5. Each candidate is then checked against
        # the threshold with its stored signature
        self.lsh = MinHashLSH(threshold=max(0.05, threshold - 0.3), num_perm=num_perm)
        # the permutations drawn once: a MinHash drawing its own for every document costs more than hashing it
        first = MinHash(num_perm=num_perm, seed=seed)
        self.permutations, self.scheme = first.permutations, first.scheme
        self.signatures: list = []

    def minhash(self, text: str):
        from datasketch import MinHash

        words = WORD.findall(text.lower())
        n = self.ngram
        grams = {" ".join(words[i:i + n]).encode() for i in range(max(1, len(words) - n + 1))}
        m = MinHash(num_perm=self.num_perm, permutations=self.permutations, scheme=self.scheme)
        m.update_batch(list(grams))
        return m

    def usable(self, text: str) -> bool:
        """A document of fewer words than one n-gram has no n-gram: never indexed, never a near-copy
        (its one empty 'gram' would match every other short document)."""
        return len(WORD.findall(text)) >= self.ngram

    def add(self, text: str) -> None:
        if not self.usable(text):
            return
        m = self.minhash(text)
        self.lsh.insert(len(self.signatures), m, check_duplication=False)
        self.signatures.append(m)

    def __len__(self) -> int:
        return len(self.signatures)

    def near_copy(self, text: str) -> bool:
        """Whether `text` is a near-copy of an indexed held-out document."""
        if not self.signatures or not self.usable(text):
            return False
        m = self.minhash(text)
        return any(m.jaccard(self.signatures[k]) >= self.threshold for k in self.lsh.query(m))


def similarity(a: str, b: str, ngram: int = 5) -> float:
    """The exact Jaccard similarity of two documents' word n-grams (tests, diagnostics)."""
    def grams(t):
        w = WORD.findall(t.lower())
        return {tuple(w[i:i + ngram]) for i in range(max(1, len(w) - ngram + 1))}
    x, y = grams(a), grams(b)
    return len(x & y) / max(len(x | y), 1)
