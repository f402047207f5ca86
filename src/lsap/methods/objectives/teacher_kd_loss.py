"""The dense-teacher KD loss shared by vanilla KD (the surrogate over Σ∩, kd.py) and SALT's KD phase
(a small teacher in the student's vocabulary, salt.py). Imported by their builders: it needs torch."""

from __future__ import annotations

import torch

from lsap.methods.losses import CrossEntropy, _full
from lsap.models.fused_nll import fused_nll


class TeacherKD(CrossEntropy):
    """(1−ω)·CE + ω·CE(q_teacher, p_θ) with a dense teacher distribution q over the student's
    vocabulary, computed per chunk by `teacher(inputs) -> rows -> q(rows)`.

    Vanilla KD: ω = r, q = the surrogate over Σ∩ (its own tokenizer, through the tables).
    SALT: ω = 0.667, q = softmax(ρ·z) of the small teacher, for the first n_KD steps only.
    The logged `kl` is CE(q, p_θ) − H(q), which is 0 exactly when p_θ = q."""

    name = "kd"
    teacher_fraction = 1.0

    def __init__(self, teacher, omega: float, teacher_flops_per_token: int, kd_steps_frac: float = 1.0,
                 transition: str = "step", name: str = "kd"):
        if transition not in ("step", "linear"):
            raise ValueError(f"transition must be 'step' or 'linear', not '{transition}'")
        self.teacher, self.omega, self.kd_steps_frac, self.transition = teacher, omega, kd_steps_frac, transition
        self.teacher_flops_per_token, self.teacher_fraction, self.name = teacher_flops_per_token, kd_steps_frac, name

    def kd_steps(self, total_steps: int) -> int:
        return round(self.kd_steps_frac * total_steps)

    def weight(self, step: int, total_steps: int) -> float:
        """ω at `step` (0-based): constant for step < n_KD, then 0 (SALT's Algorithm 1). `linear`
        decays it to 0 over the last 1/9 of the KD phase (SALT: 32K→36K steps)."""
        n_kd = self.kd_steps(total_steps)
        if step >= n_kd:
            return 0.0
        if self.transition == "linear":
            start = n_kd - max(1, round(n_kd / 9))
            return self.omega * min(1.0, (n_kd - step) / (n_kd - start)) if step >= start else self.omega
        return self.omega

    def teacher_active(self, step: int, total_steps: int) -> bool:
        return self.weight(step, total_steps) > 0

    def __call__(self, net, x, seq_ids, step, total_steps):
        omega = self.weight(step, total_steps)
        if omega == 0:
            return CrossEntropy.__call__(self, net, x, seq_ids, step, total_steps)
        inputs, targets = x[:, :-1], x[:, 1:]
        q_rows = self.teacher(inputs)
        h = self._hidden(net, inputs)
        n = h.shape[0]
        entropy = []

        def dense(rows):
            q, cols, ent = q_rows(rows)
            entropy.append(ent)
            return (q * omega, cols) if cols is not None else q * omega

        stats = {}
        loss = fused_nll(h, self.head, targets.reshape(n, 1), _full(h, (n, 1), 1 - omega), dense=dense, stats=stats) / n
        kl = (stats["dense"] / omega - sum(entropy)) / n
        return loss, {"loss": loss.detach(), "ce": stats["nll0"] / n, "kl": kl, "omega": omega}


def dense_teacher(logits_fn, log_q=None, rho: float = 1.0):
    """A KD teacher: inputs -> (rows -> (q, student column ids or None, Σ_rows entropy of q)).
    Default log q = log_softmax(ρ·z) over the student's vocabulary, which is SALT's P^ρ
    renormalised; `log_q(z_rows) -> (log q, column ids)` replaces it for a teacher with another
    tokenizer (the surrogate through Σ∩, see `sigma_log_q`)."""
    log_q = log_q or (lambda z: (torch.log_softmax(z, -1), None))

    def teacher(inputs):
        z_all = logits_fn(inputs)
        z_all = z_all.reshape(-1, z_all.shape[-1])

        def rows(r):
            z = z_all[r]
            logq, cols = log_q((z if z.dtype == torch.float64 else z.float()) * rho)
            q = logq.exp()
            return q, cols, -(q * torch.where(q > 0, logq, 0.0)).sum()
        return rows
    return teacher


OUTSIDE_SIGMA = ("renormalise", "keep_mass")


def sigma_log_q(s_to_b: torch.Tensor, outside: str = "renormalise"):
    """Surrogate logits (c, V_s) -> (log q over Σ∩ (c, |Σ∩|), the student ids of those columns).
    Only Σ∩ columns exist: a student token outside Σ∩ gets no teacher mass.
    The teacher's mass outside Σ∩ has no student token to go to: `renormalise` (default) spreads
    it over Σ∩ (q sums to 1); `keep_mass` keeps the surrogate's own probabilities (q sums to the
    Σ∩ mass, the rest is not matched)."""
    if outside not in OUTSIDE_SIGMA:
        raise ValueError(f"kd_outside_sigma must be one of {OUTSIDE_SIGMA}, not '{outside}'")
    s_ids = (s_to_b >= 0).nonzero().squeeze(1)
    b_ids = s_to_b[s_ids]

    def log_q(z):
        zs = z[:, s_ids]
        return zs - torch.logsumexp(zs if outside == "renormalise" else z, -1, keepdim=True), b_ids
    return log_q
