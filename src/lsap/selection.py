"""Offline data selection with frozen LMs: MiniPLM's difference sampling and SALT_DS.

Both methods score every sequence of a shard once, then keep the highest-scoring ones:

    MiniPLM  r(x) = mean_t NLL_ref(x_t) − mean_t NLL_teacher(x_t)          keep the top α·n (α = 0.5)
    SALT_DS  S(x) = median_t of NLL_teacher(x_t) over x_t ∈ top_k(teacher)  keep the top m (k = 10)

MiniPLM (NOTES §1.3): r = log p_teacher(x) − log p_ref(x); with every sequence seq_len tokens long
the mean-loss difference ranks exactly like the summed log-ratio. SALT (§4, after eq. 10): "a
higher score indicating a higher likelihood to be selected ... we select the top-m scoring
sequences": high median loss = challenging, restricted to top-k tokens = still learnable.

SALT's eq. 10 multiplies non-top-k losses by 0 and leaves those zeros in the median (`keep`);
the text says those losses are "removed" before aggregating and §6 that unlearnable tokens are
"excluded from the aggregation" (`drop`, the default, as in config/schema.yaml). Under `keep` a
sequence with more than half its tokens outside the top k scores 0, which with a small teacher
ties much of the corpus; under `drop` a sequence with no top-k token at all scores −inf (last).

Scoring is incremental: scores are appended to a raw float32 file, each batch fsynced before a
small progress file says it is done, so a killed job resumes at the last batch it finished and
gives bit-identical scores (same batches, same kernels). The complete array is renamed into
place atomically at the end, with a JSON beside it (FLOPs: 2·N per token per model scored).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lsap import models
from lsap.files import atomic_path, read_json, sha256_file, write_json
from lsap.fused_nll import CHUNK_ELEMENTS
from lsap.shards import Shard

ZEROS = ("keep", "drop")
ScoreFn = Callable[[object, torch.Tensor], torch.Tensor]  # (model(s), x (B, T+1)) -> (B,) scores


def _autocast(dev: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()


@torch.inference_mode()
def token_stats(model, x: torch.Tensor, top_k: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x (B, T+1) token ids -> (nll (B, T) float32 of x[:, 1:] given its prefix, and when top_k > 0
    whether each target is among the model's top_k logits (B, T) bool; else None).

    The head is applied to the final hidden states chunk by chunk, so float32 logits exist for
    one chunk only: NLL = logsumexp(z) − z_target, no softmax. Top-k membership compares the
    target's logit with the k-th largest *value* (z_target ≥ it ⇔ fewer than k logits exceed
    z_target), so it does not depend on how topk breaks ties between indices (bf16 logits tie
    often): a target tied with the k-th counts as inside. 3× cheaper on CPU than counting ranks."""
    b, t = x.shape[0], x.shape[1] - 1
    targets = x[:, 1:].reshape(-1)
    with _autocast(x.device):
        h = model.model(input_ids=x[:, :-1]).last_hidden_state
    h = h.reshape(b * t, -1)
    W = model.get_output_embeddings().weight.to(h.dtype)
    cap = getattr(model.config, "final_logit_softcapping", None)  # Gemma-style heads
    nll = torch.empty(b * t, dtype=torch.float32, device=x.device)
    in_top = torch.empty(b * t, dtype=torch.bool, device=x.device) if top_k else None
    chunk = max(1, CHUNK_ELEMENTS // W.shape[0])
    for a in range(0, b * t, chunk):
        r = slice(a, min(a + chunk, b * t))
        z = (h[r] @ W.T).float()
        if cap:
            z = torch.tanh(z / cap) * cap
        z_t = z.gather(1, targets[r, None])
        nll[r] = torch.logsumexp(z, -1) - z_t.squeeze(1)
        if top_k:
            in_top[r] = z_t.squeeze(1) >= z.topk(top_k, dim=1, sorted=False).values.amin(1)
    return nll.view(b, t), (in_top.view(b, t) if top_k else None)


def miniplm_score(model_pair, x: torch.Tensor) -> torch.Tensor:
    """(reference, teacher), x (B, T+1) -> mean NLL_ref − mean NLL_teacher per sequence (B,).
    Both models read the same batch, so one pass over the shard scores both."""
    ref, teacher = model_pair
    return token_stats(ref, x)[0].mean(1) - token_stats(teacher, x)[0].mean(1)


miniplm_score.spec = {"score": "miniplm"}


def salt_ds_aggregate(nll: torch.Tensor, in_top: torch.Tensor, zeros: str = "drop") -> torch.Tensor:
    """SALT eq. 10 from token losses (B, T) and top-k membership (B, T) -> (B,) float32.
    The median of an even count is the mean of the two middle values (numpy's convention)."""
    if zeros not in ZEROS:
        raise ValueError(f"zeros must be one of {ZEROS}, not '{zeros}'")
    if zeros == "keep":
        return torch.quantile(torch.where(in_top, nll, 0.0), 0.5, dim=1)
    med = torch.nanquantile(torch.where(in_top, nll, math.nan), 0.5, dim=1)
    return torch.where(torch.isnan(med), -math.inf, med)  # no learnable token: ranked last


def salt_ds_score(top_k: int = 10, zeros: str = "drop") -> ScoreFn:
    """The score function of SALT_DS for one (early-checkpoint) teacher model."""
    if zeros not in ZEROS:
        raise ValueError(f"zeros must be one of {ZEROS}, not '{zeros}'")

    def score(model, x: torch.Tensor) -> torch.Tensor:
        return salt_ds_aggregate(*token_stats(model, x, top_k), zeros)

    score.spec = {"score": "salt_ds", "top_k": top_k, "zeros": zeros}
    return score


def _models(model) -> list:
    return list(model) if isinstance(model, (list, tuple)) else [model]


def scoring_flops(model, n_tokens: int) -> float:
    """Forward FLOPs of scoring n_tokens with every model: Σ_m 2·N_m per token (MiniPLM: 2·N_ref +
    2·N_teacher; SALT_DS: 2·N_teacher), embeddings counted as everywhere in this repo."""
    return float(n_tokens) * sum(models.forward_flops_per_token(m) for m in _models(model))


def _paths(out_path: Path) -> tuple[Path, Path, Path]:
    return (out_path.with_name(out_path.name + ".partial"), out_path.with_name(out_path.name + ".progress.json"),
            out_path.with_suffix(".json"))


def score_sequences(model, shard: Shard, out_path, score_fn: ScoreFn, batch_size: int,
                    meta: dict | None = None, max_batches: int | None = None, which: np.ndarray | None = None,
                    log=print) -> np.ndarray | None:
    """Score every sequence of `shard` in corpus order with `score_fn(model, x)` (`model`: one LM
    or a tuple, passed through) and write the float32 scores to `out_path` (.npy), plus
    `out_path` with suffix .json (count, tokens, FLOPs, seconds, key). Resumes a killed run from
    `<out>.partial` + `<out>.progress.json` when their key (shard hash, score spec, `meta`: put
    the models' identity there) matches, else starts over. Returns the scores, or None when
    `max_batches` stopped it first (a test hook for interruption). `which` (sorted dataset
    positions): score only this pool, in its order; it is saved as `sequences.npy` beside."""
    out_path = Path(out_path)
    partial, progress, info_path = _paths(out_path)
    seqs = shard.sequences
    which = np.arange(len(shard)) if which is None else np.asarray(which, dtype=np.int64)
    n = len(which)
    mods = _models(model)
    key = {"n_sequences": n, "seq_len": shard.seq_len, "shard_sha256": shard.manifest.get("sha256"),
           "pool_sha256": hashlib.sha256(which.tobytes()).hexdigest(),
           "score": getattr(score_fn, "spec", {"fn": getattr(score_fn, "__qualname__", repr(score_fn))}),
           "params": [models.n_params(m) for m in mods], **(meta or {})}
    key = json.loads(json.dumps(key))  # compared with its JSON copy: tuples become lists
    if out_path.exists() and info_path.exists() and read_json(info_path).get("key") == key:
        log(f"[select] {out_path} is complete")
        return np.load(out_path)
    done, seconds = 0, 0.0
    if progress.exists() and partial.exists():
        state = read_json(progress)
        if state["key"] == key and partial.stat().st_size >= 4 * state["done"]:
            done, seconds = state["done"], state["seconds"]
            log(f"[select] resuming {out_path} at {done}/{n} sequences")
        else:
            log(f"[select] discarding the partial scores of {out_path}: another shard, score or model")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "r+b" if done else "wb") as f:
        f.truncate(4 * done)  # a batch written after the last progress record is redone
        f.seek(4 * done)
        for m in mods:
            m.eval()
        dev = next(mods[0].parameters()).device
        start, batches, t0, t_log = done, 0, time.perf_counter(), time.perf_counter()
        for a in range(done, n, batch_size):
            if max_batches is not None and batches >= max_batches:
                return None
            x = torch.from_numpy(seqs[which[a:a + batch_size]].astype(np.int64)).to(dev)
            with torch.inference_mode():
                s = score_fn(model, x)
            f.write(s.float().cpu().numpy().astype("<f4").tobytes())
            f.flush()
            os.fsync(f.fileno())  # on disk before progress says so: a kill never loses a counted batch
            done, batches = a + len(x), batches + 1
            now = time.perf_counter()
            write_json(progress, {"done": done, "seconds": seconds + now - t0, "key": key})
            if now - t_log > 30 or done == n:
                t_log = now
                log(f"[select] {done}/{n} sequences, {(done - start) * shard.seq_len / (now - t0):,.0f} tokens/s")
        seconds += time.perf_counter() - t0
    scores = np.fromfile(partial, dtype="<f4")
    if len(scores) != n:
        raise RuntimeError(f"{partial} holds {len(scores)} scores, expected {n}: delete it and rerun")
    tokens = n * shard.seq_len
    write_json(info_path, {"sequences": n, "tokens_scored": tokens, "flops": scoring_flops(model, tokens),
                           "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9), "key": key})
    sha = {}
    for path, arr in ((out_path.with_name("sequences.npy"), which), (out_path, scores)):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
            sha[path.name] = sha256_file(tmp)
    info = read_json(info_path)
    write_json(info_path, {**info, "sha256": sha})
    partial.unlink()
    progress.unlink()
    return scores


def select_top(scores: np.ndarray, keep: int | float) -> np.ndarray:
    """Indices of the highest scores, sorted (corpus order). `keep`: an int is a count (capped at
    len(scores)), a float in (0, 1] a fraction, floored as MiniPLM's int(ratio·n), at least 1.
    Equal scores go to the lower index, so the selection is a pure function of the scores."""
    scores = np.asarray(scores)
    n = len(scores)
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} scores are NaN: the scoring model diverged?")
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise TypeError(f"keep must be a count (int) or a fraction (float), not {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 0:
            raise ValueError(f"keep must be >= 0, not {keep}")
        m = min(int(keep), n)
    else:
        if not 0 < keep <= 1:
            raise ValueError(f"a fraction to keep must be in (0, 1], not {keep}")
        m = min(n, max(1, int(keep * n)))
    order = np.lexsort((np.arange(n), -scores.astype(np.float64)))  # score descending, then index
    return np.sort(order[:m])


def select_job(cfg: dict, method: str, tokenizer_dir, shards_dir, out, log=print) -> None:
    """The selection stage: score the training sequences (a pool, or the whole shard) for the data
    selection of `method` (MiniPLM's difference, SALT_DS's median top-k loss)."""
    from lsap import methods, plan, shards, vocab
    from lsap.files import sha256_file

    m, teachers = cfg["methods"][method], cfg["students"]["teachers"]
    roles = list(methods.DATA[m["data"]].roles)
    # SALT_DS scores with an early checkpoint of its teacher (SALT §4), on data it never read
    specs = [models.resolve(cfg, teachers[r], methods.scoring_fraction(m)) for r in roles]
    lms = [models.load_pretrained(s) for s in specs]
    # the models' identity, so a partial scoring by other checkpoints is never resumed
    ident = [sha256_file(Path(s["id"]) / "model.safetensors") if Path(s.get("id", "")).is_dir() else s for s in specs]
    if m["data"] == "miniplm":
        model, score_fn = tuple(lms), miniplm_score
    else:
        model, score_fn = lms[0], salt_ds_score(m["ds_top_k"], m["ds_zeros"])
    n_vocab = len(vocab.load(tokenizer_dir))
    data = shards.open_shard(shards_dir, "train", tokenizer=vocab.fingerprint(tokenizer_dir))
    which = None
    pool = pool_size(cfg, method, len(data), plan.student(cfg, method, n_vocab, data.seq_len))
    if pool < len(data):  # score a uniform pool sized by what the run will draw
        which = np.sort(np.random.default_rng([cfg["seed"], 7]).choice(len(data), pool, replace=False))
        log(f"[select] pool of {pool} of {len(data)} sequences (pool_factor {m['pool_factor']})")
    score_sequences(model, data, Path(out) / "scores.npy", score_fn, cfg["training"]["micro_batch"],
                    meta={"models": ident, "roles": roles}, which=which, log=log)


def pool_size(cfg: dict, method: str, n_data: int, p) -> int:
    """Sequences a selection scores: all of them, or pool_factor × what the run draws (MiniPLM:
    every step's batch; SALT_DS: its KD phase's), `p` being the student's RunPlan."""
    m = cfg["methods"][method]
    if m["pool_factor"] is None:
        return n_data
    steps = p.steps if m["data"] == "miniplm" else round(m["kd_steps_frac"] * p.steps)
    return min(n_data, math.ceil(m["pool_factor"] * steps * p.global_batch))


def load_scores(scores_path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(scores, the dataset positions they score, the scoring info), verified against the hashes
    the selection job recorded: damaged or edited scores are refused, naming the file."""
    scores_path = Path(scores_path)
    info = read_json(scores_path.with_suffix(".json"))
    for f in (scores_path.name, "sequences.npy"):
        if sha256_file(scores_path.with_name(f)) != info.get("sha256", {}).get(f):
            raise ValueError(f"{scores_path.with_name(f)} does not match the hash its selection recorded (damaged "
                             f"or edited): delete {scores_path.parent} and rerun the same command")
    return np.load(scores_path), np.load(scores_path.with_name("sequences.npy")), info
