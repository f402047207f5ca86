"""LSAP's target proposal with real tokenizers (GPT-2 student, SmolLM2 surrogate) and a small
random surrogate whose head is scaled up so its distributions are peaked like a trained LM's."""

import copy
import math

import numpy as np
import pytest
import torch

from lsap import models
from lsap.data import corpus, vocab
from lsap.models.surrogate import PROBABILITIES, CachedCandidates, Surrogate, select, write_cache
from lsap.models.topk import reference_topk

T = 48


@pytest.fixture(scope="module")
def pair(small_corpus):
    base, sur_tok = vocab.load_pretrained("gpt2"), vocab.load_pretrained("smollm2")
    b_to_s, s_to_b = vocab.translation_tables(base, sur_tok)
    model = models.build({"arch": "qwen3", "hidden": 16, "layers": 1, "heads": 2, "intermediate": 32},
                         len(sur_tok), T, seed=0).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40.0)
    ids = []
    for _, text in corpus.iter_documents(small_corpus, "train"):
        ids.extend(base(text)["input_ids"] + [vocab.boundary_id(base)])
        if len(ids) > 12 * (T + 1):
            break
    seqs = np.asarray(ids[: 12 * (T + 1)], dtype=np.int64).reshape(12, T + 1)
    return Surrogate(model, b_to_s, s_to_b, pad_id=vocab.boundary_id(sur_tok)), b_to_s, s_to_b, seqs


def _cands(sur, seqs):
    x = torch.from_numpy(seqs)
    return sur.candidates(x[:, :-1], x[:, 1:])


def test_target_and_tokens_outside_sigma_are_never_proposed(pair):
    sur, b_to_s, s_to_b, seqs = pair
    ids, logp = _cands(sur, seqs)
    keep = select(logp, 0.01)
    assert keep.any(), "the peaked surrogate proposes something at α = 0.01"
    targets = torch.from_numpy(seqs[:, 1:])[..., None].expand_as(ids)
    assert not (keep & (ids == targets)).any()
    assert (b_to_s[ids[keep].numpy()] != vocab.NOT_IN_SURROGATE).all()
    # the outside-Σ∩ inputs really occur, so the pad path is exercised
    assert (b_to_s[seqs] == vocab.NOT_IN_SURROGATE).any()


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2, 0.5])
def test_at_most_ceil_inverse_alpha_minus_one_targets(pair, alpha):
    ids, logp = _cands(pair[0], pair[3])
    assert select(logp, alpha).sum(-1).max() <= math.ceil(1 / alpha) - 1
    assert (logp.exp().sum(-1) <= 1 + 1e-5).all()


def test_probabilities_are_the_surrogates_own_or_renormalised(pair):
    sur, b_to_s, s_to_b, seqs = pair
    x = torch.from_numpy(seqs[:2])
    z = sur.logits(x[:, :-1]).float()
    ids, logp = sur.candidates(x[:, :-1], x[:, 1:])
    full = torch.log_softmax(z, -1)
    s_ids = torch.from_numpy(b_to_s)[ids]
    assert torch.allclose(logp, full.gather(-1, s_ids), atol=1e-5)
    renorm = Surrogate(sur.model, b_to_s, s_to_b, sur.pad_id, probabilities="renormalised")
    _, logp_r = renorm.candidates(x[:, :-1], x[:, 1:])
    assert (logp_r >= logp - 1e-6).all() and (logp_r > logp + 1e-3).any()


@pytest.mark.parametrize("probabilities", PROBABILITIES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 2e-5)])
def test_candidates_equal_the_float64_definition(pair, probabilities, dtype, tol):
    """The whole step (forward, Σ∩ mask, true token left out, top-k, log-probabilities) against
    `topk.reference_topk` in float64 on the surrogate's own logits, for a float64 and a float32
    surrogate: the same candidates in the same order (logp is float32 either way)."""
    sur, b_to_s, s_to_b, seqs = pair
    s = Surrogate(copy.deepcopy(sur.model).to(dtype), b_to_s, s_to_b, sur.pad_id, probabilities=probabilities)
    x = torch.from_numpy(seqs[:4])
    ids, logp = s.candidates(x[:, :-1], x[:, 1:])
    assert logp.dtype == torch.float32 and ids.shape == logp.shape == (4, T, s.top_k)
    z = s.logits(x[:, :-1])
    assert z.dtype == dtype
    s_tgt = torch.from_numpy(b_to_s)[x[:, 1:]].reshape(-1)
    ref_lp, ref_cols = reference_topk(z.reshape(-1, z.shape[-1]), s.top_k, s.in_sigma, s_tgt,
                                      probabilities == "renormalised")
    ids, logp = ids.reshape(ref_lp.shape), logp.reshape(ref_lp.shape)
    finite = ref_lp > -math.inf
    assert torch.equal(logp > -math.inf, finite) and finite.all()
    torch.testing.assert_close(logp.double(), ref_lp, atol=tol, rtol=0)
    assert torch.equal(ids, s.s_to_b[ref_cols])


def test_cached_candidates_equal_online_ones(pair, tmp_path):
    sur, _, _, seqs = pair
    write_cache(sur, seqs, tmp_path / "cache", batch_size=5, meta={}, log=lambda *_: None)
    cache = CachedCandidates(tmp_path / "cache", sur.top_k, "surrogate", len(seqs))
    batch = np.array([7, 2, 11])  # another batch composition and order than the cache's
    ids_c, logp_c = cache(batch, torch.device("cpu"))
    ids_o, logp_o = _cands(sur, seqs[batch])
    assert torch.equal(ids_c, ids_o)
    assert torch.allclose(logp_c, logp_o, atol=1e-5)
    for alpha in (0.01, 0.05, 0.2):
        assert torch.equal(select(logp_c, alpha), select(logp_o, alpha))
    with pytest.raises(ValueError, match="delete it and rerun"):
        CachedCandidates(tmp_path / "cache", 10, "surrogate", len(seqs))


