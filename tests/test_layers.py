"""The layout of mlcv/: imports point down the layer table only, no module imports itself back, no module is long.

Every ``import`` statement of every module counts, including those inside functions (imports deferred for
start-up time still make a dependency). The layer table is the README's "Architecture" section.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlcv"

# What each layer may import, besides itself. The package root (mlcv/__init__.py) only dispatches a run.
LAYERS: dict[str, set[str]] = {
    "orchestration": {
        "root",
        "training",
        "classic",
        "tasks",
        "evaluators",
        "data",
        "models",
        "library",
        "ops",
        "report",
        "base",
    },
    "root": {"training", "classic", "base"},
    "training": {"tasks", "evaluators", "data", "models", "library", "ops", "report", "base"},
    "classic": {"data", "library", "ops", "report", "base"},
    "tasks": {"evaluators", "models", "library", "ops", "base"},
    "evaluators": {"library", "ops", "report", "base"},
    "data": {"ops", "base"},
    "models": {"ops", "base"},
    "library": {"ops", "base"},  # optim, averaging, losses, metrics
    "ops": {"base"},
    "report": set(),
    "base": set(),  # config, workdirs
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    top = parts[1]
    if top in ("optim", "averaging", "losses", "metrics"):
        return "library"
    if top in ("config", "workdirs"):
        return "base"
    return top


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The mlcv modules ``path`` imports (``from mlcv.x import y`` counts y when y is a module)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mlcv")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.split(".")[0] != "mlcv":
                continue
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in found if m in known and m != module}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, m, set(modules)) for m, p in modules.items()}


def test_imports_point_down_the_layers(graph):
    """Each import goes to the module's own layer or one its layer may use."""
    bad = [
        f"{m} ({_layer(m)}) imports {d} ({_layer(d)})"
        for m, deps in graph.items()
        for d in sorted(deps)
        if _layer(d) != _layer(m) and _layer(d) not in LAYERS[_layer(m)]
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles(graph):
    """No module reaches itself through imports (a package's __init__ importing its own submodules is allowed)."""

    def edges(m: str) -> set[str]:
        # A submodule importing its package's __init__ for a re-exported name is not a cycle of modules.
        return {d for d in graph[m] if not m.startswith(d + ".") and not d.startswith(m + ".")}

    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges(m)):
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_no_module_over_400_lines():
    """Long modules are split by what they hold."""
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


@pytest.mark.parametrize(
    "path",
    [
        "mlcv/training/loop.py",
        "mlcv/training/steps.py",
        "mlcv/orchestration/cli.py",
        "mlcv/orchestration/sweep.py",
        "mlcv/orchestration/sweep_table.py",
        "mlcv/orchestration/ablation.py",
        "mlcv/orchestration/ensemble.py",
        "mlcv/training/runs.py",
        "mlcv/training/setup.py",
        "mlcv/training/state.py",
        "mlcv/orchestration/layers.py",
    ],
)
def test_the_generic_machinery_names_no_task(path):
    """The loop, the step builder, the CLI, sweeps, ablations and ensembles never name a task's metric or target."""
    text = (ROOT / path).read_text()
    for word in ("accuracy", "confusion", "label", "num_classes"):
        assert word not in text, f"{path} names {word!r}"
