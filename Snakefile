# LSAP replication DAG. Thin by design: every rule calls `python -m lsap <stage>`; the science
# lives in src/lsap/, the file layout in lsap.io.layout, what each job reads in lsap.keys.
# The config is exactly one file: `--configfile X`, else the embedded default config/tiny.yaml
# (no `configfile:` directive here: Snakemake would merge it under every --configfile).
import os
import re
import sys

from lsap import REPO_ROOT, keys, methods
from lsap.io import layout
from lsap.report import tables as lsap_tables
from lsap.io import assets as lsap_assets
from lsap import config as lsap_config
from lsap.data import corpus as lsap_corpus
from lsap.io import hub as lsap_hub
from lsap.stages import inputs as lsap_inputs
from lsap.training import preemption as lsap_preemption
from lsap.io import snapshot as lsap_snapshot


# Validate before any job runs: a misspelt key or bad value stops here, naming the key.
config, CONFIG_NAME = lsap_config.for_snakemake(config, workflow.overwrite_configfiles)
RUN = config["run"]
layout.check_run_dir(REPO_ROOT, RUN, CONFIG_NAME)  # another layout, or another config's results
R = layout.run_dir(RUN)
CONFIG = layout.resolved_config(RUN)  # what the jobs read; written by onstart (below), never by a dry run
# The rules call `python -m lsap`: put this interpreter first on PATH (the jobs' shell and, on a
# cluster, the job's own Snakemake inherit it), so the command text holds no checkout path.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
GPUS = config["compute"]["gpus"]
GPU_ONE = min(GPUS, 1)  # the single-process GPU jobs (evaluate, table1, targets, selection_part): one GPU each
# A config with hub ids: the hub_snapshot rule downloads them first, every other job runs with the
# hub offline and reads the snapshot (lsap.io.snapshot); the env prefix is empty otherwise.
HUB_MANIFEST = [layout.hub_manifest(RUN)] if lsap_hub.ids(config) else []
HUB_ENV = " ".join(f"{k}={v}" for k, v in lsap_snapshot.job_env(config, layout.hub_manifest(RUN)).items())
LSAP_ONLINE = "python -m lsap"
LSAP = f"env {HUB_ENV} python -m lsap" if HUB_ENV else LSAP_ONLINE
# Training jobs given more than one GPU run under torchrun (DDP), one process per GPU.
TRAIN = (f"env {HUB_ENV} " if HUB_ENV else "") + f"python -m torch.distributed.run --standalone --nproc_per_node {GPUS} -m lsap" \
    if GPUS > 1 else LSAP
SPLITS = list(lsap_corpus.SPLITS)
# Threads of a model job (Snakemake sets OMP_NUM_THREADS to it). On CPU, models this small barely
# use a second core: two one-thread jobs side by side finish 1.26x sooner than the same two jobs
# one after the other on two threads (tiny CE student: 95 s vs 2 x 60 s, 2 cores).
THREADS = 1 if GPUS == 0 else 2
ENV = "../../environment.yml"  # relative to workflow/rules/


envvars:
    "PATH",  # set above: the jobs find this environment's python first


onstart:
    # Runs only when this invocation holds the lock and has jobs to run: a dry run, or a second
    # snakemake refused by the lock, never rewrites what a running run's jobs read.
    if not os.path.exists(layout.hub_manifest(RUN)):  # the snapshot taken, the jobs need no hub
        lsap_hub.check(config, CONFIG_NAME)  # every hub id a local folder, or the hub reachable
    if getattr(workflow.executor_plugin, "name", None) == "slurm":
        lsap_preemption.check()  # a job left PREEMPTED would be waited on for ever
    layout.claim_run_dir(REPO_ROOT, RUN, CONFIG_NAME)
    lsap_config.write_resolved(config, CONFIG)


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/report.smk"


# The HTML report's landing page: the run's verdict, written by the report rule; a generic page
# until that rule has run.
report: CAPTION("description") if os.path.exists(CAPTION("description")) else "workflow/report/workflow.rst"


localrules:
    all,
    asset,
    hub_snapshot,
    hub_snapshot_eval,
    corpus,
    shards,
    tokenizer,
    translation,
    overlap,
    selection,
    report,
    notebook,  # not cluster jobs: downloads, light CPU work, gathers of the scattered data jobs


rule all:
    input:
        expand(f"{layout.shards(RUN, '{role}')}/{{split}}.json", role=config["shards"]["roles"], split=SPLITS),
        expand(f"{layout.reference(RUN, '{name}')}/summary.json", name=list(config["references"])),
        # every output the report shows, requested itself: Snakemake skips a missing intermediate
        # file when what it feeds is up to date, so a deleted run would otherwise stay deleted
        rules.report.input,
        rules.report.output,
        rules.notebook.output,