def test_a_cache_of_some_sequences_serves_those_and_names_the_missing(pair, tmp_path):
    sur, _, _, seqs = pair
    write_cache(sur, seqs, tmp_path / "part", batch_size=4, meta={}, which=np.array([1, 4, 9]), log=lambda *_: None)
    cache = CachedCandidates(tmp_path / "part", sur.top_k, "surrogate", len(seqs))
    ids_c, _ = cache(np.array([9, 1]), torch.device("cpu"))
    assert torch.equal(ids_c, _cands(sur, seqs[[9, 1]])[0])
    with pytest.raises(ValueError, match=r"sequences \[2\] are not in the target cache"):
        cache(np.array([1, 2]), torch.device("cpu"))


def test_a_damaged_cache_is_refused_naming_the_file(pair, tmp_path):
    """A zeroed logp.npy of the right size would give every position 15 targets: refused on open."""
    sur, _, _, seqs = pair
    write_cache(sur, seqs, tmp_path / "cache", batch_size=5, meta={}, log=lambda *_: None)
    logp = tmp_path / "cache" / "logp.npy"
    arr = np.load(logp)
    np.save(logp, np.zeros_like(arr))
    with pytest.raises(ValueError, match=r"logp.npy does not match the hash .* delete .*cache and rerun"):
        CachedCandidates(tmp_path / "cache", sur.top_k, "surrogate", len(seqs))


def test_proposal_quality_by_hand(pair):
    """How often the true next token is above α, and how many other Σ∩ tokens are, against a loop
    over positions with the surrogate's own log-softmax (windows of T targets, as training reads)."""
    from lsap.evaluation import surrogate_lines

    sur, b_to_s, s_to_b, seqs = pair
    stream = seqs[:3].reshape(-1)
    scored = np.ones(len(stream), dtype=bool)
    scored[0] = scored[T + 1] = False  # two positions left out, as boundaries are
    alphas = [1e-9, 0.01, 0.2]  # the random surrogate gives true tokens tiny but nonzero mass
    got = surrogate_lines.proposal_quality(sur, stream, scored, alphas, T, batch_size=2)
    shared = s_to_b >= 0
    n, above, cands = 0, np.zeros(3), np.zeros(3)
    x = torch.from_numpy(stream)
    for t in range(1, len(stream)):
        if not scored[t]:
            continue
        start = (t - 1) // T * T
        logp = torch.log_softmax(sur.logits(x[start:t][None])[0, -1].float(), -1).numpy()[:len(s_to_b)]
        s = b_to_s[stream[t]]
        for j, a in enumerate(alphas):
            true = s >= 0 and logp[s] > math.log(a)
            above[j] += true
            cands[j] += (logp[shared] > math.log(a)).sum() - true
        n += 1
    for j, a in enumerate(alphas):
        assert got[a]["positions"] == n
        assert got[a]["true_above"] == pytest.approx(above[j] / n) and got[a]["candidates"] == pytest.approx(cands[j] / n)
    assert got[0.01]["candidates"] > got[0.2]["candidates"] and 0 < got[1e-9]["true_above"] < 1


def test_predicted_costs_by_hand(pair, monkeypatch):
    """The predicted costs' rows are the surrogate's distribution at evenly spread scored positions
    (windows of T, one per forward as a large vocabulary gets), and each arm's cost is
    objective_cost's on them with the training unigram read through Σ∩."""
    from lsap.data import heldout
    from lsap.evaluation import surrogate_lines
    from lsap.methods import objective_cost

    sur, b_to_s, s_to_b, seqs = pair
    stream = seqs[:3].reshape(-1)
    scored = np.ones(len(stream), dtype=bool)
    scored[0] = scored[T + 1] = False
    monkeypatch.setattr(surrogate_lines, "COST_POSITIONS", 7)
    monkeypatch.setattr(heldout, "FORWARD_ELEMENTS", T * len(s_to_b))
    P = surrogate_lines.cost_rows(sur, stream, scored, T, batch_size=2)
    at = np.flatnonzero(scored)
    x = torch.from_numpy(stream)
    for row, t in zip(P, at[np.linspace(0, len(at) - 1, 7).round().astype(int)], strict=True):
        start = (t - 1) // T * T
        want = torch.softmax(sur.logits(x[start:t][None])[0, -1].double(), -1).numpy()
        np.testing.assert_allclose(row, want, rtol=1e-4, atol=1e-10)  # float32 forwards of other shapes
    unigram = np.bincount(stream, minlength=len(b_to_s)).astype(np.float64) + 1
    arms = {"ce": {"objective": "ce"}, "lsap": {"objective": "lsap", "alpha": 0.01},
            "random": {"objective": "lsap", "alpha": 0.01, "proposals": "unigram"}}
    got = surrogate_lines.arm_costs(P, s_to_b, arms, unigram, 0.05)
    sigma = s_to_b >= 0
    u = np.array([unigram[b] if b >= 0 else 0.0 for b in s_to_b]) / unigram.sum()
    for name, m in arms.items():
        want = objective_cost.method_cost(P, m, 0.05, sigma, u, 1 - u.sum(), len(unigram), None).mean()
        assert got[name] == pytest.approx(want)
    assert got["ce"] == 0 < got["lsap"] and got["random"] > 0
