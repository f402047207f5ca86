"""The package's shape, checked: the Snakefile's parse stays torch-free (every `lsap` module it
imports loads without torch or transformers, so planning a paper-size DAG on a login node takes
seconds and needs no GPU stack), there is no import cycle, and every package imports only the
layers below it (LAYERS: the architecture, bottom to top)."""

import re
import subprocess
import sys

from lsap import REPO_ROOT


def test_the_snakefiles_imports_do_not_import_torch():
    text = (REPO_ROOT / "Snakefile").read_text() + "".join(p.read_text() for p in (REPO_ROOT / "workflow" / "rules")
                                                         .glob("*.smk"))
    modules = {f"{package}.{name.split(' as ')[0].strip()}"
               for package, names in re.findall(r"^from (lsap[\w.]*) import ([\w, ]+)$", text, re.M)
               for name in names.split(",")}
    modules.discard("lsap.REPO_ROOT")
    assert {"lsap.methods", "lsap.keys", "lsap.io.layout", "lsap.report.tables", "lsap.config"} <= modules, modules
    code = ("import sys\n" + "".join(f"import {m}\n" for m in sorted(modules))
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
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lsap":
                # `from lsap.io import files` depends on lsap.io.files; `from lsap.io.files import x` on it too
                folder = root.parent.joinpath(*node.module.split("."))
                for a in node.names:
                    is_module = (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()
                    deps.add(f"{node.module}.{a.name}" if is_module else node.module)
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
    # the core of training (plan, sampler, scoring, surrogate, losses) never imports a stage, the
    # registry above it or the budget
    core = ("lsap.training.plan", "lsap.data.sampler", "lsap.methods.scoring", "lsap.models.surrogate",
            "lsap.methods.losses")
    for m in core:
        assert not {n for n in graph[m] if n.startswith("lsap.stages") or n in ("lsap.methods", "lsap.training.budget")}, m
    print(f"import graph: {len(graph)} modules, depth {depth(graph)}")


# The architecture, bottom to top: a module imports only from its own layer or those below. A new
# module must be placed here (a package's modules are placed with it).
LAYERS = (
    ("lsap", "lsap.config_types"),          # REPO_ROOT; the validated config's static types
    ("lsap.io",),                           # files, layout, assets, hub snapshots, checkpoints, logs
    ("lsap.data",),                         # corpus, tokenizers and Σ∩, shards, held-out slices, probes
    ("lsap.models",),                       # loading, FLOPs, the surrogate's candidates, fused kernels
    ("lsap.methods",),                      # the registry, each method's plugin, its loss or scorer
    ("lsap.training",),                     # the loop, the run plan, the budget record, resume
    ("lsap.config", "lsap.keys"),           # the config validated against the plugins; job keys
    ("lsap.evaluation",),                   # lm-eval, the probes, bits per byte, reference lines
    ("lsap.report",),                       # tables, figures, captions, statistics, provenance
    ("lsap.stages",),                       # the jobs the DAG runs that are more than a call
    ("lsap.operations",),                   # pricing, rehearsal, the GPU draw, the bench, recovery
    ("lsap.cli", "lsap.cli_ops", "lsap.__main__"),
)


def layer(module: str) -> int:
    """The layer of a module: that of its longest listed prefix."""
    hits = [(len(name), i) for i, names in enumerate(LAYERS) for name in names
            if module == name or module.startswith(name + ".")]
    assert hits, f"{module} is in no layer of tests/test_imports.py: place its package there"
    return max(hits)[1]


def test_every_package_imports_only_downward():
    graph = import_graph()
    up = sorted(f"{m} (layer {layer(m)}) imports {n} (layer {layer(n)})"
                for m, deps in graph.items() for n in deps if n in graph and layer(n) > layer(m))
    assert not up, "imports that climb the architecture:\n" + "\n".join(up)


def test_the_source_tree_is_packages_and_no_name_collides():
    """Only the spine (the config, its keys, the CLI) sits at the top; a module's name is not also a
    package's, and no two modules share a name (`train.py` beside `stages/train.py` read as one)."""
    root = REPO_ROOT / "src" / "lsap"
    top = sorted(p.stem for p in root.glob("*.py"))
    assert top == ["__init__", "__main__", "cli", "cli_ops", "config", "config_types", "keys"], top
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    names = [p.stem for p in root.rglob("*.py") if p.stem != "__init__"
             and p.parent.name not in ("objectives", "selections")]   # plugins are named by their method
    assert not packages & set(top), packages & set(top)
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
