"""Every method plugin against the schema and the job keys. The schema's method part is generated
from the plugins' knobs (lsap.methods.schema); each knob names the jobs that read it, and changing
it must change the key of each of those jobs and of the student, for objectives and selections
alike: a knob read by nothing changes no key and fails here (not as a silently shared result on a
cluster), unless its plugin declares `reads=()`."""

import copy
import dataclasses

import pytest

from lsap import REPO_ROOT, config, keys, methods

SCHEMA = config.schema()
SELECTIONS = [d for d, k in methods.DATA.items() if k.knobs_class]


def _props(objective: str) -> dict:
    return SCHEMA["$defs"][f"method_{objective}"]["properties"]


@pytest.mark.parametrize("name", sorted(methods.OBJECTIVES))
def test_the_schema_holds_each_objectives_knobs_with_their_defaults(name):
    kind = methods.OBJECTIVES[name]
    paired = [d for d in SELECTIONS if methods.DATA[d].objective == name]
    assert set(_props(name)) == {"objective", "data", *kind.knobs, *(k for d in paired for k in methods.DATA[d].knobs)}
    assert name in SCHEMA["$defs"]["method"]["properties"]["objective"]["enum"]
    required = [f.name for f in dataclasses.fields(kind.knobs_class) if f.default is dataclasses.MISSING]
    entry = {"objective": name, **{k: 0.05 for k in required}}   # (LSAP's alpha)
    filled = config.validate({**_tiny(), "methods": {**_tiny()["methods"], "probe": entry}})["methods"]["probe"]
    for f in dataclasses.fields(kind.knobs_class):
        if f.default is not dataclasses.MISSING:
            assert filled[f.name] == f.default, (name, f.name)


@pytest.mark.parametrize("data", SELECTIONS)
def test_a_selections_knobs_are_defaulted_under_its_data_only(data):
    kind = methods.DATA[data]
    filled = config.validate({**_tiny(), "methods": {**_tiny()["methods"], "probe": {
        "objective": kind.objective, "data": data}}})["methods"]["probe"]
    assert {f.name: filled[f.name] for f in dataclasses.fields(kind.knobs_class)} == \
        {f.name: f.default for f in dataclasses.fields(kind.knobs_class)}
    bad = {**_tiny(), "methods": {**_tiny()["methods"], "probe": {"objective": kind.objective, kind.knobs[0]: 1}}}
    with pytest.raises(config.ConfigError, match=f"only with data: {data}|should not be valid"):
        config.validate(bad)


def _tiny() -> dict:
    return config.load(REPO_ROOT / "config" / "tiny.yaml")


def _a_config_with(name: str, data: str = "all") -> tuple[dict, str]:
    """tiny's config with one method of objective `name` and data `data` (a present one, or one added)."""
    cfg = _tiny()
    for method in cfg["students"]["methods"]:
        if cfg["methods"][method]["objective"] == name and cfg["methods"][method]["data"] == data:
            return cfg, method
    raw = copy.deepcopy(cfg)
    entry = {"objective": name, "data": data}
    if "alpha" in methods.OBJECTIVES[name].knobs:
        entry["alpha"] = 0.05
    raw["methods"]["probe"] = entry
    raw["students"]["methods"] = raw["students"]["methods"] + ["probe"]
    return config.validate(raw), "probe"


def _changed(value, field: dict):
    """Another value the schema accepts."""
    if "enum" in field:
        return next(v for v in field["enum"] if v != value)
    if value is None:
        return 2.0
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.01
    raise AssertionError(f"no other value for {value!r}")


def _job_keys(cfg: dict, method: str) -> dict:
    """The key of every job a method's knob can be read by: targets and selection by their spec's
    content (their id names the spec), the references by name."""
    m = cfg["methods"][method]
    out = {"student": keys.key(cfg, "student", method=method, seed=0)}
    if methods.uses_targets_cache(m):
        out["targets"] = keys.digest(keys.targets_spec(cfg, method))
    if m["data"] != "all":
        out["selection"] = keys.digest(keys.selection_spec(cfg, method))
    out["reference_model"] = {n: keys.key(cfg, "reference_model", name=n) for n in cfg["references"]}
    return out


def _knob_cases():
    for n in sorted(methods.OBJECTIVES):
        for f in dataclasses.fields(methods.OBJECTIVES[n].knobs_class):
            yield n, "all", f
    for d in SELECTIONS:
        for f in dataclasses.fields(methods.DATA[d].knobs_class):
            yield methods.DATA[d].objective, d, f


@pytest.mark.parametrize("name,data,f", list(_knob_cases()), ids=lambda c: getattr(c, "name", c))
def test_every_knob_changes_the_key_of_every_job_it_declares_and_the_students(name, data, f):
    cfg, method = _a_config_with(name, data)
    if name == "lsap" and f.name in ("top_k", "probabilities"):   # the cache's spec: read with targets: cached
        cfg, method = _cached(cfg, method)
    field = _props(name)[f.name]
    if len(field.get("enum") or [0, 1]) == 1:
        pytest.skip(f"{name}.{f.name} has one value ({field['enum'][0]})")
    before = _job_keys(cfg, method)
    raw = copy.deepcopy(cfg)
    raw["methods"][method][f.name] = _changed(cfg["methods"][method][f.name], field)
    after = _job_keys(config.validate(raw), method)
    reads = set(f.metadata["reads"])
    if not reads:
        assert after == before, f"{name}.{f.name} declares that no job reads it, yet a key changed"
        return
    for job in reads | {"student"}:
        assert after[job] != before[job], f"{data if data != 'all' else name}.{f.name}: " \
            f"{cfg['methods'][method][f.name]} -> {raw['methods'][method][f.name]} changed no key of the {job} job " \
            "that its plugin says reads it"


def _cached(cfg, method):
    raw = copy.deepcopy(cfg)
    raw["methods"][method]["targets"] = "cached"
    return config.validate(raw), method
