"""`python -m lsap <stage> ...`: the one entry point every Snakemake rule calls."""

from __future__ import annotations

import argparse
import sys
import time

from lsap import cli_ops, keys
from lsap import config as config_mod


def _assets(args, cfg):
    from lsap.io import assets

    names = [args.name] if args.name else (sorted(assets.load_manifest()) if args.all
                                           else config_mod.required_assets(cfg))
    for name in names:
        assets.fetch(name)


def _hub_snapshot(args, cfg):
    from lsap.io import snapshot

    snapshot.take(cfg, args.out, what=args.what)


def _pin(args, cfg):
    from lsap.io import pin

    path = pin.write(cfg, args.config, args.out)
    for p in pin.read(path)["pins"]:
        print(f"[pin] {p['type']} {p['id']} @ {p['revision'] or 'head'}: {p['commit']}")
    print(f"[pin] wrote {path}: commit it")


def _corpus(args, cfg):
    from lsap.data import corpus

    corpus.gather(cfg, args.out) if args.gather else corpus.build(cfg, args.out, part=args.part)


def _tokenizer(args, cfg):
    from lsap.data import vocab

    vocab.build_role(cfg, args.role, args.corpus, args.out)


def _shards(args, cfg):
    from lsap.data import shards

    if args.gather:
        shards.gather(args.out, cfg["corpus"]["parts"])
        return
    if not (args.tokenizer and args.corpus):
        raise SystemExit("lsap shards: --tokenizer and --corpus are needed (or --gather)")
    for split in args.splits or shards.SPLITS:
        shards.write_split(args.tokenizer, args.corpus, split, args.out, cfg["shards"]["seq_len"])


def _translation(args, cfg):
    from lsap.data import vocab

    print(f"[translation] {vocab.save_translation(args.out, vocab.load(args.student), vocab.load(args.surrogate))}")


def _overlap(args, cfg):
    from lsap.io.files import write_text
    from lsap.report import analysis

    df = analysis.overlap_job(cfg, args.corpus, args.student, args.surrogate)
    print(df.to_string())
    write_text(args.out, df.to_csv(index=False))


def _table1(args, cfg):
    from lsap.report import analysis

    analysis.save_table1(analysis.table1(cfg, args.corpus), args.out)


def _train(args, cfg):
    from lsap.stages import train as stage_train

    summary = stage_train.run_job(cfg, args.role, args.tokenizer, args.shards, args.out, args.key or "",
                                  args.method, args.seed, args.split, args.translation, args.targets, args.scores)
    print(f"[train] {args.role} {args.method or ''} seed {args.seed}: {summary}")


def _targets(args, cfg):
    from lsap.stages.targets import cache_job

    cache_job(cfg, keys.method_of(cfg, "targets", args.spec), args.seed, args.tokenizer, args.shards,
              args.translation, args.out)


def _select(args, cfg):
    if args.gather:  # numpy only: a local rule, no torch import
        from lsap.data.scores import gather_parts

        gather_parts(args.out, cfg["compute"]["scoring_parts"])
        return
    from lsap.stages.select import select_job

    select_job(cfg, keys.method_of(cfg, "selection", args.spec), args.tokenizer, args.shards, args.out, args.part)


def _sweep(args, cfg):
    from lsap.operations import sweep

    sweep.run(cfg)


def _heldout(args, cfg):
    from lsap.data import heldout

    heldout.write_heldout(cfg, args.corpus)


def _evaluate(args, cfg):
    from lsap import models
    from lsap.evaluation import evaluate

    models.require_gpu(cfg, "evaluate")
    evaluate.evaluate_run(args.run, args.corpus, cfg["evaluation"], args.out)


def _reference_lines(args, cfg):
    from lsap.data import ngram

    r = ngram.reference_lines(args.shards, args.tokenizer, args.corpus, cfg["evaluation"], args.out)
    print(f"[reference-lines] {r['train_tokens_counted']} training tokens: " + "  ".join(
        f"{m} {d} {v['bpb']:.3f}" for m in ("unigram", "bigram") for d, v in r[m].items()))


def _surrogate_lines(args, cfg):
    from lsap import models
    from lsap.evaluation.surrogate_lines import surrogate_lines

    models.require_gpu(cfg, "surrogate_lines")
    r = surrogate_lines(cfg, args.translation, args.tokenizer, args.corpus, args.out, args.shards)
    print(f"[surrogate-lines] {r['surrogate']}: " + "  ".join(
        f"α={a} true above {sum(d['true_above'] for d in q.values()) / len(q):.3f}" for a, q in r["proposals"].items()))


