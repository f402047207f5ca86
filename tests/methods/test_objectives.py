"""The fused chunked NLL against a naive float64 reference, and the LSAP / KD / SALT losses."""

import math

import numpy as np
import pytest
import torch

from lsap.methods import losses
from lsap.methods.objectives import lsap_loss, teacher_kd_loss
from lsap.models.fused_nll import fused_nll


def _naive(h, W, ids, weights, dense=None):
    logp = torch.log_softmax(h @ W.T, -1)
    loss = -(weights * logp.gather(1, ids)).sum()
    return loss - (dense * logp).sum() if dense is not None else loss


@pytest.mark.parametrize("with_dense", [False, True, "columns"])
def test_fused_nll_and_its_gradient_equal_a_naive_float64_reference(with_dense):
    g = torch.Generator().manual_seed(0)
    n, hdim, v, k = 37, 8, 50, 4
    h = torch.randn(n, hdim, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(v, hdim, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, v, (n, k), generator=g)
    weights = torch.rand(n, k, generator=g, dtype=torch.float64) * (torch.rand(n, k, generator=g) > 0.3)
    dense = torch.rand(n, v, generator=g, dtype=torch.float64) if with_dense else None
    dense_fn = (lambda r: dense[r]) if with_dense else None
    if with_dense == "columns":  # a teacher over some columns only (KD through Σ∩)
        cols = torch.randperm(v, generator=g)[:30]
        dense[:, [c for c in range(v) if c not in cols.tolist()]] = 0
        dense_fn = lambda r: (dense[r][:, cols], cols)  # noqa: E731
    ref = _naive(h, W, ids, weights, dense)
    gh_ref, gw_ref = torch.autograd.grad(ref, (h, W))
    got = fused_nll(h, W, ids, weights, dense=dense_fn, chunk=7)
    gh, gw = torch.autograd.grad(got * 1.7, (h, W))  # a non-unit upstream gradient is applied too
    assert abs(got.item() - ref.item()) < 1e-6
    assert torch.allclose(gh, 1.7 * gh_ref, atol=1e-6) and torch.allclose(gw, 1.7 * gw_ref, atol=1e-6)


def test_fused_nll_float32_is_close_to_float64():
    g = torch.Generator().manual_seed(1)
    h, W = torch.randn(64, 16, generator=g), torch.randn(300, 16, generator=g)
    ids, w = torch.randint(0, 300, (64, 3), generator=g), torch.ones(64, 3)
    ref = _naive(h.double(), W.double(), ids, w.double())
    assert fused_nll(h, W, ids, w, chunk=10).item() == pytest.approx(ref.item(), rel=1e-6)


class _Fixed(torch.nn.Module):
    """A 'network' whose hidden states are given: the loss arithmetic alone is under test."""

    def __init__(self, h):
        super().__init__()
        self.h = h

    def forward(self, inputs):
        return self.h


class _Head:
    def __init__(self, W):
        self.W = W

    def get_output_embeddings(self):
        return torch.nn.Linear(1, 1) if self.W is None else type("L", (), {"weight": self.W})()


def _setup(seed=0, b=2, t=3, v=6, hdim=5, k=3):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, t, hdim, generator=g, dtype=torch.float64)
    W = torch.randn(v, hdim, generator=g, dtype=torch.float64)
    x = torch.randint(0, v, (b, t + 1), generator=g)
    cand = torch.randint(0, v, (b, t, k), generator=g)
    logp = torch.log(torch.tensor([0.5, 0.12, 0.03]).expand(b, t, k).clone())
    return _Fixed(h), W, x, cand, logp


def test_lsap_with_alpha_one_is_exactly_ce():
    net, W, x, cand, logp = _setup()
    ce = losses.CrossEntropy().bind(_Head(W))(net, x, None, 0, 10)[0]
    lsap = lsap_loss.LSAP(lambda i, t, s: (cand, logp), alpha=1.0).bind(_Head(W))(net, x, None, 0, 10)[0]
    assert lsap.item() == ce.item()
    logits = (net.h @ W.T)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 6), x[:, 1:].reshape(-1))
    assert ce.item() == pytest.approx(ref.item(), abs=1e-12)


@pytest.mark.parametrize("normaliser,alpha", [("total_targets", 0.1), ("mean", 0.1), ("literal", 0.1),
                                               ("total_targets", 0.01), ("mean", 0.6)])
