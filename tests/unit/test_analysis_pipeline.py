"""Issue 12 item 1: the analysis as a pipeline of figure providers.

A new figure is one provider module (``FIGURES`` + ``provide(ctx)``), one registration line in
``analysis/figures/__init__.py`` and its test; the windows table, the per-scenario statistics, JSON and CSV follow.
"""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import numpy as np
import pytest

from mltelemetry import schema
from mltelemetry.analysis import figures
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.figures.context import Context
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

ANALYSIS = Path(importlib.import_module("mltelemetry.analysis").__file__).parent
S = 10**9


def meter_store(path) -> Store:
    """A 1 Hz meter counter over 0..100 s: 100 W, except 250 W over [30, 50) s and 160 W over [70, 80) s."""
    energy, samples = 0.0, []
    for t in range(101):
        samples.append(Sample(schema.PM_ENERGY, {"host": "sut", "meter": "m"}, energy, t * S))
        energy += 250.0 if 30 <= t < 50 else 160.0 if 70 <= t < 80 else 100.0
    store = Store(path)
    store.write(samples)
    store.write_events([Event("c", "baseline", 1, "run", 2 * S, 12 * S), Event("c", "cpu", 1, "run", 30 * S, 50 * S),
                        Event("c", "cpu", 2, "run", int(65.5 * S), int(85.5 * S))])
    return store


def above_100_w_provider() -> types.ModuleType:
    """What a lab would write as analysis/figures/above.py: watts above a 100 W nameplate idle, per window."""
    module = types.ModuleType("above")
    module.FIGURES = ["watts_above_100"]

    def provide(ctx: Context) -> None:
        ctx.columns["watts_above_100"] = ctx.columns["mean_power_w"] - 100.0  # wall's column, computed before

    module.provide = provide
    return module


def test_a_new_figure_is_one_provider_and_one_registration_line(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "WINDOW_PROVIDERS", [*figures.WINDOW_PROVIDERS, above_100_w_provider()])
    with meter_store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "c")
    rows = {(r["scenario"], r["run"], r["action"]): r for r in result.windows.to_dict(orient="records")}
    assert rows[("cpu", 1, "run")]["watts_above_100"] == pytest.approx(150.0)  # 250 W − 100 W
    # run 2: (4.5 s × 100 W + 10 s × 160 W + 5.5 s × 100 W) / 20 s = 130 W
    assert rows[("cpu", 2, "run")]["watts_above_100"] == pytest.approx(30.0)
    summary = result.summary.set_index(["scenario", "action"]).loc[("cpu", "run")]
    assert summary["watts_above_100_mean"] == pytest.approx(90.0)  # (150 + 30) / 2
    assert summary["watts_above_100_std"] == pytest.approx(np.std([150.0, 30.0], ddof=1))
    assert result.to_dict()["windows"][0]["watts_above_100"] is not None


def test_every_provider_declares_its_own_figures():
    providers = figures.WINDOW_PROVIDERS + figures.TABLE_PROVIDERS
    assert all(callable(p.provide) and isinstance(p.FIGURES, list) for p in providers)
    names = figures.figure_names()
    assert len(names) == len(set(names)), "two providers declare one figure"
    # every module of analysis/figures/ but the shared context and the registry is registered
    modules = {p.stem for p in (ANALYSIS / "figures").glob("*.py")} - {"__init__", "context"}
    assert modules == {p.__name__.rsplit(".", 1)[1] for p in providers}


def test_no_analysis_module_imports_private_names_of_another():
    for path in ANALYSIS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mltelemetry"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{path.relative_to(ANALYSIS)} imports {private} from {node.module}"
