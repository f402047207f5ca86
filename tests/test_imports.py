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


def import_graph() -> dict[str, set[str]]:
    """lsap module -> the lsap modules it imports, at the top or inside a function alike (a deferred
    import is still a dependency: it only hides a cycle until the function runs)."""
    import ast

    root = REPO_ROOT / "src" / "lsap"
    graph = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "lsap":
                deps |= {f"lsap.{a.name}" for a in node.names
                         if (root / f"{a.name}.py").exists() or (root / a.name).is_dir()}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lsap."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("lsap.")}
        graph[name] = deps - {name}
    return graph


def depth(graph: dict[str, set[str]]) -> int:
    """The longest import chain (modules on it) of an acyclic graph."""
    import functools

    @functools.lru_cache(maxsize=None)
    def d(m: str) -> int:
        return 1 + max((d(n) for n in graph.get(m, ()) if n in graph), default=0)
    return max(map(d, graph))


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if n not in graph:
                continue
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path[path.index(n):] + [n]) if n in path \
                else f"import cycle through {n}"
            if n not in state:
                visit(n, path + [n])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # the layers: the core (plan, sampler, train, selection, surrogate, objectives) never imports a
    # stage or the registry above it
    core = ("lsap.plan", "lsap.sampler", "lsap.selection", "lsap.surrogate", "lsap.losses")
    for m in core:
        assert not {n for n in graph[m] if n.startswith("lsap.stages") or n in ("lsap.methods", "lsap.budget")}, m
    print(f"import graph: {len(graph)} modules, depth {depth(graph)}")