def test_lsap_loss_by_hand(normaliser, alpha):
    net, W, x, cand, logp = _setup()
    obj = lsap_loss.LSAP(lambda i, t, s: (cand, logp), alpha=alpha, normaliser=normaliser).bind(_Head(W))
    loss, parts = obj(net, x, None, 0, 10)
    lp = torch.log_softmax(net.h @ W.T, -1).numpy()
    y, c, keep = x[:, 1:].numpy(), cand.numpy(), (logp > math.log(alpha)).numpy()
    ce_sum = aux_sum = n_aux = 0.0
    for b in range(2):
        for t in range(3):
            ce_sum -= lp[b, t, y[b, t]]
            for j in range(3):
                if keep[b, t, j]:
                    aux_sum -= lp[b, t, c[b, t, j]]
                    n_aux += 1
    n = 6
    denom = {"total_targets": n + n_aux, "mean": n_aux or n, "literal": n * n_aux if n_aux else n}[normaliser]
    assert loss.item() == pytest.approx((ce_sum + aux_sum) / denom, abs=1e-12)
    assert parts["targets_per_pos"] == n_aux / n
    assert float(parts["ce"]) == pytest.approx(ce_sum / n, abs=1e-12)


def test_lsap_lambda_anneals_from_one_to_zero():
    assert lsap_loss.cosine_lambda(0) == 1 and lsap_loss.cosine_lambda(1) == pytest.approx(0)
    net, W, x, cand, logp = _setup()
    obj = lsap_loss.LSAP(lambda i, t, s: (cand, logp), alpha=0.01, anneal=True).bind(_Head(W))
    assert obj(net, x, None, 5, 10)[1]["lambda"] == pytest.approx(0.5)
    # at the end of the run the auxiliary terms weigh nothing: only the normaliser differs from CE
    end, parts = obj(net, x, None, 10, 10)
    ce = losses.CrossEntropy().bind(_Head(W))(net, x, None, 0, 10)[0]
    assert end.item() == pytest.approx(ce.item() * 6 / (6 + 6 * float(parts["targets_per_pos"])), abs=1e-12)


def _kd(student_logits_equal_teacher: bool, omega=0.5, rho=1.0):
    net, W, x, _, _ = _setup(v=6)
    z = net.h @ W.T
    teacher_z = z / rho if student_logits_equal_teacher else torch.randn_like(z)
    teacher = teacher_kd_loss.dense_teacher(lambda inputs: teacher_z, rho=rho)
    obj = teacher_kd_loss.TeacherKD(teacher, omega=omega, teacher_flops_per_token=1).bind(_Head(W))
    return obj, net, x, z, teacher_z


def test_kd_term_is_zero_when_student_equals_teacher():
    obj, net, x, z, _ = _kd(True)
    assert float(obj(net, x, None, 0, 10)[1]["kl"]) == pytest.approx(0, abs=1e-10)
    obj, net, x, z, _ = _kd(False)
    assert float(obj(net, x, None, 0, 10)[1]["kl"]) > 1e-3


def test_kd_through_sigma_covers_only_the_shared_vocabulary():
    """A surrogate whose Σ∩ maps its ids 0..3 to student ids 3..0: q lives on those columns,
    renormalised (sums to 1) or keeping the surrogate's own mass."""
    s_to_b = torch.tensor([3, 2, 1, 0, -1])
    zs = torch.randn(4, 5, dtype=torch.float64)
    logq, cols = teacher_kd_loss.sigma_log_q(s_to_b, "renormalise")(zs)
    assert cols.tolist() == [3, 2, 1, 0]
    assert torch.allclose(logq.exp(), torch.softmax(zs[:, :4], -1))
    kept, _ = teacher_kd_loss.sigma_log_q(s_to_b, "keep_mass")(zs)
    assert torch.allclose(kept.exp(), torch.softmax(zs, -1)[:, :4])


def test_kd_through_sigma_is_zero_when_the_student_matches_the_teacher_there():
    """Student logits equal to the surrogate's on Σ∩ and −∞-like elsewhere: KL = 0; the fused
    loss with the (values, columns) teacher equals a dense-vocabulary reference."""
    net, W, x, _, _ = _setup(v=6)
    z = net.h @ W.T                                        # (2, 3, 6) student logits
    s_to_b = torch.tensor([5, 0, 2, -1])                  # surrogate ids 0,1,2 -> student 5,0,2
    zs = torch.stack([z[..., 5], z[..., 0], z[..., 2], torch.zeros_like(z[..., 0])], -1)
    teacher = teacher_kd_loss.dense_teacher(lambda inputs: zs, log_q=teacher_kd_loss.sigma_log_q(s_to_b))
    obj = teacher_kd_loss.TeacherKD(teacher, omega=1.0, teacher_flops_per_token=1).bind(_Head(W))
    loss, parts = obj(net, x, None, 0, 10)
    q = torch.zeros_like(z)
    q[..., [5, 0, 2]] = torch.softmax(zs[..., :3], -1)
    ref = -(q * torch.log_softmax(z, -1)).sum(-1).mean()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-10)
    kl = (q * (torch.where(q > 0, q.log(), 0.0) - torch.log_softmax(z, -1))).sum(-1).mean()
    assert float(parts["kl"]) == pytest.approx(kl.item(), abs=1e-10) and kl > 0  # student has mass off Σ∩


