"""Every job key of every shipped config against a committed golden file: a refactor that changes a
key (and so retrains finished runs) is seen here, not on a cluster. After a deliberate key change,
regenerate with `LSAP_WRITE_GOLDEN_KEYS=1 pytest tests/config/test_golden_keys.py` and say why in the commit."""

import json
import os

from test_key_leaves import _keys

from lsap import REPO_ROOT, config

GOLDEN = REPO_ROOT / "tests" / "golden_keys.json"
CONFIGS = ("tiny", "small", "gpu-small", "paper")


def _all_keys() -> dict:
    return {name: {"|".join(map(str, job)): k if isinstance(k, str) else list(k)
                   for job, k in sorted(_keys(config.load(REPO_ROOT / "config" / f"{name}.yaml")).items(), key=str)}
            for name in CONFIGS}


def test_every_job_key_of_the_shipped_configs_is_unchanged():
    got = _all_keys()
    if os.environ.get("LSAP_WRITE_GOLDEN_KEYS"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    changed = [f"{c} {job}: {want.get(c, {}).get(job)} -> {k}" for c in got for job, k in got[c].items()
               if want.get(c, {}).get(job) != k]
    gone = [f"{c} {job}" for c in want for job in want[c] if job not in got.get(c, {})]
    assert not changed and not gone, "\n".join(changed + gone)
