"""The Snakefile's parse stays torch-free: every `lsap` module it imports (the registry, keys,
layout, tables, config, assets, corpus, hub) loads without torch or transformers, so planning a
paper-size DAG on a login node takes seconds and needs no GPU stack."""

import re
import subprocess
import sys

from lsap import REPO_ROOT


def test_the_snakefiles_imports_do_not_import_torch():
    text = (REPO_ROOT / "Snakefile").read_text() + "".join(p.read_text() for p in (REPO_ROOT / "workflow" / "rules")
                                                         .glob("*.smk"))
    modules = set(re.findall(r"^from lsap import (\w+)", text, re.M))
    modules |= {m.strip() for line in re.findall(r"^from lsap import ([\w, ]+)$", text, re.M) for m in line.split(",")}
    modules.discard("REPO_ROOT")
    assert {"methods", "keys", "layout", "tables", "config"} <= modules, modules
    code = ("import sys\n" + "".join(f"import lsap.{m}\n" for m in sorted(modules))
            + "print(sorted(m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"the Snakefile's parse imports {out}"
