"""Which dataset positions a run reads at each step: a pure function of (step, rank, seed), so
resuming needs no data-loader state and a cache of teacher outputs knows what a run will read.
Its own module, below the training loop and the plan, so both (and a test) use it alone."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, n_data: int) -> np.ndarray:
    """The order epoch `epoch` visits the data in. Made once per epoch, not per micro-batch: at
    51.5 M sequences a permutation takes seconds, a GPU step a third of one. Two are kept, for a
    step that straddles an epoch boundary."""
    perm = np.random.default_rng([seed, epoch]).permutation(n_data)
    perm.setflags(write=False)
    return perm


def sample_ids(step: int, micro: int, n_micro: int, dist, n_data: int, seed: int) -> list[np.ndarray]:
    """The dataset positions of this rank's micro-batches at `step`: a pure function of the step,
    so resuming needs no data-loader state. Global sample g = step·B + k lives in epoch g // n,
    which visits the data in a seeded permutation. Rank r takes micro-batch slots a·world + r
    (`dist`: anything with `.rank` and `.world`, e.g. lsap.training.loop.Dist)."""
    global_batch = micro * n_micro * dist.world
    out = []
    for a in range(n_micro):
        start = step * global_batch + (a * dist.world + dist.rank) * micro
        g = np.arange(start, start + micro)
        epochs = g // n_data
        ids = np.empty(micro, dtype=np.int64)
        for e in np.unique(epochs):
            ids[epochs == e] = epoch_permutation(seed, int(e), n_data)[g[epochs == e] % n_data]
        out.append(ids)
    return out
