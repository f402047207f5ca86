"""Data selection: token statistics against a naive float64 full-softmax reference, MiniPLM's
ranking identity, SALT_DS's two readings of eq. 10, deterministic top-m selection, and scoring
scattered over parts that gathers the bits of one job."""

import copy
import math

import numpy as np
import pytest
import torch

from lsap import models
from lsap.data import scores
from lsap.data.shards import Shard
from lsap.methods import scoring

VOCAB, SEQ_LEN, N_SEQ = 100, 16, 23  # 23: the last batch is a partial one
SPEC = {"arch": "qwen3", "hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}


def _model(seed):
    return models.build(SPEC, VOCAB, SEQ_LEN + 1, seed).eval()


def _shard(seed=0, n=N_SEQ):
    tokens = np.random.default_rng(seed).integers(0, VOCAB, n * (SEQ_LEN + 1) + 5).astype(np.uint16)
    return Shard(None, {"seq_len": SEQ_LEN, "n_sequences": n, "sha256": f"random-{seed}"}, [tokens])


@pytest.fixture(scope="module")
def ref():
    return _model(1)


@pytest.fixture(scope="module")
def teacher():
    return _model(2)


def _naive(model, seqs, top_k):
    """Per sequence, float64 throughout: token NLL from a full log-softmax, top-k by torch.topk."""
    m = copy.deepcopy(model).double()
    nll, in_top = [], []
    with torch.no_grad():
        for s in seqs:
            x = torch.from_numpy(s.astype(np.int64))[None]
            z = m(input_ids=x[:, :-1]).logits[0]
            tgt = x[0, 1:]
            nll.append(-torch.log_softmax(z, -1).gather(1, tgt[:, None])[:, 0].numpy())
            in_top.append((z.topk(top_k, -1).indices == tgt[:, None]).any(1).numpy())
    return np.array(nll), np.array(in_top)


def _np_salt(nll, in_top, zeros):
    if zeros == "keep":
        return np.median(np.where(in_top, nll, 0.0), axis=1)
    return np.array([np.median(r[t]) if t.any() else -np.inf for r, t in zip(nll, in_top, strict=True)])


@pytest.mark.parametrize("top_k", [10, 40])
def test_scores_equal_a_naive_float64_full_softmax(ref, teacher, tmp_path, monkeypatch, top_k):
    monkeypatch.setattr(scoring, "CHUNK_ELEMENTS", 128 * 7)  # 7 rows per chunk: chunks cross sequences
    shard = _shard()
    nll_r, _ = _naive(ref, shard.sequences, top_k)
    nll_t, top_t = _naive(teacher, shard.sequences, top_k)
    assert 0 < top_t.mean() < 1
    got, _ = scoring.score_sequences((ref, teacher), shard, scoring.miniplm_score, 5, log=print)
    np.testing.assert_allclose(got, nll_r.mean(1) - nll_t.mean(1), atol=1e-5, rtol=0)
    for zeros in scoring.ZEROS:
        got, _ = scoring.score_sequences(teacher, shard, scoring.salt_ds_score(top_k, zeros), 5, log=print)
        np.testing.assert_allclose(got, _np_salt(nll_t, top_t, zeros), atol=1e-5, rtol=0)
    # the batched statistics themselves, position by position
    nll, in_top = scoring.token_stats(teacher, torch.from_numpy(shard.sequences.astype(np.int64)), top_k)
    assert np.array_equal(in_top.numpy(), top_t)
    np.testing.assert_allclose(nll.numpy(), nll_t, atol=1e-5, rtol=0)


def test_top_k_membership_counts_a_target_tied_with_the_kth_logit_as_inside():
    """Every position gets logits (3, 2, 2, 2, 1): a fake LM whose hidden state is 1 and head is that column."""
    from types import SimpleNamespace
    z = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0])
    fake = SimpleNamespace(model=lambda input_ids: SimpleNamespace(last_hidden_state=torch.ones(*input_ids.shape, 1)),
                           get_output_embeddings=lambda: SimpleNamespace(weight=z[:, None]), config=SimpleNamespace())
    x = torch.tensor([[0, 0, 1, 2, 3, 4]])  # targets 0, 1, 2, 3, 4
    nll, in_top = scoring.token_stats(fake, x, top_k=2)
    np.testing.assert_allclose(nll[0].numpy(), (torch.logsumexp(z, 0) - z).numpy(), atol=1e-6)
    assert in_top[0].tolist() == [True, True, True, True, False]   # 2 ties with the 2nd largest
    assert scoring.token_stats(fake, x, top_k=1)[1][0].tolist() == [True, False, False, False, False]


