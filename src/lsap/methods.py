"""A student method = an objective + the sequences it trains on, assembled from the config's
`methods.<name>` entry and the files earlier stages wrote. The training loop is the same for all.

    ce       CE on all sequences
    lsap     CE + NLL of the surrogate's candidates above α (online, or from the targets cache)
    kd       (1−r)·CE + r·KL(surrogate over Σ∩ ‖ student), online
    salt     (1−ω)·CE + ω·CE(P^ρ_teacher, student) for the first n_KD steps, then CE
    data: miniplm  CE on the top keep_frac of sequences by difference score, in corpus order
    data: salt_ds  the KD phase on the top-m sequences by SALT_DS score (m = n_KD·batch), then all
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lsap import models, objectives, selection
from lsap.surrogate import CachedCandidates, Surrogate


def _frozen(cfg: dict, spec: dict, dev):
    return models.load_pretrained(models.resolve(cfg, spec), dev)


def _logits_fn(model):
    @torch.inference_mode()
    def logits(inputs):
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=inputs.device.type == "cuda"):
            return model(input_ids=inputs).logits
    return logits


def build(cfg: dict, name: str, model, n_sequences: int, translation=None, targets_dir=None,
          scores=None, dev=None):
    """(objective, indices, extra summary fields) for student method `name`. `indices` is None
    (all sequences), an array, or `(step, total_steps, global_batch) -> array`."""
    m, teachers = cfg["methods"][name], cfg["students"]["teachers"]
    dev = dev or models.device()
    student_vocab = model.get_output_embeddings().weight.shape[0]
    kind = m["objective"]
    if kind == "ce":
        obj = objectives.CrossEntropy()
    elif kind in ("lsap", "kd"):
        if translation is None:
            raise ValueError(f"method '{name}' ({kind}) needs the translation tables (--translation)")
        sur = Surrogate.load(models.resolve(cfg, teachers["surrogate"]), translation, m["top_k"],
                             m["probabilities"], dev)
        if kind == "lsap":
            if m["targets"] == "cached":
                cache = CachedCandidates(targets_dir, m["top_k"], m["probabilities"], n_sequences)
                candidates = lambda inputs, tgt, seq_ids: cache(seq_ids, inputs.device)  # noqa: E731
            else:
                candidates = lambda inputs, tgt, seq_ids: sur.candidates(inputs, tgt)  # noqa: E731
            obj = objectives.LSAP(candidates, m["alpha"], m["normaliser"], m["lambda_schedule"] == "cosine",
                                  teacher_flops_per_token=sur.flops_per_token)
        else:
            teacher = objectives.dense_teacher(
                sur.logits, log_q=objectives.sigma_log_q(sur.s_to_b, m["kd_outside_sigma"]))
            obj = objectives.TeacherKD(teacher, m["kd_ratio"], sur.flops_per_token, name="kd")
    elif kind == "salt":
        t = _frozen(cfg, teachers["salt_teacher"], dev)
        if t.get_output_embeddings().weight.shape[0] != student_vocab:
            raise ValueError(f"SALT's teacher has {t.get_output_embeddings().weight.shape[0]} logits, the "
                             f"student {student_vocab}: the teacher must use the student's tokenizer")
        obj = objectives.TeacherKD(objectives.dense_teacher(_logits_fn(t), rho=m["rho"]), m["omega"],
                                   models.forward_flops_per_token(t), m["kd_steps_frac"], m["transition"], name="salt")
    else:
        raise ValueError(f"unknown objective '{kind}'")
    indices, extra = None, {"method": name}
    if m["data"] != "all":
        if scores is None:
            raise ValueError(f"method '{name}' (data: {m['data']}) needs the selection scores (--scores)")
        score_arr, pool = np.load(scores), np.load(Path(scores).with_name("sequences.npy"))
        extra["selection_flops"] = json.loads(Path(scores).with_suffix(".json").read_text())["flops"]
        if len(score_arr) != len(pool) or (len(pool) and pool.max() >= n_sequences):
            raise ValueError(f"{scores} does not score this shard's sequences: rerun the selection rule")
        extra["selection_pool"] = len(pool)
        if m["data"] == "miniplm":
            indices = pool[selection.select_top(score_arr, m["keep_frac"])]
            extra["selected_sequences"] = len(indices)
        else:
            indices = _kd_phase_selection(obj, score_arr, pool, np.arange(n_sequences))
    return obj, indices, extra


def planned_steps(cfg: dict, vocab_size: int, seq_len: int, teacher_flops_per_token: float) -> tuple[int, int]:
    """(steps, sequences per step) of a student run of this config: what the train loop will
    compute from the budget, known in advance so the targets cache and the selection pool can
    hold exactly what the runs read."""
    from lsap import train

    t, world = cfg["training"], max(1, cfg["compute"]["gpus"])
    batch = t["micro_batch"] * t["grad_accum"] * world
    student = models.build(cfg["students"]["model"], vocab_size, seq_len, seed=0)
    fpt = models.train_flops_per_token(student) + teacher_flops_per_token
    return train.plan_steps(cfg["students"]["budget_flops"], fpt, batch * seq_len), batch


def _kd_phase_selection(obj, scores: np.ndarray, pool: np.ndarray, everything: np.ndarray):
    """SALT_DS: the KD steps draw from the top-m sequences (m = n_KD × global batch: just enough
    for the KD phase, SALT §4), the CE steps from everything."""
    chosen = {}

    def index_at(step: int, total_steps: int, global_batch: int) -> np.ndarray:
        n_kd = obj.kd_steps(total_steps)
        if step >= n_kd:
            return everything
        if "top" not in chosen:
            chosen["top"] = pool[selection.select_top(scores, max(1, n_kd * global_batch))]
        return chosen["top"]
    return index_at

