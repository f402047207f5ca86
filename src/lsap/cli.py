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
