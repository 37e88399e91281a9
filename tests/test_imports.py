"""The package's import graph: no cycles, no private names imported across modules, and
function-level imports only where start-up time needs them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "grokscope"
# Lazy imports are kept where start-up time needs them: the CLI (`--help` in 0.1 s), the
# package's lazy public API, and the optional Ray backend.
LAZY_ALLOWED = {"grokscope.cli", "grokscope"}
# ... and single imports kept off a module's start-up path: `Run.model_at` imports the
# HookedTransformer builder (and so transformer-lens, 6-8 s) only when a model is asked for.
# `weight_norms` names parameters as checkpoints do, which only the model module knows on
# both TransformerLens versions; the measures load with every task, training included.
LAZY_IMPORTS = {("grokscope.run", "grokscope.model"), ("grokscope.measures.progress", "grokscope.model")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(current: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[current].name == "__init__.py"
    base = current.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, *, top_level_only: bool = False) -> list[tuple[str, list[str], ast.AST]]:
    """(imported module, imported names, node) for every import in module `name` that
    names a grokscope module; `from pkg import sub` counts as importing pkg.sub."""
    tree = ast.parse(MODULES[name].read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, [], node) for a in node.names if a.name.split(".")[0] == "grokscope"]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, node)
            if target.split(".")[0] != "grokscope":
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            names = [a.name for a in node.names if f"{target}.{a.name}" not in MODULES]
            out += [(s, [], node) for s in subs]
            if names:
                out.append((target, names, node))
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> grokscope modules it imports anywhere (TYPE_CHECKING blocks included)."""
    return {name: {target for target, _, _ in imports_of(name) if target != name} for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert sum(len(v) for v in graph.values()) > 50  # the parser sees the real graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["grokscope.config"] = graph["grokscope.config"] | {"grokscope.tasks.addition.format"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_no_private_name_is_imported_across_modules():
    offenders = [f"{name}: from {target} import {n}"
                 for name in MODULES for target, names, _ in imports_of(name) for n in names
                 if n.startswith("_") and target != name]
    assert not offenders, offenders


def test_function_level_imports_only_where_start_up_needs_them():
    offenders = []
    for name, path in MODULES.items():
        if name in LAZY_ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        mods = [a.name for a in inner.names] if isinstance(inner, ast.Import) else [inner.module]
                        if mods != ["ray"] and not (name, mods[0]) in LAZY_IMPORTS:  # ray: optional backend
                            offenders.append(f"{name}:{inner.lineno} {mods}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", ["grokscope.config", "grokscope.cli", "grokscope.tasks"])
def test_light_modules_do_not_import_torch(module):
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules, 'transformer_lens' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_training_imports_no_transformer_lens(tmp_path):
    import subprocess
    import sys

    code = ("import sys\n"
            "from grokscope.config import preset\n"
            "from grokscope.trainer import train\n"
            "c = preset('mini-grok').replace(epochs=3)\n"
            f"run = train(c, {str(tmp_path / 'run')!r}, progress=False)\n"
            "print(len(run.steps), 'transformer_lens' in sys.modules)\n"
            "run.model_at(3)\n"
            "print('transformer_lens' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["4", "False", "True"]  # and the checkpoint loads as a HookedTransformer