def test_salt_loss_identity_and_temperature():
    """E[(1−ω)CE(1_x, Q) + ωCE(P, Q)] = CE((1−ω)D + ωP, Q), and softmax(ρz) = P^ρ renormalised."""
    g = torch.Generator().manual_seed(3)
    omega, rho = 0.667, 0.25
    obj, net, x, z, tz = _kd(False, omega=omega, rho=rho)
    loss = obj(net, x, None, 0, 10)[0]
    p_rho = torch.softmax(tz, -1) ** rho
    p_rho = p_rho / p_rho.sum(-1, keepdim=True)
    assert torch.allclose(p_rho, torch.softmax(rho * tz, -1))
    onehot = torch.nn.functional.one_hot(x[:, 1:], 6).double()
    mix = (1 - omega) * onehot + omega * p_rho
    assert loss.item() == pytest.approx(-(mix * torch.log_softmax(z, -1)).sum(-1).mean().item(), abs=1e-10)
    del g


def test_salt_switches_to_ce_at_step_n_kd_exactly():
    teacher = teacher_kd_loss.dense_teacher(lambda inputs: None)
    salt = teacher_kd_loss.TeacherKD(teacher, omega=0.667, teacher_flops_per_token=10, kd_steps_frac=0.173)
    n_kd = salt.kd_steps(208)
    assert n_kd == 36
    assert salt.weight(35, 208) == 0.667 and salt.weight(36, 208) == 0 and not salt.teacher_active(36, 208)
    linear = teacher_kd_loss.TeacherKD(teacher, 0.667, 10, kd_steps_frac=0.173, transition="linear")
    w = [linear.weight(s, 208) for s in range(40)]
    assert w[31] == 0.667 and 0 < w[34] < 0.667 and w[36] == 0 and np.all(np.diff(w[30:37]) <= 0)


def test_lsap_normaliser_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="normaliser must be one of"):
        lsap_loss.LSAP(None, 0.05, normaliser="per_token")


def test_fused_nll_in_bf16_as_on_gpu_matches_float64_within_bf16_error():
    """The GPU path's arithmetic on CPU: bf16 hidden states (autocast), float32 master weights,
    logits upcast per chunk, gradients cast back to each input's dtype."""
    g = torch.Generator().manual_seed(4)
    h32, W = torch.randn(96, 32, generator=g), torch.randn(500, 32, generator=g) * 0.1
    ids, w = torch.randint(0, 500, (96, 4), generator=g), torch.rand(96, 4, generator=g)
    h = h32.bfloat16().requires_grad_()
    W.requires_grad_()
    got = fused_nll(h, W, ids, w, chunk=40)
    got.backward()
    assert h.grad.dtype == torch.bfloat16 and W.grad.dtype == torch.float32
    hd, Wd = h.detach().double().requires_grad_(), W.detach().double().bfloat16().double().requires_grad_()
    ref = _naive(hd, Wd, ids, w.double())
    ref.backward()
    assert got.item() == pytest.approx(ref.item(), rel=2e-3)
    assert torch.allclose(W.grad.double(), Wd.grad, atol=0.05 * Wd.grad.abs().max().item())


def test_fused_nll_counts_how_often_the_models_top_token_is_an_extra_target():
    g = torch.Generator().manual_seed(0)
    h, W = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(11, 8, generator=g, dtype=torch.float64)
    top = (h @ W.T).argmax(-1)
    other = (top + 1) % 11
    # rows 0-1: the argmax is an extra target; 2-3: another token is; 4-5: no extra target at all
    ids = torch.stack([top, torch.cat([top[:2], other[2:4], top[4:]]), other], 1)
    weights = torch.tensor([[1.0, 1.0, 0.0]] * 4 + [[1.0, 0.0, 0.0]] * 2, dtype=torch.float64)
    stats = {}
    fused_nll(h, W, ids, weights, chunk=4, stats=stats)  # two chunks: the counts add up across them
    assert float(stats["aux_positions"]) == 4 and float(stats["top_in_aux"]) == 2


