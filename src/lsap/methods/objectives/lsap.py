"""LSAP: CE + λ(t) · the NLL of each of the surrogate's candidates above α (NOTES §1.1), online or
from the targets cache; with `proposals`, the controls that spend the same count of targets on
random tokens or on uniform mass."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import REQUIRED, STUDENT, TARGETS, ObjectiveKind, knob

NAME = "lsap"


@dataclass(frozen=True)
class Knobs:
    alpha: float = knob(REQUIRED, "keep candidates with p > alpha (alpha 1 is never exceeded: plain CE)",
                        type="number", exclusiveMinimum=0, exclusiveMaximum=1)
    # the targets cache holds the surrogate's top_k and their probabilities: α, λ, ... only filter or weigh them
    top_k: int = knob(15, "candidates the surrogate proposes per position, before alpha", (TARGETS, STUDENT),
                      type="integer", minimum=1)
    probabilities: str = knob("surrogate", "threshold the surrogate's own p, or p renormalised after masking the target "
                              "and non-shared tokens", (TARGETS, STUDENT), enum=["surrogate", "renormalised"])
    normaliser: str = knob("total_targets", "N + sum|v_t| | N*mean|v_t| | N*|v| (|v| = sum_t |v_t|) | split: CE/N + "
                           "lambda * (mean auxiliary NLL), the authors' trainer",
                           enum=["total_targets", "mean", "literal", "split"])
    lambda_schedule: str = knob("constant", "lambda = lambda_scale, or cosine-annealed lambda_scale -> 0 over the budget",
                                enum=["constant", "cosine"])
    # the paper gives no λ: 1 is the weight its formula writes, our choice (docs/methods.md)
    lambda_scale: float = knob(1.0, "the auxiliary terms' weight lambda; the paper gives no value: 1 is the weight its "
                               "formula writes, our choice (docs/methods.md)", type="number", exclusiveMinimum=0)
    aux_positions: str = knob("shared_target", "shared_target (default): no auxiliary term where the true token is "
                              "outside the shared vocabulary (every version of the authors' code; the paper's '-100' "
                              "clause); all: a term wherever the surrogate proposes", enum=["shared_target", "all"])
    proposals: str = knob("surrogate", "what the surrogate's count of candidates is spent on: its candidates (LSAP); as "
                          "many draws from the training unigram (random-target control); the same mass spread over the "
                          "vocabulary (label smoothing at LSAP's mass)", enum=["surrogate", "unigram", "uniform"])
    targets: str = knob("online", "surrogate inside the step, or the targets rule's cache (same candidates)",
                        enum=["online", "cached"])


def label(m) -> str:
    k = m.objective
    variant = {"unigram": " random targets", "uniform": " uniform mass"}.get(k.proposals, "")
    return (f"lsap α={k.alpha:g}" + (" anneal" if k.lambda_schedule == "cosine" else "")
            + (f" λ={k.lambda_scale:g}" if k.lambda_scale != 1.0 else "") + variant
            + (" all-positions" if k.aux_positions == "all" else "")
            + (f" {k.normaliser}" if k.normaliser != "total_targets" else ""))


def build(cfg, m, model, inputs, dev):
    import torch

    from lsap.data import shards, vocab
    from lsap.methods.objectives import surrogate_teacher
    from lsap.methods.objectives.lsap_loss import LSAP

    k = m.objective
    if k.targets == "cached":
        candidates, fpt = surrogate_teacher.cached_candidates(cfg, m, inputs)
    else:
        sur = surrogate_teacher.load(cfg, m, inputs, dev)
        candidates = lambda x, tgt, seq_ids: sur.candidates(x, tgt)  # noqa: E731
        fpt = sur.flops_per_token
    shared = unigram = None
    if k.aux_positions == "shared_target":  # the student ids that have a surrogate counterpart
        shared = torch.from_numpy(surrogate_teacher.tables(inputs)[0] != vocab.NOT_IN_SURROGATE)
    if k.proposals != "surrogate":
        counts = shards.unigram_counts(inputs["data"])
        unigram = torch.from_numpy(counts / counts.sum())
    return LSAP(candidates, k.alpha, k.normaliser, k.lambda_schedule == "cosine",
                           teacher_flops_per_token=fpt, lambda_scale=k.lambda_scale, proposals=k.proposals,
                           shared_target=shared, unigram=unigram)


KIND = ObjectiveKind(
    NAME, Knobs, teachers=("surrogate",), translation=True,
    summary_keys=("targets_per_pos", "aux_nll", "pos_with_targets", "student_top_in_targets"),
    label=label, teacher_fraction=lambda m: 1.0, build=build,
    key_defaults={"lambda_scale": 1.0, "aux_positions": "all", "proposals": "surrogate"},
    reads_targets_cache=lambda m: m.objective.targets == "cached", table_fields=("alpha",))
