"""The candidate step's top-k (`lsap.models.topk`) against its float64 definition: every reading of the
knobs (probabilities surrogate | renormalised; the true token left out before thresholding; the
Σ∩ mask), float64, float32 and bf16 logits, ties, vocabularies not divisible by the block size,
fewer proposable columns than k, and no full-vocabulary copy."""

import math

import pytest
import torch

from lsap.models.topk import chunk_topk, masked_topk, reference_topk, two_level

K = 15
# the eager form (CPU) and the two-level one (compiled on GPU), both run eagerly here
FORMS = pytest.mark.parametrize("form", [chunk_topk, two_level], ids=["one_level", "two_level"])


def _case(n, v, dtype, seed, keep_frac=0.7, integer=False):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(-3, 3, (n, v), generator=g).to(dtype) if integer else (3 * torch.randn(n, v, generator=g)).to(dtype)
    keep = torch.rand(v, generator=g) < keep_frac
    # the true token: in Σ∩, outside it, or not in the surrogate at all (-100)
    exclude = torch.randint(0, v, (n,), generator=g)
    kept = keep.nonzero().squeeze(1)
    exclude[: n // 3] = kept[torch.randint(0, len(kept), (n // 3,), generator=g)]
    exclude[n // 3: n // 3 + 3] = -100
    # some rows whose true token is the row's largest logit among the proposable columns
    zm = torch.where(keep, z.double(), -math.inf)
    exclude[-4:] = zm[-4:].argmax(-1)
    return z, keep, exclude


def _check(z, keep, exclude, renormalise, logp, cols, tol, same_columns):
    ref_lp, ref_cols = reference_topk(z, K, keep, exclude, renormalise)
    assert logp.shape == cols.shape == ref_lp.shape
    assert logp.dtype == (torch.float64 if z.dtype == torch.float64 else torch.float32)
    assert not logp.isnan().any()
    finite = ref_lp > -math.inf
    assert torch.equal(logp > -math.inf, finite), "the same slots hold a candidate"
    torch.testing.assert_close(logp.double(), ref_lp, atol=tol, rtol=0)
    if same_columns:
        assert torch.equal(torch.where(finite, cols, 0), torch.where(finite, ref_cols, 0))
    # ties or not: every returned column is proposable, distinct within its row, and carries the
    # reported value (the values themselves equal the reference's, above)
    zd = z.double()
    for r in range(z.shape[0]):
        c = cols[r][finite[r]]
        assert len(set(c.tolist())) == len(c)
        assert keep[c].all() and not (c == exclude[r]).any()
        assert torch.equal(zd[r, c], zd[r, ref_cols[r][finite[r]]])  # both largest first


@FORMS
@pytest.mark.parametrize("renormalise", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5), (torch.bfloat16, 2e-5)])
@pytest.mark.parametrize("v,block", [(2048, 64), (3001, 128), (3001, 32), (200, 256), (1000, 512)])
def test_equals_the_float64_definition(form, renormalise, dtype, tol, v, block):
    """Random logits (no ties in float32/64: the same columns in the same order; bf16 has ties:
    the same values), chunks of rows that do not divide N, vocabularies not divisible by the block,
    one shorter than the block."""
    z, keep, exclude = _case(37, v, dtype, seed=v + block)
    logp, cols = masked_topk(z, K, keep, exclude, renormalise, block=block, rows=10, chunk_fn=form)
    _check(z, keep, exclude, renormalise, logp, cols, tol, same_columns=dtype != torch.bfloat16)