def test_miniplm_ranking_by_mean_loss_difference_equals_summed_log_ratio(ref, teacher, tmp_path):
    shard = _shard(3, n=40)
    nll_r, _ = _naive(ref, shard.sequences, 1)
    nll_t, _ = _naive(teacher, shard.sequences, 1)
    log_ratio = (-nll_t - (-nll_r)).sum(1)  # log p_teacher(x) − log p_ref(x), every x SEQ_LEN tokens
    got, _ = scoring.score_sequences((ref, teacher), shard, scoring.miniplm_score, 8, log=lambda *_: None)
    assert np.array_equal(np.argsort(-got, kind="stable"), np.argsort(-log_ratio, kind="stable"))
    kept = scoring.select_top(got, 0.5)
    assert len(kept) == 20 and np.array_equal(kept, np.sort(np.argsort(-log_ratio)[:20]))


def test_salt_ds_median_keep_vs_drop_by_hand():
    nll = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0],
                        [0.5, 9.0, 2.0, 7.0, 8.0],
                        [3.0, 4.0, 1.0, 6.0, 2.0]])
    in_top = torch.tensor([[True, False, True, False, True],     # kept losses 1, 3, 5
                           [True, False, True, True, False],     # kept 0.5, 2, 7
                           [False, False, False, False, False]])  # nothing learnable
    keep = scoring.salt_ds_aggregate(nll, in_top, "keep")
    drop = scoring.salt_ds_aggregate(nll, in_top, "drop")
    # keep: {1,0,3,0,5} -> 1; {0.5,0,2,7,0} -> 0.5; all zeros -> 0
    assert keep.tolist() == [1.0, 0.5, 0.0]
    # drop: {1,3,5} -> 3; {0.5,2,7} -> 2; empty -> -inf (ranked last)
    assert drop.tolist() == [3.0, 2.0, -math.inf]
    # an even count: the mean of the two middle values
    nll, in_top = torch.tensor([[4.0, 1.0, 2.0, 8.0]]), torch.tensor([[True, True, False, True]])
    assert scoring.salt_ds_aggregate(nll, in_top, "drop").tolist() == [4.0]  # {1, 4, 8}
    assert scoring.salt_ds_aggregate(nll, in_top, "keep").tolist() == [2.5]  # {0, 1, 4, 8}
    with pytest.raises(ValueError, match="zeros"):
        scoring.salt_ds_score(10, "ignore")


def test_select_top_is_deterministic_sized_and_in_corpus_order():
    vals = np.array([0.3, 0.9, 0.1, 0.9, 0.5, 0.9, -np.inf, 0.2], dtype=np.float32)
    assert scoring.select_top(vals, 2).tolist() == [1, 3]          # ties at 0.9 go to the lower index
    assert scoring.select_top(vals, 4).tolist() == [1, 3, 4, 5]
    assert scoring.select_top(vals, 0.5).tolist() == [1, 3, 4, 5]  # int(0.5 * 8) = 4
    assert scoring.select_top(vals, 0.3).tolist() == [1, 3]        # int(2.4) = 2
    assert scoring.select_top(vals, 100).tolist() == list(range(8))
    assert len(scoring.select_top(vals, 0.01)) == 1
    big = np.random.default_rng(0).normal(size=1001).round(2)          # many ties
    a, b = scoring.select_top(big, 0.5), scoring.select_top(big.copy(), 0.5)
    assert np.array_equal(a, b) and len(a) == 500 and np.all(np.diff(a) > 0)
    assert big[a].min() >= np.delete(big, a).max()
    with pytest.raises(ValueError, match="NaN"):
        scoring.select_top(np.array([1.0, np.nan]), 1)
    with pytest.raises(ValueError, match="fraction"):
        scoring.select_top(vals, 1.5)
    with pytest.raises(TypeError):
        scoring.select_top(vals, True)


