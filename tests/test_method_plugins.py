"""Every method plugin against the schema and the job keys: a knob declared in one place and not the
other, or a knob that changes no key, fails here (not as a silently shared result on a cluster)."""

import copy
import dataclasses

import pytest
import yaml

from lsap import REPO_ROOT, config, keys, methods

SCHEMA = yaml.safe_load((REPO_ROOT / "config" / "schema.yaml").read_text())
COMMON = {"objective", "data"}   # every method entry's, read by the registry itself


def _schema_knobs(objective: str) -> set[str]:
    return set(SCHEMA["$defs"][f"method_{objective}"]["properties"]) - COMMON


@pytest.mark.parametrize("name", sorted(methods.OBJECTIVES))
def test_each_objective_plugin_declares_exactly_the_schemas_knobs(name):
    kind = methods.OBJECTIVES[name]
    data_knobs = {k for d in methods.DATA.values() if d.knobs_class for k in dataclasses.fields(d.knobs_class)
                  for k in [k.name]}
    assert set(kind.knobs) == _schema_knobs(name) - data_knobs, name
    assert name in SCHEMA["$defs"]["method"]["properties"]["objective"]["enum"]


@pytest.mark.parametrize("name", [d for d in methods.DATA if d != "all"])
def test_each_selection_plugin_declares_knobs_the_schema_has(name):
    kind = methods.DATA[name]
    allowed = set().union(*(_schema_knobs(o) for o in methods.OBJECTIVES))
    assert set(f.name for f in dataclasses.fields(kind.knobs_class)) <= allowed
    assert set(kind.score_knobs) <= {f.name for f in dataclasses.fields(kind.knobs_class)}


def _a_config_with(name: str) -> tuple[dict, str]:
    """tiny's config with one method of objective `name` (a present one, or one added)."""
    cfg = config.load(REPO_ROOT / "config" / "tiny.yaml")
    for method in cfg["students"]["methods"]:
        if cfg["methods"][method]["objective"] == name and cfg["methods"][method]["data"] == "all":
            return cfg, method
    raw = copy.deepcopy(cfg)
    entry = {"objective": name}
    if "alpha" in methods.OBJECTIVES[name].knobs:
        entry["alpha"] = 0.05
    raw["methods"]["probe"] = entry
    raw["students"]["methods"] = raw["students"]["methods"] + ["probe"]
    return config.validate(raw), "probe"


def _changed(value, field: dict):
    """Another value the schema accepts."""
    if "enum" in field:
        return next(v for v in field["enum"] if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.01
    raise AssertionError(f"no other value for {value!r}")


@pytest.mark.parametrize("name,knob", [(n, k) for n in sorted(methods.OBJECTIVES) for k in methods.OBJECTIVES[n].knobs])
def test_every_knob_of_every_objective_changes_its_students_key(name, knob):
    cfg, method = _a_config_with(name)
    field = SCHEMA["$defs"][f"method_{name}"]["properties"][knob]
    values = field.get("enum") or []
    if len(values) == 1:
        pytest.skip(f"{name}.{knob} has one value ({values[0]})")
    before = keys.key(cfg, "student", method=method, seed=0)
    raw = copy.deepcopy(cfg)
    raw["methods"][method][knob] = _changed(cfg["methods"][method][knob], field)
    after = keys.key(config.validate(raw), "student", method=method, seed=0)
    assert after != before, f"{name}.{knob}: {cfg['methods'][method][knob]} -> {raw['methods'][method][knob]} " \
                            "changed no key of the student that reads it"