@FORMS
@pytest.mark.parametrize("renormalise", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ties_across_and_within_blocks(form, renormalise, dtype):
    """Six distinct values over 1,100 columns: many blocks share their maximum and the k-th value
    is tied far beyond k; the values are still exactly the top k's."""
    z, keep, exclude = _case(20, 1100, dtype, seed=7, integer=True)
    logp, cols = masked_topk(z, K, keep, exclude, renormalise, block=32, rows=7, chunk_fn=form)
    _check(z, keep, exclude, renormalise, logp, cols, 1e-6, same_columns=False)


@FORMS
@pytest.mark.parametrize("renormalise", [False, True])
def test_fewer_proposable_columns_than_k(form, renormalise):
    """Σ∩ of 10 columns (one of them some rows' true token), V < k, and a row with nothing left:
    -inf slots, never nan."""
    z, _, exclude = _case(12, 700, torch.float32, seed=3)
    keep = torch.zeros(700, dtype=torch.bool)
    keep[torch.arange(5, 700, 77)] = True
    exclude[:4] = 5
    logp, cols = masked_topk(z, K, keep, exclude, renormalise, block=32, chunk_fn=form)
    assert ((logp > -math.inf).sum(1)[:4] == 9).all() and ((logp > -math.inf).sum(1)[4:] >= 9).all()
    _check(z, keep, exclude, renormalise, logp, cols, 2e-5, same_columns=True)
    tiny = torch.randn(3, 10, dtype=torch.float64)
    only = torch.zeros(10, dtype=torch.bool)
    only[4] = True
    logp, _ = masked_topk(tiny, K, only, torch.tensor([4, -100, 0]), renormalise, block=4, chunk_fn=form)
    assert logp.shape == (3, K) and not logp.isnan().any()
    assert (logp[0] == -math.inf).all() and (logp[1:, 1:] == -math.inf).all() and (logp[1:, 0] > -math.inf).all()
    if renormalise:  # the only proposable column holds all the renormalised mass
        assert torch.allclose(logp[1:, 0], torch.zeros(2, dtype=torch.float64))


@FORMS
def test_logits_are_not_modified_and_no_full_vocabulary_copy_is_made(form):
    """Every tensor the step creates, recorded by a dispatch mode: none as large as the (N, V)
    logits (no float32 copy, no masked copy) when the rows come in chunks; the input is intact."""
    from torch.utils._python_dispatch import TorchDispatchMode

    n, v = 64, 3000
    z, keep, exclude = _case(n, v, torch.bfloat16, seed=11)
    before = z.clone()
    sizes = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() != z.untyped_storage().data_ptr():
                    sizes.append((func, t.numel(), t.dtype))
            return out

    with Record():
        masked_topk(z, K, keep, exclude, renormalise=True, block=128, rows=16, chunk_fn=form)
    assert torch.equal(z, before)
    big = [(f, s, d) for f, s, d in sizes if s >= n * v // 2]
    assert not big, f"full-vocabulary temporaries: {big[:5]}"
    assert max(s for _, s, _ in sizes) <= 16 * v


def test_every_row_split_and_both_forms_agree():
    """Rows split differently give the same result (the cache and the online path batch
    differently), and so do the two forms (no ties in float32 random logits)."""
    z, keep, exclude = _case(30, 1500, torch.float32, seed=5)
    a = masked_topk(z, K, keep, exclude, block=64, rows=30)
    b = masked_topk(z, K, keep, exclude, block=64, rows=4)
    c = chunk_topk(z, K, keep, exclude, False, 64)
    d = masked_topk(z, K, keep, exclude, block=64, rows=4, chunk_fn=two_level)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[0], c[0])
    assert torch.equal(a[1], d[1]) and torch.allclose(a[0], d[0], atol=1e-6, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compiled", [False, True])
def test_on_gpu_bf16_without_host_sync(compiled):
    """At Qwen3's vocabulary in bf16: the reference's values, and no host sync in the step."""
    from lsap.models.topk import compiled_chunk

    z, keep, exclude = _case(512, 151_936, torch.bfloat16, seed=1)
    fn = compiled_chunk() if compiled else two_level
    zc, kc, ec = z.cuda(), keep.cuda(), exclude.cuda()
    masked_topk(zc, K, kc, ec, True, chunk_fn=fn)  # compile outside the checked call
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        logp, cols = masked_topk(zc, K, kc, ec, True, chunk_fn=fn)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    if compiled:
        assert fn.state["fn"] is not chunk_topk, "the compiled path fell back to eager"
    _check(z, keep, exclude, True, logp.cpu(), cols.cpu(), 2e-5, same_columns=False)
