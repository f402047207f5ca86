# LSAP replication DAG. Thin by design: every rule calls `python -m lsap <stage>`; the science
# lives in src/lsap/. Default config: the embedded CPU run (config/tiny.yaml).
import os
import re
import sys

from lsap import config as lsap_config
from lsap.shards import FORMAT as SHARD_FORMAT

configfile: "config/tiny.yaml"

# Validate before any job runs: a misspelt key or bad value stops here, naming the key.
config = lsap_config.validate(config, source="the Snakemake config")
RUN = config["run"]
R = f"results/{RUN}"
# The jobs read the validated config from this file (rewritten only when it changes).
CONFIG = str(lsap_config.write_resolved(config, f"{R}/config.yaml"))
ENV = "../../environment.yml"  # relative to workflow/rules/
# The interpreter running Snakemake runs the stages too (same venv, no PATH surprises).
LSAP = f"{sys.executable} -m lsap"
# The notebook rule calls `jupyter-nbconvert`: find the one of this environment first.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
# Training jobs given more than one GPU run under torchrun (DDP), one process per GPU.
GPUS = config["compute"]["gpus"]
TRAIN = f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node {GPUS} -m lsap" if GPUS > 1 else LSAP
ROLES_WITH_SHARDS = config["shards"]["roles"]
SPLITS = ["train", "validation", "reference"]


include: "workflow/rules/assets.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/report.smk"
localrules: asset, corpus, tokenizer, translation, overlap, report, notebook  # not cluster jobs: downloads, light CPU work


rule all:
    input:
        expand(f"{R}/shards/{{role}}/{{split}}.json", role=ROLES_WITH_SHARDS, split=SPLITS),
        f"{R}/vocab/translation.npz",
        f"paper_tables/{RUN}/tokenizer_overlap.md",
        f"paper_tables/{RUN}/table1.md",
        expand(f"{R}/references/{{name}}/summary.json", name=list(config["references"])),
        rules.report.output,
        rules.notebook.output,
