"""`lsap report --partial`: the block of students a stopped sweep left whole, headline first."""

import json
import shutil

import pytest

from lsap import REPO_ROOT, config
from lsap.io import layout
from lsap.report import partial
from lsap.report.results import IncompleteResults


def _student(root, cfg, method, seed, steps=10, evaluated=True):
    """A student's three files as the student and evaluate jobs write them (their fields the check reads)."""
    run = layout.moved(layout.student(cfg["run"], method, seed), cfg["run"], root)
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"steps": steps}))
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, steps + 1)))
    if evaluated:
        ev = layout.moved(layout.evaluation(cfg["run"], f"{method}-s{seed}"), cfg["run"], root)
        ev.parent.mkdir(parents=True, exist_ok=True)
        ev.write_text(json.dumps({"checkpoints": [{"fraction": f} for f in cfg["training"]["checkpoint_fractions"]]}))


def test_the_block_keeps_every_seed_of_the_headline_pair_then_the_methods_whole_on_them(tmp_path):
    """gpu-small after a draw that ran CE and LSAP seed 0, CE seed 1 (the priced three pairs), then LSAP
    seed 1 and a ce_paper_ratio seed 0 (a faster machine): the block grows seed by seed, a run outside it
    is named, and a run trained but not evaluated is not whole."""
    cfg = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    with pytest.raises(IncompleteResults, match="no seed has ce and lsap_a0.05 both"):
        partial.complete_block(cfg, tmp_path)
    for m, s in (("ce", 0), ("lsap_a0.05", 0), ("ce", 1)):
        _student(tmp_path, cfg, m, s)
    _student(tmp_path, cfg, "lsap_a0.05", 1, evaluated=False)
    block, note = partial.complete_block(cfg, tmp_path)
    assert block["students"]["methods"] == ["ce", "lsap_a0.05"] and block["students"]["seeds"] == [0]
    assert note.startswith("PARTIAL: 2 methods x 1 seed(s) of the config's 4 x 3; left out: ce-s1, ce-s2, ")
    assert note.endswith("(finished, but outside the block: ce-s1)")
    assert cfg["students"]["seeds"] == [0, 1, 2]  # the config itself untouched
    shutil.rmtree(layout.moved(layout.student(cfg["run"], "lsap_a0.05", 1), cfg["run"], tmp_path))  # retrained whole
    _student(tmp_path, cfg, "lsap_a0.05", 1)
    _student(tmp_path, cfg, "ce_paper_ratio", 0)
    block, note = partial.complete_block(cfg, tmp_path)
    assert block["students"]["seeds"] == [0, 1] and block["students"]["methods"] == ["ce", "lsap_a0.05"]
    assert "(finished, but outside the block: ce_paper_ratio-s0)" in note
    for m in cfg["students"]["methods"]:
        for s in cfg["students"]["seeds"]:
            if not layout.moved(layout.student(cfg["run"], m, s), cfg["run"], tmp_path).exists():
                _student(tmp_path, cfg, m, s)
    block, note = partial.complete_block(cfg, tmp_path)
    assert note is None and block["students"] == cfg["students"]
