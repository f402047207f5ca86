"""When a run writes its resume state: every N steps, every M minutes, and once before the Slurm
job's time limit with room for the save it measured last."""

import pytest

from lsap.training import resume


@pytest.mark.parametrize("text, seconds", [("1-02:03:04", 93784), ("02:03:04", 7384), ("03:04", 184),
                                           ("0:00", 0), ("UNLIMITED", None), ("INVALID", None), ("", None)])
def test_slurm_durations(text, seconds):
    assert resume.parse_slurm_time(text) == seconds


def test_steps_minutes_and_the_deadline():
    p = resume.SavePolicy(every_steps=100, every_minutes=None, deadline=None, last=0.0)
    assert [s for s in range(1, 301) if p.due(s, 0.0)] == [100, 200, 300] and not p.timed

    p = resume.SavePolicy(every_steps=None, every_minutes=30, deadline=None, last=0.0)
    assert p.timed and not p.due(7, 1799.0) and p.due(7, 1800.0)
    p.saved(1800.0, 40.0)
    assert not p.due(8, 3599.0) and p.due(8, 3600.0)

    # a 12-h job whose last save took 200 s: due once 600 s (3 saves) before the limit, then not again
    limit = 12 * 3600.0
    p = resume.SavePolicy(every_steps=None, every_minutes=None, deadline=limit, last=0.0, save_seconds=200.0)
    assert not p.due(5, limit - 601) and p.due(5, limit - 600)
    p.saved(limit - 590, 200.0)
    assert p.deadline_saved and not p.due(6, limit - 300)
    # a fast save still keeps the floor margin
    p = resume.SavePolicy(every_steps=None, every_minutes=None, deadline=limit, last=0.0, save_seconds=1.0)
    assert not p.due(1, limit - resume.DEADLINE_MARGIN_S - 1) and p.due(1, limit - resume.DEADLINE_MARGIN_S)


def test_outside_slurm_there_is_no_deadline(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert resume.slurm_time_left() is None
    assert resume.SavePolicy.for_job(50, None).deadline is None
