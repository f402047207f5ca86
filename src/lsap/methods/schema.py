"""The `methods:` part of the config schema, generated from the plugins' knobs: one source for each
knob's default, bounds and meaning. lsap.config adds these definitions to config/schema.yaml's
before it validates a config (`$defs/method` and one `$defs/method_<objective>` per objective).

An entry is one objective's knobs plus its `data`; a selection's knobs are allowed (and get their
defaults) only on the objective it pairs with (DataKind.objective) and only under its `data`."""

from __future__ import annotations

import dataclasses

from lsap.methods.kinds import REQUIRED


def _property(f: dataclasses.Field, with_default: bool = True) -> dict:
    prop = dict(f.metadata["schema"])
    if with_default and f.default is not REQUIRED:
        prop["default"] = f.default
    prop["description"] = f.metadata["doc"]
    return prop


def _objective(name: str, kind, selections: dict) -> dict:
    fields = dataclasses.fields(kind.knobs_class)
    props = {"objective": {"const": name}}
    props["data"] = ({"enum": ["all", *selections], "default": "all", "description": "which sequences the student trains on"}
                     if selections else {"const": "all", "default": "all"})
    props.update({f.name: _property(f) for f in fields})
    out = {"type": "object", "additionalProperties": False, "properties": props}
    required = [f.name for f in fields if f.default is REQUIRED]
    if required:
        out["required"] = required
    rules = []
    for data, dkind in selections.items():
        own = dataclasses.fields(dkind.knobs_class)
        props.update({f.name: _property(f, with_default=False) for f in own})
        others = {f.name for d, k in selections.items() if d != data for f in dataclasses.fields(k.knobs_class)}
        rules.append({"if": {"properties": {"data": {"const": data}}, "required": ["data"]},
                      "then": {"properties": {f.name: {"default": f.default} for f in own}},
                      "else": {"propertyNames": {"not": {"enum": [f.name for f in own if f.name not in others]}},
                               "description": f"only with data: {data}"}})
    if len(rules) == 1:
        out.update(rules[0])
    elif rules:
        out["allOf"] = rules
    return out


def method_defs(objectives: dict, data: dict) -> dict:
    """{"method": ..., "method_<objective>": ...} for the schema's $defs."""
    defs = {"method": {"type": "object", "required": ["objective"],
                       "properties": {"objective": {"enum": list(objectives)}},
                       "allOf": [{"if": {"properties": {"objective": {"const": o}}},
                                  "then": {"$ref": f"#/$defs/method_{o}"}} for o in objectives]}}
    for name, kind in objectives.items():
        paired = {d: k for d, k in data.items() if k.objective == name}
        defs[f"method_{name}"] = _objective(name, kind, paired)
    return defs
