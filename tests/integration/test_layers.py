"""The layers import downward only (docs/architecture.md): core → nothing above it; exporters, workload and
analysis → core and themselves (the workload also the NVML wrapper of the exporters). Checked on every import
of every file, those inside functions too, but for the few lazy ones listed with their reason; and by importing
the core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"core": ROOT / "mltelemetry", "exporters": ROOT / "exporters", "workload": ROOT / "workload",
           "analysis": ROOT / "analysis"}
ALLOWED = {"core": {"core"}, "exporters": {"core", "exporters"}, "workload": {"core", "workload"},
           "analysis": {"core", "analysis"}}
# The command line and the demo put every layer together: they sit above all of them.
ENTRY_POINTS = {"mltelemetry/cli.py", "mltelemetry/__main__.py", "mltelemetry/demo.py"}
UPPER = ("exporters", "workload", "analysis")
# The exporters' public API the workload uses (settle, cooldown, power limits and gpu_energy read NVML).
PUBLIC_API = {"workload": {"mltelemetry.exporters.gpu.nvml"}}
# Imports inside a function that still point up, each with why; none may be at module level.
LAZY_EXCEPTIONS = {
    ("mltelemetry/storecli.py", "mltelemetry.analysis.sources"): "campaign list reads any source's events",
}


def layer_of(module: str) -> str | None:
    """The layer of an absolute module name; None outside the package (or in deploy/grafana, data only)."""
    parts = module.split(".")
    if parts[0] != "mltelemetry":
        return None
    if len(parts) > 1 and parts[1] in UPPER:
        return parts[1]
    if len(parts) > 1 and parts[1] in ("deploy", "grafana"):
        return None
    return "core"


def imports(source: str) -> list[tuple[int, str, bool]]:
    """(line, absolute module, inside a function) of every import (relative ones stay in their own layer)."""
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # ``from mltelemetry import schema``: the names are modules of the core
                found.append((child.lineno, child.module, lazy))
            visit(child, lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(source), False)
    return found


def upward_imports(layer: str, source: str, name: str = "") -> list[tuple[int, str]]:
    return [(line, module) for line, module, lazy in imports(source)
            if (target := layer_of(module)) is not None and target not in ALLOWED[layer]
            and module not in PUBLIC_API.get(layer, set()) and not (lazy and (name, module) in LAZY_EXCEPTIONS)]


def test_the_checker_finds_upward_imports_at_module_level_and_in_functions():
    source = ("from mltelemetry import schema\nfrom mltelemetry.workload.events import EventRecorder\n"
              "if True:\n    import mltelemetry.analysis.stats\n"
              "def later():\n    from mltelemetry.exporters.runtime import serve\n")
    assert upward_imports("core", source) == [(2, "mltelemetry.workload.events"), (4, "mltelemetry.analysis.stats"),
                                              (6, "mltelemetry.exporters.runtime")]
    assert upward_imports("workload", source) == [(4, "mltelemetry.analysis.stats"),
                                                  (6, "mltelemetry.exporters.runtime")]
    assert upward_imports("exporters", "from .nvml import open_nvml\nfrom mltelemetry.sinks import StoreSink\n") == []
    # a listed exception holds inside a function only
    lazy = "def f():\n    from mltelemetry.analysis.sources import open_source\n"
    assert upward_imports("core", lazy, "mltelemetry/storecli.py") == []
    assert upward_imports("core", lazy.replace("def f():\n    ", ""), "mltelemetry/storecli.py") == [
        (1, "mltelemetry.analysis.sources")]


def test_no_module_imports_a_layer_above_it():
    wrong = []
    for layer, folder in FOLDERS.items():
        files = sorted(folder.glob("*.py") if layer == "core" else folder.rglob("*.py"))
        assert files, folder
        for path in files:
            name = path.relative_to(ROOT).as_posix()
            if name in ENTRY_POINTS:
                continue
            wrong += [f"{name}:{line} imports {module}"
                      for line, module in upward_imports(layer, path.read_text(), name)]
    assert wrong == []


def test_importing_every_core_module_loads_nothing_above_it():
    core = sorted(p.stem for p in FOLDERS["core"].glob("*.py")
                  if p.relative_to(ROOT).as_posix() not in ENTRY_POINTS and p.stem != "__init__")
    assert {"backends", "publisher", "sinks", "store"} <= set(core)
    script = (f"import importlib, sys\nfor name in {core!r}:\n    importlib.import_module('mltelemetry.' + name)\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[:2][-1] in {UPPER!r}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
