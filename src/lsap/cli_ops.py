"""The `python -m lsap` commands that operate around the DAG rather than run one of its jobs:
price it (plan), rehearse the paper run, recover after a killed controller, and the GPU check's
CPU smoke, device pack and bench. lsap.cli registers them beside the stages."""

from __future__ import annotations

import json
import os
import sys


def _plan(args, cfg):
    from lsap.io import hub
    from lsap.operations import forecast, forecast_table

    if not hub.reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"  # no 30 s of retries per hub id: shapes from config/hub_models.yaml
    priced = forecast.price(cfg)
    print(json.dumps(priced, indent=1) if args.json else forecast_table.render(priced))


def _rehearse(args, cfg):
    from lsap.operations import rehearsal

    print(f"[rehearse] {rehearsal.build(args.config, args.out)}")


def _smoke(args, cfg):
    from lsap.operations import smoke

    print(f"[smoke] {smoke.build(args.config, args.out)}")


def _recover(args, cfg):
    from lsap.operations import recover

    try:
        decided = recover.recover(args.config)
    except recover.StillRunning as e:
        sys.exit(f"error: {e}")
    print("\n".join(f"{path}: {what}" for path, what in decided.items()) or "[recover] nothing incomplete")
    print("[recover] unlocked: rerun the same snakemake command; it reruns only what is listed as rerun")


def _device_pack(args, cfg):
    from pathlib import Path

    from lsap.operations import devpack, smoke

    path = args.config
    if args.cpu_smoke:  # the same check at CPU shapes: the config lsap.operations.smoke makes of this one
        path = str(smoke.build(args.config, "results/configs"))
    devpack.build(path, Path(args.out), args.python, tables=not args.cpu_smoke, cores=args.cores)


def _bench(args, cfg):
    import torch

    from lsap.operations import bench

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bench.run(args.shapes, device, args.compile, args.iters, args.out, args.rounds, args.tables, args.index_sequences)


def add(stage) -> None:
    """Register the operations' subcommands with lsap.cli's `stage(name, fn, help)`."""
    s = stage("plan", _plan, "price every job of the config's DAG before launch (FLOPs, tokens, epochs, hours)")
    s.add_argument("--json", action="store_true", help='{"jobs": [{"job", "method", "tokens", "flops", ...}]}')

    s = stage("rehearse", _rehearse, "stand-ins and the scaled-down config of the paper run (--config config/paper.yaml)")
    s.add_argument("--out", default="rehearsal", help="where the stand-ins and rehearsal.yaml go")

    stage("recover", _recover, "after a killed controller: keep the finished outputs its Slurm jobs wrote, unlock "
          "(docs/cluster.md)")

    s = stage("smoke", _smoke, "the CPU-shaped config of a GPU config (--config config/gpu-small.yaml)")
    s.add_argument("--out", required=True, help="folder for <run>-cpu-smoke.yaml")

    s = stage("device-pack", _device_pack, "what the GPU check needs on a machine with no registry, in parts of "
              "<= 64 MiB per call with the tracked tree (bench/NOTES.md)")
    s.add_argument("--out", default=".devpack")
    s.add_argument("--python", default="3.12", help="the GPU machine's Python (wheels are built for it)")
    s.add_argument("--cpu-smoke", action="store_true", help="the pack of the config's CPU smoke (the rehearsal)")
    s.add_argument("--cores", type=int, default=2, help="for the CPU stages run here")

    s = stage("bench", _bench, "throughput of the training loop's step per objective and of the loss alone")
    s.add_argument("--shapes", choices=["paper", "cpu"], default="cpu")
    s.add_argument("--device", default="auto", help="cuda if there is one, else cpu")
    s.add_argument("--compile", action="store_true", help="torch.compile student and surrogate (GPU), as training.compile")
    s.add_argument("--iters", type=int, default=10, help="steps per method per round")
    s.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ratios: the median over rounds)")
    s.add_argument("--tables", help="the Σ∩ translation .npz to use (default: built from the tokenizers)")
    s.add_argument("--index-sequences", type=int, default=51_512_195,
                   help="train-split size the sampler indexes (default: paper.yaml's)")
    s.add_argument("--out", help="write the JSON here too")
