"""`python -m lsap <stage> ...`: the one entry point every Snakemake rule calls."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lsap import config as config_mod


def _assets(args, cfg):
    from lsap import assets

    names = [args.name] if args.name else (sorted(assets.load_manifest()) if args.all
                                           else config_mod.required_assets(cfg))
    for name in names:
        assets.fetch(name)


def _corpus(args, cfg):
    from lsap import corpus

    corpus.build(cfg, args.out)


def _tokenizer(args, cfg):
    from lsap import corpus, vocab

    spec = cfg["tokenizers"][args.role]
    texts = None
    if spec["kind"] == "bpe":
        texts = (t for _, t in corpus.iter_documents(args.corpus, "train", spec["train_domains"]))
    tok = vocab.build(spec, texts)
    vocab.save(tok, args.out)
    print(f"[tokenizer] {args.role}: {spec} -> {args.out} ({len(tok)} tokens)")


def _shards(args, cfg):
    from lsap import shards

    for split in args.splits:
        shards.write_split(args.tokenizer, args.corpus, split, args.out, cfg["shards"]["seq_len"])


def _translation(args, cfg):
    from lsap import vocab

    meta = vocab.save_translation(args.out, vocab.load(args.student), vocab.load(args.surrogate))
    print(f"[translation] {meta}")


def _overlap(args, cfg):
    from lsap import analysis, provenance, report, vocab
    from lsap.config import analysis_assets

    ov = cfg["analysis"]["overlap"]
    toks = {n: vocab.load_pretrained(n) for n in dict.fromkeys(ov["bases"] + ov["surrogates"])}
    pairs = [(b, toks[b], s, toks[s]) for b in ov["bases"] for s in ov["surrogates"] if b != s]
    pairs.append((f"{cfg['run']} student", vocab.load(args.student), f"{cfg['run']} surrogate",
                  vocab.load(args.surrogate)))
    df = analysis.overlap_frame(cfg, args.corpus, pairs)
    print(df.to_string())
    report.write_table(df, args.out, f"Tokenizer overlap: shared vocabulary Σ∩ (byte strings) and the "
                       f"share of the base's {ov['split']} tokens inside it, per domain",
                       provenance.collect(cfg, analysis_assets(cfg)), digits=3)


def _table1(args, cfg):
    import matplotlib.pyplot as plt

    from lsap import analysis, provenance, report
    from lsap.config import analysis_assets

    result = analysis.table1(cfg, args.corpus)
    analysis.save_table1(result, args.out_json)
    prov = provenance.collect(cfg, analysis_assets(cfg))
    t1 = cfg["analysis"]["table1"]
    report.write_table(analysis.table1_frame(result, cfg), args.out_table,
                       f"Table 1 analogue: mean number of vocabulary entries with next-token probability "
                       f"> α per position ({t1['examples']} examples × {t1['seq_len']} tokens per domain "
                       f"and seed; mean ± std over seeds {t1['seeds']}), paper rows beside",
                       prov, notes="Our domains stand in for the paper's columns named in brackets "
                       "(– : no counterpart). Paper AVGs are as printed (Llama-3.1-8B α=0.05: the "
                       "printed 3.14 disagrees with its cells' mean 2.75).")
    fig = analysis.figure_table1(result)
    report.save_figure(fig, args.out_figure, prov)
    plt.close(fig)


def _train(args, cfg):
    from lsap import methods, models, objectives, shards, train, vocab

    tok = vocab.load(args.tokenizer)
    fp = vocab.fingerprint(args.tokenizer)
    data = shards.open_shard(Path(args.shards) / f"{args.split}.bin", tokenizer=fp)
    val = shards.open_shard(Path(args.shards) / "validation.bin", tokenizer=fp)
    if args.role == "student":
        if args.method not in cfg["methods"]:
            raise SystemExit(f"error: no method '{args.method}' in the config's methods section "
                             f"(defined: {', '.join(sorted(cfg['methods']))})")
        spec, budget = cfg["students"]["model"], cfg["students"]["budget_flops"]
        model = models.build(spec, len(tok), data.seq_len, seed=args.seed)
        objective, indices, extra = methods.build(cfg, args.method, model, len(data), args.translation,
                                                  args.targets, args.scores)
        run_key = config_mod.section_hash(cfg, "students", "training") + config_mod.section_hash(cfg["methods"], args.method)
    else:
        ref = cfg["references"][args.role]
        model = models.build(ref["model"], len(tok), data.seq_len, seed=args.seed)
        budget, objective, indices, extra = ref["budget_flops"], objectives.CrossEntropy(), None, {}
        run_key = config_mod.section_hash(cfg["references"], args.role) + config_mod.section_hash(cfg, "training")
    summary = train.train(model, data, objective, args.out, cfg["training"], budget, args.seed,
                          indices=indices, val=val, tokenizer=tok, extra=extra, run_key=run_key)
    print(f"[train] {args.role} {args.method} seed {args.seed}: {summary}")


def _targets(args, cfg):
    import numpy as np

    from lsap import methods, models, shards, train, vocab
    from lsap.surrogate import Surrogate, write_cache

    spec = models.resolve(cfg, cfg["students"]["teachers"]["surrogate"])
    sur = Surrogate.load(spec, args.translation, args.top_k, args.probabilities)
    tok = vocab.load(args.tokenizer)
    data = shards.open_shard(Path(args.shards) / "train.bin", tokenizer=vocab.fingerprint(args.tokenizer))
    # cache exactly the sequences the LSAP runs will read: their steps follow from the budget
    steps, _ = methods.planned_steps(cfg, len(tok), data.seq_len, sur.flops_per_token)
    t, world = cfg["training"], max(1, cfg["compute"]["gpus"])
    which = np.unique(np.concatenate([train.visited_sequences(steps, t["micro_batch"], t["grad_accum"], world,
                                                              len(data), seed) for seed in cfg["students"]["seeds"]]))
    print(f"[targets] {len(which)} of {len(data)} sequences ({steps} steps × seeds {cfg['students']['seeds']})")
    meta = {"surrogate": spec, "shard_sha256": data.manifest.get("sha256"),
            "flops": sur.flops_per_token * len(which) * data.seq_len}
    write_cache(sur, data.sequences, args.out, t["micro_batch"], meta, which=which)


def _select(args, cfg):
    import math

    import numpy as np

    from lsap import methods, models, selection, shards, vocab
    from lsap.files import sha256_file

    m, teachers = cfg["methods"][args.method], cfg["students"]["teachers"]
    roles = config_mod.SELECTION_ROLES[m["data"]]
    specs = [models.resolve(cfg, teachers[r]) for r in roles]
    lms = [models.load_pretrained(s) for s in specs]
    # the models' identity, so a partial scoring by other checkpoints is never resumed
    ident = [sha256_file(Path(s["id"]) / "model.safetensors") if Path(s.get("id", "")).is_dir() else s for s in specs]
    if m["data"] == "miniplm":
        model, score_fn = tuple(lms), selection.miniplm_score
    else:
        model, score_fn = lms[0], selection.salt_ds_score(m["ds_top_k"], m["ds_zeros"])
    tok = vocab.load(args.tokenizer)
    data = shards.open_shard(Path(args.shards) / "train.bin", tokenizer=vocab.fingerprint(args.tokenizer))
    which = None
    if m["pool_factor"] is not None:  # score a uniform pool sized by what the run will draw
        teacher_fpt = models.forward_flops_per_token(lms[0]) * m["kd_steps_frac"] if m["objective"] == "salt" else 0
        steps, batch = methods.planned_steps(cfg, len(tok), data.seq_len, teacher_fpt)
        drawn = steps * batch if m["data"] == "miniplm" else round(m["kd_steps_frac"] * steps) * batch
        pool = min(len(data), math.ceil(m["pool_factor"] * drawn))
        which = np.sort(np.random.default_rng([cfg["seed"], 7]).choice(len(data), pool, replace=False))
        print(f"[select] pool of {pool} of {len(data)} sequences ({m['pool_factor']} × the {drawn} the run draws)")
    selection.score_sequences(model, data, Path(args.out) / "scores.npy", score_fn, cfg["training"]["micro_batch"],
                              meta={"models": ident, "roles": roles}, which=which)


def _evaluate(args, cfg):
    import json

    from lsap import evaluate
    from lsap.files import write_json

    run = Path(args.run)
    ckpts = sorted((run / "checkpoints").glob("frac-*"))
    if not ckpts:
        raise SystemExit(f"error: {run}/checkpoints holds no frac-* checkpoint: run the train stage first")
    out = Path(args.out)
    parts = [out.with_suffix("") / f"{c.name}.json" for c in ckpts]
    results = evaluate.evaluate_checkpoints(ckpts, args.corpus, cfg["evaluation"], parts)
    summary = json.loads((run / "summary.json").read_text())
    entries = []
    for c, r in zip(ckpts, results):
        frac = float(c.name.split("-")[1])
        entries.append({"fraction": frac, "step": max(1, round(frac * summary["steps"])), **r})
    write_json(out, {"run": str(run), "checkpoints": entries})


def _report(args, cfg):
    import matplotlib.pyplot as plt

    from lsap import provenance, report, results
    from lsap.files import write_text

    df = results.collect(cfg, args.results)
    write_text(Path(args.results) / "students.csv", df.to_csv(index=False))
    prov = provenance.collect(cfg, config_mod.required_assets(cfg))
    tables, figures = Path(args.tables), Path(args.figures)
    tasks = cfg["evaluation"]["tasks"]
    domains = sorted(c[4:] for c in df.columns if c.startswith("bpb_") and c != "bpb_mean")
    ev = cfg["evaluation"]
    n = f"first {ev['limit']} items per task" if ev["limit"] else "full sets"
    budget = f"{cfg['students']['budget_flops']:.3g} FLOPs per run, teacher inference included"
    report.write_table(results.table2(df, tasks), tables / "table2",
                       f"Table 2 analogue: zero-shot scores (%) at the matched budget ({budget}); lm-eval tasks, "
                       f"{n}, {ev['metric']}; mean over seeds", prov,
                       notes="TrQA (truthfulqa_mc2) has no offline data: n/a. Avg over the 7 other tasks.")
    report.write_table(results.head_to_head(df, domains), tables / "head_to_head",
                       f"Head to head at the matched budget ({budget}): average score ± std over seeds (one "
                       f"seed: ± lm-eval stderr), held-out bits per byte per domain, tokens, FLOPs, training wall-clock",
                       prov, digits=3)
    report.write_table(results.paper_vs_replication(df), tables / "paper_vs_replication",
                       "Each paper's reported gain over its baseline beside ours over CE at the same budget "
                       "(points of average score; bits-per-byte change, negative = better), paired by seed", prov)
    for name, fn in (("figure2_score_vs_flops", results.figure_score_vs_flops),
                     ("bpb_vs_flops", results.figure_bpb_vs_flops),
                     ("targets_vs_alpha", results.figure_targets_vs_alpha)):
        fig = fn(df)
        report.save_figure(fig, figures / name, prov)
        plt.close(fig)


def _bench(args, cfg):
    from lsap import bench

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bench.run(args.shapes, device, args.compile, args.iters, args.out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lsap", description=__doc__)
    sub = p.add_subparsers(dest="stage", required=True)

    def stage(name, fn, help):
        s = sub.add_parser(name, help=help)
        s.add_argument("--config", default="config/tiny.yaml", help="run config (YAML)")
        s.set_defaults(fn=fn)
        return s

    s = stage("assets", _assets, "fetch and verify the registry assets a config needs")
    s.add_argument("--name", help="fetch only this asset")
    s.add_argument("--all", action="store_true", help="fetch every asset of config/assets.yaml")

    s = stage("corpus", _corpus, "build the cleaned, split, per-domain corpus")
    s.add_argument("--out", required=True)

    s = stage("tokenizer", _tokenizer, "train or load one role's tokenizer, save it in HF format")
    s.add_argument("--role", required=True, choices=["student", "surrogate"])
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True)

    s = stage("shards", _shards, "tokenize the corpus splits into packed token shards")
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--splits", nargs="+", default=["train", "validation", "reference"])
    s = stage("translation", _translation, "Σ∩ translation tables of the student/surrogate pair")
    s.add_argument("--student", required=True)
    s.add_argument("--surrogate", required=True)
    s.add_argument("--out", required=True, help=".npz")

    s = stage("overlap", _overlap, "tokenizer-overlap table for real tokenizer pairs + the run's pair")
    s.add_argument("--corpus", required=True)
    s.add_argument("--student", required=True)
    s.add_argument("--surrogate", required=True)
    s.add_argument("--out", required=True, help="table stem (writes .md .tex .csv)")

    s = stage("table1", _table1, "LSAP Table 1: tokens above α per position, with real LMs")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out-json", required=True)
    s.add_argument("--out-table", required=True)
    s.add_argument("--out-figure", required=True)
    s = stage("train", _train, "train a student (one method, one seed) or a reference model")
    s.add_argument("--role", required=True, choices=["student", "surrogate", "reference", "salt_teacher", "miniplm_teacher"])
    s.add_argument("--method", default="ce")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--shards", required=True, help="folder with <split>.bin and validation.bin")
    s.add_argument("--split", default="train")
    s.add_argument("--translation", help="student: Σ∩ tables (lsap, kd)")
    s.add_argument("--targets", help="student: the targets cache folder (lsap with targets: cached)")
    s.add_argument("--scores", help="student: selection scores (data: miniplm, salt_ds)")
    s.add_argument("--out", required=True)

    s = stage("targets", _targets, "LSAP's surrogate candidates (top-k ids + log-probs) for every training sequence")
    s.add_argument("--tokenizer", required=True, help="the student tokenizer folder")
    s.add_argument("--shards", required=True, help="the student shards folder")
    s.add_argument("--translation", required=True)
    s.add_argument("--top-k", type=int, required=True)
    s.add_argument("--probabilities", required=True, choices=["surrogate", "renormalised"])
    s.add_argument("--out", required=True)

    s = stage("select", _select, "score every training sequence for a data-selecting method (miniplm, salt_ds)")
    s.add_argument("--method", required=True, help="a method with data: miniplm or salt_ds")
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--shards", required=True)
    s.add_argument("--out", required=True)

    s = stage("evaluate", _evaluate, "lm-eval benchmarks + bits per byte at every checkpoint of a run")
    s.add_argument("--run", required=True, help="a run folder with checkpoints/frac-*/")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True, help="JSON (per-checkpoint files go beside it)")

    s = stage("report", _report, "the Table 2 analogue, head-to-head, paper-vs-replication tables and figures")
    s.add_argument("--results", required=True, help="results/<run>")
    s.add_argument("--tables", required=True, help="paper_tables/<run>")
    s.add_argument("--figures", required=True, help="figures/<run>")

    s = stage("bench", _bench, "throughput of ce / lsap (online, cached) steps and of the loss alone")
    s.add_argument("--shapes", choices=["paper", "cpu"], default="cpu")
    s.add_argument("--device", default="auto", help="cuda if there is one, else cpu")
    s.add_argument("--compile", action="store_true", help="torch.compile student and surrogate (GPU)")
    s.add_argument("--iters", type=int, default=10)
    s.add_argument("--out", help="write the JSON here too")
    return p



def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    args.fn(args, cfg)
    print(f"[{args.stage}] done in {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
