"""A report over the students a sweep finished when it stopped short (a GPU draw's deadline:
`lsap report --partial`): the block of methods × seeds in which every run is whole, chosen for
the headline comparison first, and a note naming every run the tables leave out.

Why a block and not every finished run: each table compares methods seed by seed (the contrasts
pair each method's seed with CE's), so a run without its partners would enter some rows and not
others. The block keeps every seed on which CE and the pre-registered contrast are both whole,
then every method whole on all of those seeds."""

from __future__ import annotations

import copy
from pathlib import Path

from lsap import methods
from lsap.report.results import IncompleteResults, check_run


def _whole(cfg: dict, root: Path, name: str, seed) -> bool:
    try:
        check_run(cfg, root, name, seed)
    except IncompleteResults:
        return False
    return True


def complete_block(cfg: dict, results_dir) -> tuple[dict, str | None]:
    """(the config with students.methods and students.seeds cut to the block, a note naming the
    runs left out; None when nothing is). Refused when no seed has the headline pair whole."""
    root, s = Path(results_dir), cfg["students"]
    whole = {(m, seed): _whole(cfg, root, m, seed) for m in s["methods"] for seed in s["seeds"]}
    head = [m for m in dict.fromkeys([methods.BASELINE, s.get("primary_contrast")]) if m in s["methods"]]
    seeds = [seed for seed in s["seeds"] if head and all(whole[m, seed] for m in head)]
    kept = [m for m in s["methods"] if seeds and all(whole[m, seed] for seed in seeds)]
    if len(kept) < 2:  # (a config without CE has no headline to build the block on)
        raise IncompleteResults(f"no seed has {' and '.join(head) or 'CE'} both trained and evaluated, with a second "
                                f"method to compare, under {root}: nothing to compare yet; run the sweep further "
                                f"(python -m lsap sweep)")
    out = copy.deepcopy(cfg)
    out["students"]["methods"], out["students"]["seeds"] = kept, seeds
    left = [(m, seed) for m in s["methods"] for seed in s["seeds"] if m not in kept or seed not in seeds]
    if not left:
        return out, None
    label = lambda runs: ", ".join(f"{m}-s{seed}" for m, seed in runs)  # noqa: E731
    finished = [r for r in left if whole[r]]
    return out, (f"PARTIAL: {len(kept)} methods x {len(seeds)} seed(s) of the config's {len(s['methods'])} x "
                 f"{len(s['seeds'])}; left out: {label(left)}"
                 + (f" (finished, but outside the block: {label(finished)})" if finished else ""))
