"""The method registry: what each objective and each data selection is, in one place.

A student method = an objective (the loss, and the teacher it runs) + the sequences it trains on,
assembled from the config's `methods.<name>` entry and the files earlier stages wrote. Config
validation, the Snakemake rules' inputs, the job keys, the CLI and the tables all read this
table; the training loop is the same for every method.

    ce       CE on all sequences
    lsap     CE + NLL of the surrogate's candidates above α (online, or from the targets cache)
    kd       (1−r)·CE + r·KL(surrogate over Σ∩ ‖ student), online
    salt     (1−ω)·CE + ω·CE(P^ρ_teacher, student) for the first n_KD steps, then CE
    data: miniplm  CE on the top keep_frac of sequences by difference score, in corpus order
    data: salt_ds  the KD phase on the top-m sequences by SALT_DS score (m = n_KD·batch), then all

Adding a method: its knobs in config/schema.yaml, an entry here (and its builder), its loss in
lsap/objectives.py, and a `methods:` entry in a config.
This module imports torch only inside the builders: the Snakefile reads the table at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ObjectiveKind:
    knobs: tuple[str, ...]           # the schema's knobs of this objective (its job key reads these)
    teachers: tuple[str, ...]        # students.teachers roles it runs during training
    translation: bool                # needs the Σ∩ tables (a teacher with another tokenizer)
    summary_keys: tuple[str, ...]    # per-step quantities its runs log (averaged into the summary)
    # knobs added after runs were finished, at the value that reproduces those runs: left out of the
    # key there, so a new knob does not retrain what it cannot change
    key_defaults: dict
    label: Callable[[dict], str]     # what a method is, whatever the config calls it
    teacher_fraction: Callable[[dict], float]  # share of the steps on which its teacher runs
    build: Callable                  # (cfg, method entry, model, run inputs, device) -> Objective


@dataclass(frozen=True)
class DataKind:
    roles: tuple[str, ...]           # students.teachers roles that score the data
    score_knobs: tuple[str, ...]     # knobs the scores depend on (the selection's key reads these)


def _lsap_label(m: dict) -> str:
    variant = {"unigram": " random targets", "uniform": " uniform mass"}.get(m.get("proposals", "surrogate"), "")
    return (f"lsap α={m['alpha']:g}" + (" anneal" if m["lambda_schedule"] == "cosine" else "")
            + (f" λ={m['lambda_scale']:g}" if m.get("lambda_scale", 1.0) != 1.0 else "") + variant
            + (" shared-target" if m.get("aux_positions", "all") != "all" else "")
            + (f" {m['normaliser']}" if m.get("normaliser", "total_targets") != "total_targets" else ""))


def _build_ce(cfg, m, model, inputs, dev):
    from lsap import objectives

    return objectives.CrossEntropy()


def _surrogate(cfg, m, inputs, dev):
    from lsap import models
    from lsap.surrogate import Surrogate

    if inputs.get("translation") is None:
        raise ValueError(f"objective '{m['objective']}' needs the translation tables (--translation)")
    return Surrogate.load(models.resolve(cfg, cfg["students"]["teachers"]["surrogate"]), inputs["translation"],
                          m.get("top_k", 1), m.get("probabilities", "surrogate"), dev,
                          compile_=bool(cfg["training"].get("compile")))


def _build_lsap(cfg, m, model, inputs, dev):
    import torch

    from lsap import objectives, plan, shards, vocab
    from lsap.surrogate import CachedCandidates

    if m["targets"] == "cached":
        if inputs.get("targets") is None:
            raise ValueError("lsap with targets: cached needs the targets cache (--targets)")
        cache = CachedCandidates(inputs["targets"], m["top_k"], m["probabilities"], inputs["n_sequences"])
        candidates = lambda x, tgt, seq_ids: cache(seq_ids, x.device)  # noqa: E731
        # the cache stands in for the surrogate's inference, which is still charged
        fpt = plan.source_flops_per_token(cfg, cfg["students"]["teachers"]["surrogate"])
    else:
        sur = _surrogate(cfg, m, inputs, dev)
        candidates = lambda x, tgt, seq_ids: sur.candidates(x, tgt)  # noqa: E731
        fpt = sur.flops_per_token
    shared = unigram = None
    if m["aux_positions"] == "shared_target":  # the student ids that have a surrogate counterpart
        shared = torch.from_numpy(vocab.load_translation(inputs["translation"])[0] != vocab.NOT_IN_SURROGATE)
    if m["proposals"] != "surrogate":
        counts = shards.unigram_counts(inputs["data"])
        unigram = torch.from_numpy(counts / counts.sum())
    return objectives.LSAP(candidates, m["alpha"], m["normaliser"], m["lambda_schedule"] == "cosine",
                           teacher_flops_per_token=fpt, lambda_scale=m["lambda_scale"], proposals=m["proposals"],
                           shared_target=shared, unigram=unigram)


def _build_kd(cfg, m, model, inputs, dev):
    from lsap import objectives

    sur = _surrogate(cfg, m, inputs, dev)
    teacher = objectives.dense_teacher(sur.logits, log_q=objectives.sigma_log_q(sur.s_to_b, m["kd_outside_sigma"]))
    return objectives.TeacherKD(teacher, m["kd_ratio"], sur.flops_per_token, name="kd")


def _build_salt(cfg, m, model, inputs, dev):
    import torch

    from lsap import models, objectives

    t = models.load_pretrained(models.resolve(cfg, cfg["students"]["teachers"]["salt_teacher"]), dev)
    student_vocab = model.get_output_embeddings().weight.shape[0]
    if t.get_output_embeddings().weight.shape[0] != student_vocab:
        raise ValueError(f"SALT's teacher has {t.get_output_embeddings().weight.shape[0]} logits, the "
                         f"student {student_vocab}: the teacher must use the student's tokenizer")

    @torch.inference_mode()
    def logits(x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            return t(input_ids=x).logits
    return objectives.TeacherKD(objectives.dense_teacher(logits, rho=m["rho"]), m["omega"],
                                models.forward_flops_per_token(t), m["kd_steps_frac"], m["transition"], name="salt")


OBJECTIVES: dict[str, ObjectiveKind] = {
    "ce": ObjectiveKind((), (), False, (), {}, lambda m: "ce", lambda m: 0.0, _build_ce),
    "lsap": ObjectiveKind(("alpha", "top_k", "probabilities", "normaliser", "lambda_schedule", "targets",
                           "lambda_scale", "aux_positions", "proposals"),
                          ("surrogate",), True,
                          ("targets_per_pos", "aux_nll", "pos_with_targets", "student_top_in_targets"),
                          {"lambda_scale": 1.0, "aux_positions": "all", "proposals": "surrogate"},
                          _lsap_label, lambda m: 1.0, _build_lsap),
    "kd": ObjectiveKind(("kd_ratio", "kd_outside_sigma"), ("surrogate",), True, ("kl",), {}, lambda m: "kd",
                        lambda m: 1.0, _build_kd),
    "salt": ObjectiveKind(("omega", "rho", "kd_steps_frac", "transition"), ("salt_teacher",), False, ("kl",), {},
                          lambda m: "salt", lambda m: m["kd_steps_frac"], _build_salt),
}

DATA: dict[str, DataKind] = {
    "all": DataKind((), ()),
    "miniplm": DataKind(("miniplm_reference", "miniplm_teacher"), ()),
    "salt_ds": DataKind(("salt_teacher",), ("ds_top_k", "ds_zeros", "ds_checkpoint_frac")),
}


def scoring_fraction(m: dict) -> float:
    """Which checkpoint of its scoring model a data selection reads (SALT_DS: an early one)."""
    return m.get("ds_checkpoint_frac", 1.0) if m["data"] == "salt_ds" else 1.0


def checkpoint_fractions(cfg: dict, name: str) -> list[float]:
    """The checkpoints the references stage saves for model `name`: training.checkpoint_fractions
    and every earlier one a selection of this run scores with (SALT_DS's early checkpoint)."""
    fr = set(cfg["training"]["checkpoint_fractions"])
    for method in cfg["students"]["methods"]:
        m = cfg["methods"][method]
        for role in DATA[m["data"]].roles:
            src = cfg["students"]["teachers"][role]
            if src["kind"] == "trained" and src["name"] == name:
                fr.add(scoring_fraction(m))
    return sorted(fr)


def teacher_roles(m: dict) -> list[str]:
    """The students.teachers entries a method reads: its objective's teacher, its data selection's models."""
    return list(dict.fromkeys(OBJECTIVES[m["objective"]].teachers + DATA[m["data"]].roles))


def label(m: dict) -> str:
    """'lsap α=0.05 anneal', 'miniplm', 'salt_ds', ...: the method's kind, for tables."""
    return m["data"] if m["data"] != "all" else OBJECTIVES[m["objective"]].label(m)


def uses_targets_cache(m: dict) -> bool:
    return m["objective"] == "lsap" and m["targets"] == "cached"


def build(cfg: dict, name: str, model, n_sequences: int, translation=None, targets_dir=None,
          scores=None, dev=None, data=None):
    """(objective, indices, extra summary fields) for student method `name`. `indices` is None
    (all sequences), an array, or `(step, total_steps, global_batch) -> array`. `data`: the
    training Shard (its unigram, for the random-target and uniform-mass controls)."""
    from lsap import models, selection
    from lsap import scores as score_files

    m = cfg["methods"][name]
    inputs = {"translation": translation, "targets": targets_dir, "n_sequences": n_sequences, "data": data}
    obj = OBJECTIVES[m["objective"]].build(cfg, m, model, inputs, dev or models.device())
    indices, extra = None, {"method": name}
    if m["data"] != "all":
        if scores is None:
            raise ValueError(f"method '{name}' (data: {m['data']}) needs the selection scores (--scores)")
        score_arr, pool, info = score_files.load_scores(scores)
        extra["selection_flops"] = info["flops"]
        if len(score_arr) != len(pool) or (len(pool) and pool.max() >= n_sequences):
            raise ValueError(f"{scores} does not score this shard's sequences: rerun the selection rule")
        extra["selection_pool"] = len(pool)
        if m["data"] == "miniplm":
            indices = pool[selection.select_top(score_arr, m["keep_frac"])]
            extra["selected_sequences"] = len(indices)
        else:
            indices = _kd_phase_selection(obj, score_arr, pool, np.arange(n_sequences))
    return obj, indices, extra


def _kd_phase_selection(obj, scores: np.ndarray, pool: np.ndarray, everything: np.ndarray):
    """SALT_DS: the KD steps draw from the top-m sequences (m = n_KD × global batch: just enough
    for the KD phase, SALT §4), the CE steps from everything."""
    from lsap import selection

    chosen = {}

    def index_at(step: int, total_steps: int, global_batch: int) -> np.ndarray:
        n_kd = obj.kd_steps(total_steps)
        if step >= n_kd:
            return everything
        if "top" not in chosen:
            chosen["top"] = pool[selection.select_top(scores, max(1, n_kd * global_batch))]
        return chosen["top"]
    return index_at