@pytest.mark.parametrize("parts", [1, 2, 3, 6, 9])  # 23 sequences in batches of 4: 6 batches; 9 parts: 3 empty
def test_scattered_scoring_gathers_the_bits_of_one_job(ref, teacher, tmp_path, parts):
    shard, fn, quiet = _shard(), scoring.salt_ds_score(10, "drop"), (lambda *_: None)
    pool = np.array([0, 2, 3, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 18, 19, 20, 21, 22])  # a pool, not the shard
    whole, _ = scoring.score_sequences(teacher, shard, fn, 4, pool, log=quiet)
    ranges = scores.part_ranges(len(pool), 4, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(pool) and all(a % 4 == 0 for a, _ in ranges)
    for part in reversed(range(parts)):  # in any order, as a cluster runs them
        scoring.score_part(teacher, shard, fn, 4, pool, part, parts, tmp_path, log=quiet)
    got, positions, info = scores.load_scores(scores.gather_parts(tmp_path, parts))
    assert np.array_equal(got, whole) and np.array_equal(positions, pool)
    assert info["tokens_scored"] == len(pool) * SEQ_LEN and info["parts"] == parts
    assert info["flops"] == len(pool) * SEQ_LEN * models.forward_flops_per_token(teacher)


def test_a_gather_refuses_parts_of_another_split_key_or_content(ref, teacher, tmp_path):
    shard, fn, quiet = _shard(), scoring.salt_ds_score(10, "drop"), (lambda *_: None)
    for part in range(2):
        scoring.score_part(teacher, shard, fn, 4, None, part, 2, tmp_path, log=quiet)
    with pytest.raises(ValueError, match="scoring part 2 does not exist: compute.scoring_parts is 2"):
        scoring.score_part(teacher, shard, fn, 4, None, 2, 2, tmp_path, log=quiet)
    with pytest.raises(ValueError, match="different keys or part counts"):
        scores.gather_parts(tmp_path, 1)
    scoring.score_part(teacher, shard, scoring.salt_ds_score(10, "keep"), 4, None, 1, 2, tmp_path, log=quiet)
    with pytest.raises(ValueError, match="different keys or part counts"):  # another score spec
        scores.gather_parts(tmp_path, 2)
    scoring.score_part(teacher, shard, fn, 4, None, 1, 2, tmp_path, log=quiet)
    npz = tmp_path / "parts" / "part-001.npz"
    with np.load(npz) as z:
        np.savez(npz, scores=z["scores"][::-1].copy(), positions=z["positions"])  # same size, other order
    with pytest.raises(ValueError, match="part-001.npz does not match the hash its scoring job recorded"):
        scores.gather_parts(tmp_path, 2)


def test_scoring_flops_count_both_miniplm_models(ref, teacher):
    per_token = models.forward_flops_per_token(ref) + models.forward_flops_per_token(teacher)
    assert scoring.scoring_flops((ref, teacher), 1000) == 1000 * per_token
    assert models.forward_flops_per_token(ref) == 2 * models.n_params(ref)  # untied head: 2·N


def test_damaged_scores_are_refused_naming_the_file(ref, teacher, tmp_path):
    shard = _shard()
    scoring.score_part((ref, teacher), shard, scoring.miniplm_score, 8, None, 0, 1, tmp_path, log=lambda *_: None)
    got, pool, info = scores.load_scores(scores.gather_parts(tmp_path, 1))
    assert len(got) == len(pool) == len(shard) and info["sha256"]
    np.save(tmp_path / "scores.npy", got[::-1].copy())  # same size, other order: a silent wrong selection
    with pytest.raises(ValueError, match=r"scores.npy does not match the hash its selection recorded"):
        scores.load_scores(tmp_path / "scores.npy")
