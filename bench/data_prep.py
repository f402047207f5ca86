"""Data-prep throughput: the shards stage (lsap.data.shards.write_split, the code every config runs)
tokenising real text from the embedded corpus with the embedded cl100k tokenizer (the stand-in for
OLMo2's dolma2, a BPE of the same family and size), one CPU core per job.

    python bench/data_prep.py --out bench/data_prep-cpu.json [--repeat 3]

Prints and writes, in one run so the ratios compare like with like: tokens/s per core of the whole
stage (read JSONL, batch-encode, check a sample against HF, write the memmap, count unigrams) per
additional token (the train split's time less the validation split's: each call's fixed cost of
loading the tokenizer cancels, as it vanishes in a part of billions of tokens; the whole call's
rate is printed beside it) with the encoder it uses
(lsap.data.fast_encode: tiktoken's core where the tokenizer qualifies, checked against HF) and with HF's
Rust backend forced, and of each tokenizer path alone, HF's `__call__` (the stage's encoder until
2026-12) included; the wall-clock of both corpus parts as 1 job (one after the other) and as 2 jobs
side by side; and what the stage's rate means for the paper's training tokens on N jobs
(`--paper-tokens`, from `python -m lsap plan --config config/paper.yaml`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# one core per job: the Rust tokenizer would otherwise use every core for a batch
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

from lsap import REPO_ROOT, config  # noqa: E402
from lsap.data import corpus, fast_encode, vocab

JOB = """
import json, sys, time
from lsap.data import fast_encode, shards
if sys.argv[3] == "hf":   # the stage with HF's encoder forced
    fast_encode.encoder = fast_encode.hf_encoder
def write(split, part):
    t = time.perf_counter()
    n = shards.write_split(sys.argv[1], part, split, part + "/" + sys.argv[2], 1024, log=lambda *_: None)["n_tokens"]
    return n, time.perf_counter() - t
write("validation", sys.argv[4])   # the imports, once per process: not a cost per part
out = {"tokens": 0, "seconds": 0.0, "val_tokens": 0, "val_seconds": 0.0}
for part in sys.argv[4:]:
    for split, tag in (("validation", "val_"), ("train", "")):
        n, s = write(split, part)
        out[tag + "tokens"] += n
        out[tag + "seconds"] += s
print(json.dumps(out))
"""


def marginal(job: dict) -> float:
    """tokens/s of one more token: the train split's time less the validation split's, over the
    tokens between them (each call's fixed cost, loading the tokenizer and building the encoder,
    cancels; it is a constant per part, where a paper part holds billions of tokens)."""
    return (job["tokens"] - job["val_tokens"]) / (job["seconds"] - job["val_seconds"])


def _job(tok_dir: Path, tag: str, parts: list[Path], encoder: str = "fast") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", JOB, str(tok_dir), tag, encoder, *map(str, parts)], env=env,
                            stdout=subprocess.PIPE, text=True)


def _wait(*procs) -> list[dict]:
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a tokenising job failed (exit {p.returncode})")
        out.append(json.loads(stdout))
    return out


def _timed(fn) -> dict:
    t = time.perf_counter()
    out = fn()
    return {**out, "wall": time.perf_counter() - t}


def tokenizer_alone(encode, texts: list[str], batch: int = 1024) -> tuple[int, float]:
    t, n = time.perf_counter(), 0
    for i in range(0, len(texts), batch):
        n += sum(map(len, encode(texts[i:i + batch])))
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions of each measurement (best is kept)")
    ap.add_argument("--paper-tokens", type=float, default=51.9e9, help="tokens the paper's data prep tokenises")
    args = ap.parse_args()
    cfg = config.load(REPO_ROOT / "config" / "tiny.yaml")
    cfg = config.validate({**cfg, "corpus": {**cfg["corpus"], "parts": 2}})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = [tmp / corpus.part_name(p) for p in range(2)]
        for p, d in enumerate(parts):
            corpus.build(cfg, d, part=p, log=lambda *_: None)
        tok_dir = vocab.save(vocab.load_pretrained("cl100k"), tmp / "cl100k")
        texts = [t for d in parts for _, t in corpus.iter_documents(d, "train")]
        n_bytes = sum(len(t.encode()) for t in texts)
        tok = vocab.load(tok_dir)
        fast = fast_encode.encoder(tok)
        paths = {"hf_call": lambda b: tok(b, add_special_tokens=False)["input_ids"],
                 "hf_backend": fast_encode.hf_encoder(tok).encode, fast.kind: fast.encode}
        alone = {name: min((tokenizer_alone(f, texts) for _ in range(args.repeat)), key=lambda r: r[1])
                 for name, f in paths.items()}
        hf_stage = min((_wait(_job(tok_dir, f"hf{r}", parts, "hf"))[0] for r in range(args.repeat)),
                       key=lambda r: r["seconds"])
        one = min((_timed(lambda r=r: _wait(_job(tok_dir, f"one{r}", parts))[0]) for r in range(args.repeat)),
                  key=lambda r: r["wall"])
        two = []
        for r in range(args.repeat):
            t = time.perf_counter()
            jobs = _wait(*(_job(tok_dir, f"two{r}", [d]) for d in parts))
            two.append({"wall": time.perf_counter() - t, "tokens": sum(j["tokens"] for j in jobs)})
        two = min(two, key=lambda r: r["wall"])
    rate = marginal(one)   # the rate that scales to a part of billions of tokens
    result = {
        "what": "lsap.data.shards.write_split (train split, seq 1024) of the embedded tiny corpus in 2 parts, "
                f"cl100k tokenizer ({fast.kind} encoder; HF's Rust backend forced for the _hf figure), one core per job",
        "documents": len(texts), "bytes": n_bytes, "tokens": one["tokens"],
        "encoder": fast.kind,
        "tokens_per_s_per_core_stage": round(rate),
        "tokens_per_s_per_core_stage_hf": round(marginal(hf_stage)),
        "stage_speedup_over_hf": round(rate / marginal(hf_stage), 2),
        "tokens_per_s_per_core_stage_whole_call": round(one["tokens"] / one["seconds"]),
        "tokens_per_s_per_core_tokenizer_alone": {name: round(n / t) for name, (n, t) in alone.items()},
        "bytes_per_token": round(n_bytes / one["tokens"], 3),
        "wall_1_job_s": round(one["wall"], 2), "wall_2_jobs_s": round(two["wall"], 2),   # processes included
        "speedup_2_jobs": round(one["wall"] / two["wall"], 2),
        "paper_tokens": args.paper_tokens,
        "paper_hours_on": {f"{n}_jobs_x_{c}_cores": round(args.paper_tokens / (rate * n * c) / 3600, 2)
                           for n, c in ((16, 1), (16, 8), (64, 8))},
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                 "cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
