"""Keys exact both ways, leaf by leaf: every leaf of the validated tiny config (defaults filled in)
is changed to another valid value, and exactly the jobs that read it get a new key.

The mutations come from the values and the schema (numbers up and down, booleans flipped,
another value of the field's enum, lists reordered or shortened, strings altered); the first one
the config accepts is used. The expectation is stated apart from `lsap.keys`, as rules on the
leaf's path: which kinds of job read it. Keys are computed directly (no dry run), so all ~200
edits take seconds. A change that alters the DAG's shape (a method that starts reading a
selection) is the dry-run tests' business and is counted, not judged here.
"""

import copy
import re

from lsap import config, keys
from lsap.io.assets import load_manifest

# (path regex over "/"-joined leaf paths, the kinds of job whose key must change); first match wins
READERS = [
    (r"seed", {"corpus", "heldout", "selection", "student"}),  # the split hashing; the probes' items; the pools
    (r"corpus/domains/\w+/table1", {"table1"}),  # a column label only
    (r"corpus/domains/\w+/sources/\d+/tokens_per_doc", set()),  # the plan's estimate
    # the report's provenance lists the run's assets: it rereads when their set changes (below)
    (r"corpus/domains/\w+/sources/\d+/asset", {"corpus"}),
    (r"corpus/.*", {"corpus"}),
    (r"tokenizers/.*", {"tokenizer"}),
    (r"shards/roles", set()),  # reordered: the same shards
    (r"shards/seq_len", {"shards", "targets", "selection", "student", "surrogate_lines"}),
    (r"analysis/overlap/.*", {"overlap", "report"}),
    (r"analysis/table1/.*", {"table1", "report"}),
    # the slices and the probes' items: the heldout job writes them, every scorer reads them
    (r"evaluation/(bpb_max_bytes|minimal_pairs_items|continuation_items)",
     {"heldout", "evaluate", "reference_lines", "surrogate_lines", "report"}),
    (r"evaluation/(bpb_seq_len|batch_size|max_length)", {"evaluate", "surrogate_lines", "report"}),
    (r"evaluation/.*", {"evaluate", "report"}),
    # how resume states and curves are written; fractions reordered; compile on CPU (the loop compiles on CUDA)
    (r"training/(save_every_steps|save_every_minutes|tensorboard|checkpoint_fractions|compile)", set()),
    (r"training/(micro_batch|grad_accum|global_batch)", {"reference_model", "targets", "selection", "student"}),
    (r"training/.*", {"reference_model", "student"}),
    (r"students/(model/.*|budget_counts)", {"targets", "selection", "student"}),
    (r"students/budget_flops", {"targets", "selection", "student", "report"}),
    (r"students/(seeds|methods|primary_contrast)", {"report"}),  # methods reordered: the tables' rows
    (r"students/teachers/surrogate/.*", {"targets", "student", "surrogate_lines"}),
    # SALT's teacher is also SALT_DS's scorer, at an early checkpoint its trained model must save
    (r"students/teachers/salt_teacher/.*", {"reference_model", "selection", "student"}),
    (r"students/teachers/miniplm_\w+/.*", {"selection", "student"}),
    (r"methods/[\w.]+/(top_k|probabilities)", {"targets", "student", "report"}),
    (r"methods/salt_ds/ds_checkpoint_frac", {"reference_model", "selection", "student", "report"}),
    (r"methods/(salt_ds/(pool_factor|kd_steps_frac|ds_top_k|ds_zeros)|miniplm/pool_factor)",
     {"selection", "student", "report"}),
    (r"methods/lsap[\w.]*/alpha", {"student", "surrogate_lines", "report"}),  # the α the surrogate is judged at
    # what each arm's objective costs by design (lsap.methods.objective_cost) is predicted from these
    (r"methods/lsap[\w.]*/(lambda_scale|lambda_schedule|normaliser|aux_positions|proposals)",
     {"student", "surrogate_lines", "report"}),
    (r"methods/kd/(kd_ratio|kd_outside_sigma)", {"student", "surrogate_lines", "report"}),
    (r"methods/ce/objective", {"student", "surrogate_lines", "report"}),
    (r"methods/.*", {"student", "report"}),
    (r"references/.*", {"reference_model"}),
    (r"compute/gpus", {"reference_model", "targets", "selection", "student"}),
    (r"compute/.*", set()),
    (r"hub/cache", set()),   # where the snapshot's files live, not which files: no job's output changes
]


def _leaves(o, path=()):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(o, list) and o and isinstance(o[0], dict):
        for i, v in enumerate(o):
            yield from _leaves(v, path + (i,))
    else:
        yield path, o


def _enums(o, out):
    if isinstance(o, dict):
        if "enum" in o:
            out.append([x for x in o["enum"] if isinstance(x, str)])
        for v in o.values():
            _enums(v, out)
    elif isinstance(o, list):
        for v in o:
            _enums(v, out)
    return out


ENUMS = _enums(config.schema(), [])


def _mutations(path, v):
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return [v + 1, v * 2, v - 1]
    if isinstance(v, float):
        return [v * 0.9, v * 1.1] if v else [0.01]   # 0 scaled is 0
    if v is None:
        return [1, 0.5, 100, True]
    if isinstance(v, list):
        out = [list(reversed(v)), v[:-1]] if len(v) > 1 else []
        return out + ([[x * 0.9 for x in v]] if v and isinstance(v[0], float) else [])
    if isinstance(v, str):
        others = [x for e in ENUMS if v in e for x in e if x != v]
        if path[-1] == "asset":
            others += [a for a in sorted(load_manifest()) if a != v]
        return others + [v + "x"]
    return []


def _keys(cfg) -> dict:
    """Every keyed job of the config, with its key (surrogate_lines always: a leaf may add LSAP)."""
    return {**keys.every_key(cfg), ("surrogate_lines",): keys.key(cfg, "surrogate_lines")}


def _edited(cfg, path, value):
    out = copy.deepcopy(cfg)
    o = out
    for k in path[:-1]:
        o = o[k]
    o[path[-1]] = value
    return config.validate(out)


def test_every_leaf_changes_exactly_the_keys_of_the_jobs_that_read_it(tiny_cfg):
    base = _keys(tiny_cfg)
    wrong, judged, shape, fixed = [], 0, [], []
    for path, value in _leaves(tiny_cfg):
        if path == ("run",):  # another run is another results folder, not another key
            continue
        name = "/".join(map(str, path))
        for new in _mutations(path, value):
            try:
                edited = _edited(tiny_cfg, path, new)
            except config.ConfigError:
                continue
            got = _keys(edited)
            if set(got) != set(base):
                shape.append(name)
                break
            changed = {job[0] for job in got if got[job] != base[job]}
            want = next((jobs for rx, jobs in READERS if re.fullmatch(rx, name)), {f"(no rule for {name})"})
            if config.required_assets(edited) != config.required_assets(tiny_cfg):
                want = want | {"report"}
            judged += 1
            if changed != want:
                wrong.append(f"{name} -> {new!r}: changed {sorted(changed)}, expected {sorted(want)}")
            break
        else:
            fixed.append(name)  # no other valid value (a kind, a tokenizer the config needs as it is)
    assert not wrong, "\n".join(wrong)
    assert judged >= 170, (judged, fixed, shape)
    print(f"{judged} leaves judged, {len(shape)} change the DAG's shape, {len(fixed)} have no other valid value")
