# Two commands on a fresh machine: `make run` (the main job on the embedded default) and
# `make test` (the test suite). Both create .venv and install into it first.
PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= config/tiny.yaml
CORES  ?= 2
# torch is installed first and pinned, so no other package can drag in a (multi-GB) CUDA build
# where there is no GPU. On a Linux machine without a GPU whose pip would otherwise fetch the
# CUDA wheel, point TORCH_INDEX at PyTorch's CPU wheel index.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run tables report test lint install dryrun rehearse plan clean-results device-pack

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[eval,slurm,test,tensorboard]'
	touch $@

install: $(STAMP)

# Writes results/<run>/ only (its tables and figures in results/<run>/report/): nothing tracked.
run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

# Publishes: paper_tables/<run>/ and figures/<run>/ (tracked) from results/<run>/ alone (e.g.
# results copied from a cluster): renders, trains nothing, loads no model.
tables: $(STAMP)
	$(BIN)/python -m lsap report --config $(CONFIG)

# The Snakemake HTML report of a finished run, results/<run>/report.html: it opens on the run's verdict.
report: $(STAMP)
	$(BIN)/snakemake --report results/$(shell sed -n 's/^run: *//p' $(CONFIG))/report.html --configfile $(CONFIG)

dryrun: $(STAMP)
	$(BIN)/snakemake -n --configfile $(CONFIG)

# Every job of CONFIG priced before launch: FLOPs, tokens, epochs, GPU-hours, memory, Slurm request.
plan: $(STAMP)
	$(BIN)/python -m lsap plan --config $(CONFIG)

# The paper DAG rehearsed offline (minutes, 2 cores): config/paper.yaml transformed by code
# (lsap.operations.rehearsal), hub ids replaced by stand-ins built from the embedded assets, run through the
# Slurm profile on a real single-node Slurm (tests/slurm_cluster.sh: needs root and apt-get).
rehearse: $(STAMP)
	$(BIN)/python -m lsap rehearse --config config/paper.yaml --out rehearsal
	export LSAP_SLURM_OWNER=$$$$ HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; bash tests/slurm_cluster.sh up || exit $$?; \
	$(BIN)/snakemake --profile slurm --configfile rehearsal/rehearsal.yaml; rc=$$?; \
	bash tests/slurm_cluster.sh down; exit $$rc

# What the GPU check needs on a GPU machine with no registry and no hub, in folders of <= 60 MiB,
# one per call (.devpack/call1, call2, ...; bench/NOTES.md gives the call sequence).
device-pack: $(STAMP)
	$(BIN)/python -m lsap device-pack --config config/gpu-small.yaml --cores $(CORES)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/snakemake --lint --configfile $(CONFIG)

# Unit tests, then the end-to-end DAG (slow) and the Slurm test where Slurm can be brought up.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

clean-results:
	rm -rf results/ .snakemake/