def _report(args, cfg):
    from lsap.report import tables
    from lsap.report.results import IncompleteResults

    try:
        tables.render(cfg, args.results, args.tables, args.figures, partial=args.partial)
    except IncompleteResults as e:
        hint = "" if args.partial else (" (after a sweep stopped short, e.g. a GPU draw's deadline: --partial "
                                        "renders the methods x seeds that are whole)")
        raise SystemExit(f"error: {e}{hint}") from None


def _notebook(args, cfg):
    from lsap.report import notebook

    print(f"[notebook] {notebook.execute(cfg['run'], args.tables, args.figures, args.out, args.html)}")


# stage -> (the job whose key it checks, its wildcards), from the parsed arguments
JOBS = {
    "corpus": lambda a: ("corpus", {}),
    "tokenizer": lambda a: ("tokenizer", {"role": a.role}),
    "shards": lambda a: ("shards", {}),
    "translation": lambda a: ("translation", {}),
    "overlap": lambda a: ("overlap", {}),
    "table1": lambda a: ("table1", {}),
    "train": lambda a: ("student", {"method": a.method, "seed": a.seed}) if a.role == "student"
    else ("reference_model", {"name": a.role}),
    "targets": lambda a: ("targets", {"spec": a.spec, "seed": a.seed}),
    "select": lambda a: ("selection", {"spec": a.spec}),
    "heldout": lambda a: ("heldout", {}),
    "evaluate": lambda a: ("evaluate", {}),
    "reference-lines": lambda a: ("reference_lines", {}),
    "surrogate-lines": lambda a: ("surrogate_lines", {}),
    "report": lambda a: ("report", {}),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lsap", description=__doc__)
    sub = p.add_subparsers(dest="stage", required=True)

    def stage(name, fn, help):
        s = sub.add_parser(name, help=help)
        s.add_argument("--config", default="config/tiny.yaml", help="run config (YAML)")
        s.add_argument("--key", help="the job key the rule planned (lsap.keys): refuse a config that differs")
        s.set_defaults(fn=fn)
        return s

    s = stage("assets", _assets, "fetch and verify the registry assets a config needs")
    s.add_argument("--name", help="fetch only this asset")
    s.add_argument("--all", action="store_true", help="fetch every asset of config/assets.yaml")

    stage("sweep", _sweep, "every student and its evaluation in one process, the headline comparison first "
          "(after `snakemake --omit-from student`; a GPU machine's sweep)")

    s = stage("hub-snapshot", _hub_snapshot, "download every hub id the run reads into hub.cache (login node)")
    s.add_argument("--out", required=True, help="the snapshot's manifest (JSON)")
    s.add_argument("--what", choices=["data", "evaluation"], default="data",
                   help="data: datasets, tokenizers, models; evaluation: lm-eval's task datasets")

    s = stage("pin", _pin, "resolve every hub id of the config to a commit into config/<run>.lock.yaml (the hub "
                           "snapshot then reads exactly those commits, and refuses a config that differs)")
    s.add_argument("--out", help="the lock file (default config/<run>.lock.yaml)")

    s = stage("corpus", _corpus, "build one part of the cleaned, split, per-domain corpus (or gather the parts)")
    s.add_argument("--out", required=True, help="the part's folder (corpus/part-PPP), or corpus/ with --gather")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--part", type=int, help="which of corpus.parts slices to build")
    g.add_argument("--gather", action="store_true", help="write the manifest of all the parts")

    s = stage("tokenizer", _tokenizer, "train or load one role's tokenizer, save it in HF format")
    s.add_argument("--role", required=True, choices=["student", "surrogate"])
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True)

    s = stage("shards", _shards, "tokenize one corpus part into packed token shards (or gather the parts)")
    s.add_argument("--tokenizer")
    s.add_argument("--corpus", help="one part of the corpus (corpus/part-PPP)")
    s.add_argument("--out", required=True)
    s.add_argument("--gather", action="store_true", help="write the split manifests that list the parts in --out")
    s.add_argument("--splits", nargs="+", help="default: every split (lsap.data.corpus.SPLITS)")
    s = stage("translation", _translation, "Σ∩ translation tables of the student/surrogate pair")
    s.add_argument("--student", required=True)
    s.add_argument("--surrogate", required=True)
    s.add_argument("--out", required=True, help=".npz")

    s = stage("overlap", _overlap, "tokenizer-overlap table for real tokenizer pairs + the run's pair")
    s.add_argument("--corpus", required=True)
    s.add_argument("--student", required=True)
    s.add_argument("--surrogate", required=True)
    s.add_argument("--out", required=True, help="CSV (the report renders the table)")

    s = stage("table1", _table1, "LSAP Table 1: tokens above α per position, with real LMs")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True, help="JSON (the report renders the table and figure)")
    s = stage("train", _train, "train a student (one method, one seed) or a reference model")
    s.add_argument("--role", required=True, choices=["student", "surrogate", "reference", "salt_teacher", "miniplm_teacher"])
    s.add_argument("--method", default="ce", help="student: a name from the methods section")
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
    s.add_argument("--spec", required=True, help="the targets spec id (lsap.keys.targets_id)")
    s.add_argument("--seed", type=int, required=True, help="the student seed whose runs read the cache")
    s.add_argument("--out", required=True)

    s = stage("select", _select, "score one part of the training sequences for a data-selecting method (miniplm, "
                                 "salt_ds), or gather the parts")
    s.add_argument("--spec", required=True, help="the selection spec id (lsap.keys.selection_id)")
    s.add_argument("--tokenizer")
    s.add_argument("--shards")
    s.add_argument("--out", required=True, help="the selection's folder (its parts go in parts/)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--part", type=int, help="which of compute.scoring_parts ranges to score")
    g.add_argument("--gather", action="store_true", help="join the parts into scores.npy, sequences.npy, scores.json")

    s = stage("heldout", _heldout, "the validation text read once: scoring slices and probe items (corpus/heldout/)")
    s.add_argument("--corpus", required=True, help="the gathered corpus folder")

    s = stage("evaluate", _evaluate, "lm-eval benchmarks + bits per byte at every checkpoint of a run")
    s.add_argument("--run", required=True, help="a run folder with checkpoints/frac-*/")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True, help="JSON (per-checkpoint files go beside it)")

    s = stage("reference-lines", _reference_lines, "unigram and bigram of the student training text, scored as "
                                                   "the evaluation scores the held-out text")
    s.add_argument("--shards", required=True, help="the student shards folder")
    s.add_argument("--tokenizer", required=True, help="the student tokenizer folder")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True, help="JSON")

    s = stage("surrogate-lines", _surrogate_lines, "the surrogate's own held-out scores and how often its "
                                                   "proposals above each α hold the true next token")
    s.add_argument("--translation", required=True)
    s.add_argument("--tokenizer", required=True, help="the student tokenizer folder")
    s.add_argument("--corpus", required=True)
    s.add_argument("--shards", help="the student shards folder (its unigram: the random control's predicted cost)")
    s.add_argument("--out", required=True, help="JSON")

    s = stage("report", _report, "every table and figure of a run, from its result files alone")
    s.add_argument("--results", help="default results/<run>")
    s.add_argument("--tables", help="default paper_tables/<run>")
    s.add_argument("--figures", help="default figures/<run>")
    s.add_argument("--partial", action="store_true",
                   help="a sweep stopped short (a GPU draw's deadline): tables over the methods x seeds that are "
                        "whole, headline first, every file naming the runs left out (default: all must be there)")

    s = stage("notebook", _notebook, "execute the results notebook on a run's tables into a portable copy")
    s.add_argument("--tables", required=True)
    s.add_argument("--figures", required=True)
    s.add_argument("--out", required=True, help="the executed .ipynb")
    s.add_argument("--html", help="its HTML rendering")

    cli_ops.add(stage)  # the operations around the DAG: plan, rehearse, recover, smoke, device-pack, bench
    return p


NO_CONFIG = ("bench",)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # a job (python -m lsap): every line of its log stamped (lsap.io.progress.install)
        from lsap.io.progress import install

        install()
    try:
        # the bench reads no run config (and runs where jsonschema, which validates one, is absent)
        cfg = None if args.stage in NO_CONFIG else config_mod.load(args.config)
        if args.key and args.stage in JOBS:
            job, wildcards = JOBS[args.stage](args)
            keys.check(cfg, args.key, job, args.config, **wildcards)
    except (config_mod.ConfigError, keys.KeyMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    args.fn(args, cfg)
    print(f"[{args.stage}] done in {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