def test_fused_nll_under_bf16_autocast_runs_the_head_in_bf16_with_fp32_log_sum_exp():
    """The GPU path on CPU: under bf16 autocast the head's matmuls run in bf16 even for fp32 hidden
    states (OLMo2/Qwen3's final RMSNorm hands over fp32), logits upcast for the log-sum-exp.
    Against float64 on the same bf16-representable inputs:
    - loss: each logit is rounded once to bf16 (relative 2^-9); those errors have random signs and
      average over N·K terms, so the loss is within 1e-4 relative (measured 7e-7);
    - gradients: dL/dz is rounded to bf16 before its matmuls, 2^-9 = 1.95e-3 relative per element,
      so 5e-3 relative in norm (measured 1.8e-3). fp32 is 1e-6 / 1e-5: the bf16 path really ran."""
    g = torch.Generator().manual_seed(0)
    n, hid, vocab, k = 512, 256, 8192, 16
    h = torch.randn(n, hid, generator=g).to(torch.bfloat16).float()
    W = (0.05 * torch.randn(vocab, hid, generator=g)).to(torch.bfloat16).float()
    ids = torch.randint(0, vocab, (n, k), generator=g)
    w = (torch.rand(n, k, generator=g) > 0.7).float()
    w[:, 0] = 1.0

    def run(dtype, autocast):
        hh, WW = h.to(dtype).clone().requires_grad_(), W.to(dtype).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = fused_nll(hh, WW, ids, w.to(dtype), chunk=128)
        loss.backward()
        return [t.double() for t in (loss.detach(), hh.grad, WW.grad)]

    ref, bf16, fp32 = run(torch.float64, False), run(torch.float32, True), run(torch.float32, False)
    rel = [float((a - b).norm() / b.norm()) for a, b in zip(bf16, ref, strict=True)]
    assert rel[0] < 1e-4 and rel[1] < 5e-3 and rel[2] < 5e-3, rel
    assert bf16[1].dtype == torch.float64 and rel[1] > 1e-4  # the bf16 matmuls ran (fp32 would be ~1e-7)
    assert float((fp32[1] - ref[1]).norm() / ref[1].norm()) < 1e-5


@pytest.mark.parametrize("proposals", ["surrogate", "unigram", "uniform"])
@pytest.mark.parametrize("normaliser", ["total_targets", "split"])
def test_lsap_variants_by_hand(proposals, normaliser):
    """λ scale, no auxiliary term where the true token is outside Σ∩, the split normaliser, and the
    controls (count-matched unigram targets; the same mass spread uniformly) against float64 loops."""
    net, W, x, cand, logp = _setup(b=2, t=4, v=7, k=3)
    alpha, scale = 0.1, 0.3
    shared = torch.tensor([True, True, False, True, True, True, False])
    real = 6  # the tokenizer's entries: row 6 of the head is padding
    unigram = torch.tensor([0.3, 0.0, 0.2, 0.1, 0.25, 0.15], dtype=torch.float64)
    obj = lsap_loss.LSAP(lambda i, t, s: (cand, logp), alpha=alpha, normaliser=normaliser, lambda_scale=scale,
                          proposals=proposals, shared_target=shared, unigram=unigram).bind(_Head(W))
    seq_ids = np.array([4, 9])
    loss, parts = obj(net, x, seq_ids, 3, 10)
    lp = torch.log_softmax(net.h @ W.T, -1).numpy()
    y = x[:, 1:].numpy()
    ids = (obj._draw(x[:, 1:], 3, 3, seq_ids) if proposals == "unigram" else cand).numpy()
    keep = (logp > math.log(alpha)).numpy() & shared.numpy()[y][..., None]
    ce_sum = aux_sum = n_aux = 0.0
    for b in range(2):
        for t in range(4):
            ce_sum -= lp[b, t, y[b, t]]
            count = keep[b, t].sum()
            n_aux += count
            if proposals == "uniform":
                aux_sum -= count * lp[b, t, :real].mean()
            else:
                aux_sum -= sum(lp[b, t, ids[b, t, j]] for j in range(3) if keep[b, t, j])
    n = 8
    assert 0 < n_aux < n * 3  # some positions lose their targets to Σ∩, others keep them
    want = ce_sum / n + scale * aux_sum / n_aux if normaliser == "split" else (ce_sum + scale * aux_sum) / (n + n_aux)
    assert loss.item() == pytest.approx(want, abs=1e-12)
    assert parts["targets_per_pos"] == n_aux / n and parts["lambda"] == scale
    if proposals == "unigram":
        assert (ids != 1).all()  # never a token of zero unigram mass
        assert (obj._draw(x[:, 1:], 3, 3, seq_ids) == obj._draw(x[:, 1:], 3, 3, seq_ids)).all()
        assert not (obj._draw(x[:, 1:], 3, 4, seq_ids) == obj._draw(x[:, 1:], 3, 3, seq_ids)).all()
