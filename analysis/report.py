"""The HTML efficiency report: the method paper's figures (5–9) as PNG images, the tables, and the data behind them.

``write_report(result, DIR)`` writes ``DIR/index.html``, ``DIR/figures/*.png`` and ``DIR/data/*``
(CSV per table, the per-second power traces, the whole analysis as JSON). The folder is
self-contained: no script, font or style sheet is fetched from anywhere, so it can be zipped,
mailed or archived with the measurement. A figure that lacks the data it needs is replaced by a
line saying why, never drawn from padded numbers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from mltelemetry import __version__
from mltelemetry.analysis.campaign import CampaignAnalysis
from mltelemetry.analysis.compare import CampaignComparison
from mltelemetry.analysis.figures.baseline import BASELINE_SCENARIO, run_ranges
from mltelemetry.analysis.figures.context import J_PER_WH
from mltelemetry.analysis.windows import group_label, ok_windows
from mltelemetry.safety import write_csv

Progress = Callable[[str, float, float], None]
DPI = 110
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
.no-figure { padding: 1em; background: #fff6e0; border-left: 4px solid #e0a000; }
.notes li { margin: 0.2em 0; } #image-check { display: none; padding: 1em; background: #fde; }
"""
# Marks each image once the page has loaded (data-loaded="yes"/"no") and says so when one did not load,
# which is what a folder copied without its figures/ looks like.
_SCRIPT = """
window.addEventListener("load", function () {
  var failed = 0, images = document.querySelectorAll("img");
  images.forEach(function (img) {
    var ok = img.complete && img.naturalWidth > 0;
    img.dataset.loaded = ok ? "yes" : "no";
    img.dataset.naturalWidth = img.naturalWidth;
    if (!ok) failed++;
  });
  document.body.dataset.imagesLoaded = images.length - failed;
  document.body.dataset.imagesFailed = failed;
  if (failed) {
    var box = document.getElementById("image-check");
    box.textContent = failed + " figure(s) did not load: copy the whole report folder, figures/ included.";
    box.style.display = "block";
  }
});
"""


class NoFigure(Exception):
    """Raised by a figure function when the data it needs is missing; the message is the reason."""


def _figure(width: float = 10, height: float = 4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _runs(result: CampaignAnalysis) -> pd.DataFrame:
    """The ok runs, their ``scenario`` column holding the group each figure shows: the scenario, with its variant."""
    runs = ok_windows(result.windows)[lambda w: w.action == "run"]
    return runs.assign(scenario=[group_label(s, v) for s, v in zip(runs.scenario, runs.variant)])


def _scenarios(runs: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(runs.scenario))


def _ticks(labels: list[str]) -> list[str]:
    """Axis labels of groups, a variant's settings one per line (``cnn [batch_size=32,precision=bf16]`` is wide)."""
    return [label.replace(" [", "\n[").replace(",", ",\n") for label in labels]


def _ci_half(values: pd.Series) -> float:
    from mltelemetry.analysis.stats import describe

    d = describe(values.to_numpy())
    return d["ci_high"] - d["mean"] if np.isfinite(d["ci_high"]) else 0.0


# --- the figures ------------------------------------------------------------------------------------
def fig_power_over_time(result: CampaignAnalysis):
    """Paper fig. 5: per-second wall power of every run (thin) and their mean (bold), per scenario."""
    traces = result.traces
    if traces is None or traces.empty or not np.isfinite(traces.power_w).any():
        raise NoFigure("no per-second meter power for any ok run (no power-meter series)")
    scenarios = list(dict.fromkeys(traces.scenario))
    fig = _figure(10, 2.6 * len(scenarios))
    axes = fig.subplots(len(scenarios), 1, squeeze=False)[:, 0]
    for ax, scenario in zip(axes, scenarios):
        part = traces[traces.scenario == scenario]
        for _, run in part.groupby("run"):
            ax.plot(run.t_s, run.power_w, color="tab:blue", alpha=0.25, linewidth=0.7)
        mean = part.groupby("t_s").power_w.mean()
        ax.plot(mean.index, mean.values, color="tab:blue", linewidth=1.8, label="mean over runs")
        overall = float(np.nanmean(part.power_w))
        ax.axhline(overall, color="tab:red", linestyle="--", linewidth=1, label=f"average {overall:.1f} W")
        if result.baseline_power_w is not None:
            ax.axhline(result.baseline_power_w, color="grey", linestyle=":", linewidth=1,
                       label=f"baseline {result.baseline_power_w:.1f} W")
        ax.set_title(f"{scenario}: {part.run.nunique()} run(s)", fontsize=10)
        ax.set_ylabel("power (W)")
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("time since the run's start (s)")
    return fig


def fig_energy_overview(result: CampaignAnalysis):
    """Paper fig. 6: mean power, and mean energy per run split into baseline share and induced energy."""
    runs = _runs(result)
    runs = runs[runs.energy_wh.notna()]
    if runs.empty:
        raise NoFigure("no run has a wall energy figure")
    scenarios = _scenarios(runs)
    x = np.arange(len(scenarios))
    fig = _figure(11, 4.2)
    ax_power, ax_energy = fig.subplots(1, 2)
    groups = [runs[runs.scenario == s] for s in scenarios]
    ax_power.bar(x, [g.mean_power_w.mean() for g in groups], yerr=[_ci_half(g.mean_power_w) for g in groups],
                 color="tab:blue", capsize=3)
    ax_power.set_title("mean power per run (95 % CI)", fontsize=10)
    ax_power.set_ylabel("W")
    energy = np.array([g.energy_wh.mean() for g in groups])
    error = [_ci_half(g.energy_wh) for g in groups]
    if result.baseline_power_w is not None:
        base = np.array([result.baseline_power_w * g.duration_s.mean() / J_PER_WH for g in groups])
        ax_energy.bar(x, base, color="lightgrey", label="baseline × duration")
        ax_energy.bar(x, energy - base, bottom=base, yerr=error, color="tab:orange", capsize=3,
                      label="induced by the software")
    else:
        ax_energy.bar(x, energy, yerr=error, color="tab:orange", capsize=3, label="energy (no baseline recorded)")
    gpu = np.array([g.gpu_energy_wh.mean() for g in groups])
    if np.isfinite(gpu).any():
        ax_energy.scatter(x, gpu, color="tab:green", marker="D", zorder=3, label="of which GPU")
    ax_energy.set_title("energy per run (95 % CI)", fontsize=10)
    ax_energy.set_ylabel("Wh")
    ax_energy.legend(fontsize=8)
    for ax in (ax_power, ax_energy):
        ax.set_xticks(x, _ticks(scenarios))
    return fig


_HARDWARE = [("cpu_utilization", "CPU load (%)", 100.0), ("gpu_utilization", "GPU load (%)", 100.0),
             ("memory_used_bytes", "RAM used (GiB)", 1 / 2**30),
             ("gpu_memory_used_bytes", "GPU memory (GiB)", 1 / 2**30),
             ("net_traffic_bytes", "network traffic (MB)", 1e-6), ("disk_bytes", "disk activity (MB)", 1e-6)]


def fig_hardware(result: CampaignAnalysis):
    """Paper fig. 7: mean hardware usage per run, per scenario (95 % CI)."""
    runs = _runs(result).copy()
    runs["net_traffic_bytes"] = runs.net_received_bytes.add(runs.net_transmitted_bytes, fill_value=0)
    runs.loc[runs.net_received_bytes.isna() & runs.net_transmitted_bytes.isna(), "net_traffic_bytes"] = np.nan
    runs["disk_bytes"] = runs.disk_read_bytes.add(runs.disk_written_bytes, fill_value=0)
    runs.loc[runs.disk_read_bytes.isna() & runs.disk_written_bytes.isna(), "disk_bytes"] = np.nan
    recorded = [h for h in _HARDWARE if runs[h[0]].notna().any()]
    if not recorded:
        raise NoFigure("no hardware indicator was recorded during the runs (no host or GPU exporter series)")
    scenarios = _scenarios(runs)
    fig = _figure(11, 3.2 * ((len(recorded) + 2) // 3))
    axes = fig.subplots((len(recorded) + 2) // 3, 3, squeeze=False).ravel()
    for ax, (column, title, scale) in zip(axes, recorded):
        groups = [runs[runs.scenario == s][column] * scale for s in scenarios]
        ax.bar(range(len(scenarios)), [g.mean() for g in groups], yerr=[_ci_half(g) for g in groups],
               color="tab:purple", capsize=3)
        ax.set_xticks(range(len(scenarios)), _ticks(scenarios))
        ax.set_title(title, fontsize=10)
    for ax in axes[len(recorded):]:
        ax.set_visible(False)
    return fig


def fig_epoch_temperature(result: CampaignAnalysis):
    """Paper fig. 8 (left): energy per epoch against GPU temperature, with Pearson's r."""
    epochs = ok_windows(result.windows)[lambda w: (w.action == "epoch") & w.energy_wh.notna()]
    if epochs.empty:
        raise NoFigure("no epoch with a wall energy figure (the campaign recorded no epoch events)")
    if not epochs.gpu_temperature_c.notna().any():
        raise NoFigure("no GPU temperature during the epochs (no GPU exporter series)")
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    table = result.correlations.set_index(["scenario", "variant", "x"]) if not result.correlations.empty else None
    for (scenario, variant), group in epochs.groupby(["scenario", "variant"], sort=False):
        label = group_label(scenario, variant)
        if table is not None and (scenario, variant, "gpu_temperature_c") in table.index:
            row = table.loc[(scenario, variant, "gpu_temperature_c")]
            label += f" (r = {row['r']:.2f}, n = {row['n']})" if np.isfinite(row["r"]) else f" ({row['reason']})"
        ax.scatter(group.gpu_temperature_c, group.energy_wh, s=14, label=label)
        both = group[["gpu_temperature_c", "energy_wh"]].dropna()
        if len(both) >= 3 and both.gpu_temperature_c.nunique() > 1:
            slope, intercept = np.polyfit(both.gpu_temperature_c, both.energy_wh, 1)
            xs = np.linspace(both.gpu_temperature_c.min(), both.gpu_temperature_c.max(), 2)
            ax.plot(xs, slope * xs + intercept, linewidth=1)
    ax.set_xlabel("mean GPU temperature in the epoch (°C)")
    ax.set_ylabel("energy per epoch (Wh)")
    ax.legend(fontsize=8)
    return fig


def fig_efficiency(result: CampaignAnalysis):
    """Paper fig. 8 (right): efficiency factor, validation accuracy (and correct classifications) per Wh."""
    runs = _runs(result)
    panels = [(c, t) for c, t in (("efficiency_acc_per_wh", "validation accuracy per Wh"),
                                  ("correct_per_wh", "correct classifications per Wh")) if runs[c].notna().any()]
    if not panels:
        raise NoFigure("no run recorded a validation accuracy or correct classifications with its wall energy")
    fig = _figure(5 * len(panels) + 1, 4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (column, title) in zip(axes, panels):
        scenarios = [s for s in _scenarios(runs) if runs[runs.scenario == s][column].notna().any()]
        groups = [runs[runs.scenario == s][column] for s in scenarios]
        ax.bar(range(len(scenarios)), [g.mean() for g in groups], yerr=[_ci_half(g) for g in groups],
               color="tab:green", capsize=3)
        ax.set_xticks(range(len(scenarios)), _ticks(scenarios))
        ax.set_title(f"{title} (95 % CI)", fontsize=10)
    return fig


def fig_meter_vs_trackers(result: CampaignAnalysis):
    """Paper fig. 9, and beyond: per scenario meter against sensors and CodeCarbon; per run with the fitted line."""
    runs = _runs(result)
    runs = runs[runs.energy_wh.notna()]
    trackers = [(c, t, color) for c, t, color in (("sensors_wh", "sensors (GPU + RAPL)", "tab:orange"),
                                                  ("codecarbon_wh", "CodeCarbon", "tab:green"))
                if runs[c].notna().any()]
    if runs.empty or not trackers:
        raise NoFigure("no run recorded on-board sensor energy (GPU counter, RAPL) or a CodeCarbon estimate")
    scenarios = _scenarios(runs)
    fig = _figure(12, 4.5)
    ax_bars, ax_fit = fig.subplots(1, 2)
    width = 0.8 / (1 + len(trackers))
    x = np.arange(len(scenarios))
    groups = [runs[runs.scenario == s] for s in scenarios]
    ax_bars.bar(x, [g.energy_wh.mean() for g in groups], width, label="power meter", color="tab:blue")
    for k, (column, title, color) in enumerate(trackers, start=1):
        ax_bars.bar(x + k * width, [g[column].mean() for g in groups], width, label=title, color=color)
    ax_bars.set_xticks(x + width * len(trackers) / 2, _ticks(scenarios))
    ax_bars.set_ylabel("energy per run (Wh)")
    ax_bars.legend(fontsize=8)
    top = float(runs.energy_wh.max())
    ax_fit.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="tracker = meter")
    fits = result.sensors.set_index(["scenario", "tracker"]) if not result.sensors.empty else None
    for column, title, color in trackers:
        ax_fit.scatter(runs.energy_wh, runs[column], s=14, color=color, label=title)
        key = ("all", "sensors" if column == "sensors_wh" else "codecarbon")
        if fits is not None and key in fits.index and np.isfinite(fits.loc[key, "slope"]):
            row = fits.loc[key]
            ax_fit.plot([0, top], [row["intercept_wh"], row["slope"] * top + row["intercept_wh"]], color=color,
                        linewidth=1, label=f"fit: {row['slope']:.3f}·meter {row['intercept_wh']:+.4f} Wh "
                                           f"(r² {row['r2']:.3f})")
    ax_fit.set_xlabel("meter energy per run (Wh)")
    ax_fit.set_ylabel("tracker energy per run (Wh)")
    ax_fit.legend(fontsize=8)
    return fig


def _variant_points(result: CampaignAnalysis) -> tuple[pd.DataFrame, str, str, str]:
    """The groups the variant comparison plots (baseline aside, with both means), and its time and energy columns
    and basis (``to target`` or ``per run``)."""
    table = result.variants
    if table.empty:
        return table, "", "", ""
    basis = str(table.basis.iloc[0])
    time, energy = (("time_to_target_s", "energy_to_target_wh") if basis == "to target"
                    else ("duration_s", "energy_wh"))
    points = table[table.scenario != BASELINE_SCENARIO].dropna(subset=[f"{time}_mean", f"{energy}_mean"])
    return points, time, energy, basis


def fig_variants(result: CampaignAnalysis):
    """Energy against time per scenario and variant: means with their 95 % CI on both axes, the Pareto front marked."""
    points, time, energy, basis = _variant_points(result)
    if len(points) < 2:
        raise NoFigure("fewer than two scenarios or variants besides the baseline with energy and time")
    fig = _figure(9, 5.5)
    ax = fig.subplots()
    for _, row in points.iterrows():
        def half(column: str, row: pd.Series = row) -> list[list[float]]:
            mean, low, high = row[f"{column}_mean"], row[f"{column}_ci_low"], row[f"{column}_ci_high"]
            return [[mean - low], [high - mean]] if np.isfinite(low) else [[0.0], [0.0]]

        color = "tab:red" if row.pareto else "tab:grey"
        x, y = row[f"{time}_mean"], row[f"{energy}_mean"]
        ax.errorbar(x, y, xerr=half(time), yerr=half(energy), fmt="none", ecolor=color, alpha=0.45, capsize=3,
                    linewidth=1)
        ax.plot(x, y, "o", color=color, markersize=9 if row.pareto else 6, zorder=3)
        runs = f"{row.n_reached} of {row.n} runs reached it" if basis == "to target" else f"{row.n} runs"
        ax.annotate(f"{group_label(row.scenario, row.variant)}\n{runs}", (x, y), textcoords="offset points",
                    xytext=(8, 8), fontsize=8, bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8,
                                                      "edgecolor": "none"})
    front = points[points.pareto].sort_values(f"{time}_mean")
    ax.plot(front[f"{time}_mean"], front[f"{energy}_mean"], color="tab:red", linestyle="--", linewidth=2,
            zorder=2, label="Pareto front: no other variant is both faster and cheaper")
    ax.plot([], [], "o", color="tab:grey", label="beaten on both time and energy")
    what = "to the target accuracy" if basis == "to target" else "per run"
    ax.set_xlabel(f"time {what} (s)")
    ax.set_ylabel(f"wall energy {what} (Wh)")
    ax.set_title(f"energy against time {what}: mean and 95 % CI over the ok runs", fontsize=10)
    ax.legend(fontsize=8)
    return fig


FIGURES: list[tuple[str, str, Callable]] = [
    ("power_over_time", "Power draw measured by the power meter, per second, per scenario (paper fig. 5)",
     fig_power_over_time),
    ("energy_overview", "Power draw and energy overview: baseline share and induced energy (paper fig. 6)",
     fig_energy_overview),
    ("hardware_usage", "Hardware usage overview (paper fig. 7)", fig_hardware),
    ("epoch_energy_vs_temperature", "Energy per epoch against GPU temperature (paper fig. 8, left)",
     fig_epoch_temperature),
    ("efficiency_factor", "Efficiency factor: useful work per Wh (paper fig. 8, right)", fig_efficiency),
    ("meter_vs_trackers", "Power meter against on-board sensors and CodeCarbon (paper fig. 9)",
     fig_meter_vs_trackers),
]


# --- HTML -----------------------------------------------------------------------------------------
def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (float, np.floating)):
        magnitude = abs(float(value))
        return f"{value:.4g}" if magnitude >= 1e5 or (0 < magnitude < 1e-3) else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def html_table(frame: pd.DataFrame, columns: list[str] | None = None, *, id: str | None = None) -> str:
    columns = [c for c in (columns or list(frame.columns)) if c in frame]
    text_columns = {c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])}
    head = "".join(f'<th class="{"text" if c in text_columns else ""}">{html.escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"text" if c in text_columns else ""}">{html.escape(_fmt(row[c]))}</td>'
                         for c in columns) + "</tr>"
        for row in frame[columns].to_dict(orient="records"))
    attribute = f' id="{id}"' if id else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


SUMMARY_FIGURES = ["duration_s", "energy_wh", "mean_power_w", "induced_wh", "gpu_energy_wh", "cpu_energy_wh",
                   "cpu_utilization", "gpu_utilization", "memory_used_bytes", "gpu_temperature_c",
                   "efficiency_acc_per_wh"]
WINDOW_COLUMNS = ["scenario", "run", "action", "epoch", "status", "start", "duration_s", "energy_wh", "mean_power_w",
                  "induced_wh", "gpu_energy_wh", "cpu_energy_wh", "dram_energy_wh", "cpu_utilization",
                  "gpu_utilization", "gpu_temperature_c", "val_accuracy", "efficiency_acc_per_wh", "coverage",
                  "sensor_coverage", "energy_method", "gpu_energy_method", "outlier", "flagged", "note"]


def _summary_long(result: CampaignAnalysis) -> pd.DataFrame:
    """The summary as one row per scenario, variant, action and figure (mean, sd, CI, median, min, max, Shapiro p)."""
    rows = []
    statistics = ["mean", "std", "ci_low", "ci_high", "median", "min", "max", "shapiro_p"]
    for record in result.summary.to_dict(orient="records"):
        figures = sorted({k.rsplit("_", 1)[0] for k in record if k.endswith("_mean")})
        for figure in figures:
            values = {s: record.get(f"{figure}_{s}") for s in statistics}
            if values["mean"] is None or not np.isfinite(values["mean"]):
                continue
            rows.append({"scenario": record["scenario"], "variant": record["variant"], "action": record["action"],
                         "n": record["n"], "figure": figure, **values})
    return pd.DataFrame(rows)


def write_data(result: CampaignAnalysis, data: Path) -> list[str]:
    data.mkdir(parents=True, exist_ok=True)
    files = {"windows.csv": result.windows, "summary.csv": result.summary, "summary_long.csv": _summary_long(result),
             "tests.csv": result.tests, "variants.csv": result.variants, "correlations.csv": result.correlations,
             "meter_vs_sensors.csv": result.sensors}
    if result.traces is not None:
        files["power_traces.csv"] = result.traces
    for name, frame in files.items():
        write_csv(frame, data / name)
    (data / "analysis.json").write_text(json.dumps(result.to_dict(), indent=1))
    return [*files, "analysis.json"]


def _figures_html(result: CampaignAnalysis, out: Path, progress: Progress | None, prefix: str = "") -> str:
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, (name, caption, draw) in enumerate(FIGURES):
        if progress:
            progress(f"drawing {name.replace('_', ' ')}", k, len(FIGURES))
        try:
            fig = draw(result)
        except NoFigure as reason:
            parts.append(f'<figure><figcaption>{html.escape(caption)}</figcaption>'
                         f'<p class="no-figure">No figure: {html.escape(str(reason))}.</p></figure>')
            continue
        path = figures_dir / f"{prefix}{name}.png"
        fig.savefig(path)
        parts.append(f'<figure id="{name}"><img src="figures/{path.name}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "\n".join(parts)


VARIANT_COLUMNS = ["scenario", "variant", "n", "n_reached", "energy_to_target_wh_mean", "energy_to_target_wh_ci_low",
                   "energy_to_target_wh_ci_high", "time_to_target_s_mean", "time_to_target_s_ci_low",
                   "time_to_target_s_ci_high", "energy_wh_mean", "energy_wh_ci_low", "energy_wh_ci_high",
                   "duration_s_mean", "duration_s_ci_low", "duration_s_ci_high", "pareto"]


def _variants_html(result: CampaignAnalysis, out: Path) -> str:
    """The variant comparison, the experiment's answer where there is one (so first): the energy–time figure with
    its Pareto front, the table, and the tests between the groups on energy and time (to the target where reached);
    nothing where fewer than two scenarios or variants besides the baseline have both."""
    points, time, energy, basis = _variant_points(result)
    if len(points) < 2:
        return ""
    fig_variants(result).savefig(out / "figures" / "variants_pareto.png")
    table = result.variants[result.variants.scenario != BASELINE_SCENARIO]
    columns = [c for c in VARIANT_COLUMNS if c in table and (not c.endswith(("_mean", "_low", "_high"))
                                                              or table[c].notna().any())]
    groups = set(zip(points.scenario, points.variant))
    tests = result.tests
    if not tests.empty:
        between = np.array([(a, va) in groups and (b, vb) in groups
                            for a, va, b, vb in zip(tests.a, tests.variant_a, tests.b, tests.variant_b)], bool)
        tests = tests[tests.figure.isin([time, energy]).to_numpy() & between]
    what = "to the target accuracy" if basis == "to target" else "per run"
    caption = (f"Wall energy against time {what} per scenario and variant: mean and 95 % CI over the ok runs; the "
               "Pareto front (red) holds the variants no other is both faster and cheaper than")
    return ("<h2>Variants compared: energy and time</h2>"
            f'<figure id="variants_pareto"><img src="figures/variants_pareto.png" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}.</figcaption></figure>"
            f"<p>Energy and time {what}: time from the run's start to the end of its first epoch at or above the "
            "target accuracy, and the wall energy over it; <code>n_reached</code> of <code>n</code> ok runs reached "
            f"it.</p>{html_table(table, columns, id='variants')}"
            "<p>Tests between the groups (b against a: Welch's t, Mann–Whitney U, Hedges' g).</p>"
            + (html_table(tests, ["a", "variant_a", "b", "variant_b", "figure", "mean_a", "mean_b", "difference",
                                  "difference_pct", "welch_p", "mannwhitney_p", "hedges_g", "reason"],
                          id="variant-tests") if len(tests) else "<p>No test: too few runs.</p>"))


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
            f'<div id="image-check"></div>{body}'
            f"<footer><p>mltelemetry {__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p></footer>"
            "</body></html>\n")


def _notes(notes: list[str]) -> str:
    if not notes:
        return "<p>None: every figure could be computed.</p>"
    return '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"


def write_report(result: CampaignAnalysis, out: str | Path, progress: Progress | None = None) -> Path:
    """Write the report of one campaign into ``out``; returns the path of its index.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = write_data(result, out / "data")
    figures = _figures_html(result, out, progress)
    runs_and_actions = result.windows[result.windows.action != "epoch"]
    epochs = result.windows[result.windows.action == "epoch"]
    baseline = "none recorded" if result.baseline_power_w is None else f"{result.baseline_power_w:.2f} W"
    if result.baseline.get("runs"):
        drifted = [str(d["run"]) for d in result.baseline.get("drifted", [])]
        baseline += (f" (Σ energy / Σ duration of baseline run(s) {run_ranges(result.baseline['runs'])}"
                     + (f"; run(s) {', '.join(drifted)} drifted more than {result.baseline['margin']:.0%} from the "
                        "first baseline and were left out" if drifted else "") + ")")
    summary = result.summary[["scenario", "variant", "action", "n", "n_flagged"]].copy()
    for figure in SUMMARY_FIGURES:
        if f"{figure}_mean" in result.summary and result.summary[f"{figure}_mean"].notna().any():
            summary[f"{figure} mean"] = result.summary[f"{figure}_mean"]
            summary[f"{figure} sd"] = result.summary[f"{figure}_std"]
    body = f"""
<h1>Efficiency report: campaign {html.escape(result.campaign)}</h1>
<p>Source: {html.escape(result.source)}{f" (host {html.escape(result.host)})" if result.host else ""}{
    f" (hosts {html.escape(', '.join(result.hosts))}: every energy summed over them, each host's share in the data "
    "files' figure[host] columns)" if result.hosts else ""}{
    f"; GPUs {html.escape(', '.join(result.gpus))}: each one's energy, mean power and load in the data files' "
    "figure[gpu] columns (gpu_energy_wh is their sum)" if result.gpus else ""}.
Baseline power: {baseline}. {int((runs_and_actions.action == "run").sum())} runs, {len(epochs)} epochs.
Energy: counters read at each event's edges; the method of every figure is in the tables
(<code>energy_method</code>, <code>gpu_energy_method</code>).</p>
<h2>Notes</h2>{_notes(result.notes)}{_variants_html(result, out)}
<h2>Figures</h2>{figures}
<h2>Per scenario and action</h2>
<p>Mean and standard deviation over the ok windows (unflagged, inside an ok run; <code>n_flagged</code> were left
out); the 95 % CI, median, min, max and Shapiro–Wilk p of every
figure are in <a href="data/summary_long.csv">summary_long.csv</a>.</p>{html_table(summary, id="summary")}
<h2>Scenarios compared (runs)</h2>
<p>Scenario b against scenario a over the ok runs: difference b − a (and in % of a), Welch's t-test, Mann–Whitney U
(two-sided), Cohen's d, Hedges' g and rank-biserial correlation, positive when b is larger.</p>{
    html_table(result.tests, id="tests") if not result.tests.empty
                                  else "<p>Fewer than two scenarios with runs.</p>"}
<h2>Energy per epoch against GPU temperature, loss and accuracy</h2>{
    html_table(result.correlations, id="correlations") if not result.correlations.empty
    else "<p>No epochs in this campaign.</p>"}
<h2>Meter against sensors and trackers</h2>{
    html_table(result.sensors, id="sensors") if not result.sensors.empty
    else "<p>No run recorded sensor energy or a CodeCarbon estimate.</p>"}
<h2>Runs and actions</h2>{html_table(runs_and_actions, WINDOW_COLUMNS, id="windows")}
<h2>Epochs</h2>{html_table(epochs, WINDOW_COLUMNS, id="epochs") if len(epochs) else "<p>None recorded.</p>"}
<h2>Data files</h2><ul>{"".join(f'<li><a href="data/{f}">{f}</a></li>' for f in files)}</ul>
"""
    index = out / "index.html"
    index.write_text(_page(f"mltelemetry report: {result.campaign}", body), encoding="utf-8")
    return index


def fig_comparison(comparison: CampaignComparison):
    """Run energy of each compared scenario pair: every run, and the means with their 95 % CI."""
    if comparison.table.empty:
        raise NoFigure("no scenario pair to compare")
    table = comparison.table
    pairs = list(dict.fromkeys(zip((group_label(s, v) for s, v in zip(table.scenario_a, table.variant_a)),
                                   (group_label(s, v) for s, v in zip(table.scenario_b, table.variant_b)))))
    fig = _figure(4 + 2.5 * len(pairs), 4.5)
    ax = fig.subplots()
    runs_a, runs_b = _runs(comparison.a), _runs(comparison.b)
    for k, (sa, sb) in enumerate(pairs):
        for offset, runs, scenario, color in ((-0.2, runs_a, sa, "tab:blue"), (0.2, runs_b, sb, "tab:orange")):
            values = runs[runs.scenario == scenario].energy_wh.dropna()
            ax.scatter(np.full(len(values), k + offset), values, s=12, color=color, alpha=0.6)
            if len(values):
                ax.errorbar(k + offset, values.mean(), yerr=_ci_half(values), fmt="o", color="black", capsize=4)
    ax.set_xticks(range(len(pairs)), _ticks([sa if sa == sb else f"{sa} / {sb}" for sa, sb in pairs]))
    ax.set_ylabel("energy per run (Wh)")
    ax.set_title(f"{comparison.a.campaign} (blue, left) against {comparison.b.campaign} (orange, right)", fontsize=10)
    return fig


def write_comparison_report(comparison: CampaignComparison, out: str | Path,
                            progress: Progress | None = None) -> Path:
    """The comparison table and figure, with each campaign's own full report in a sub-folder."""
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(parents=True, exist_ok=True)
    links = []
    for side, analysis in (("a", comparison.a), ("b", comparison.b)):
        folder = f"{side}-{''.join(ch if ch.isalnum() or ch in '-_.' else '_' for ch in analysis.campaign)}"
        write_report(analysis, out / folder, progress)
        links.append(f'<li><a href="{folder}/index.html">{side.upper()}: {html.escape(analysis.campaign)}</a></li>')
    write_csv(comparison.table, out / "data" / "comparison.csv")
    try:
        fig_comparison(comparison).savefig(out / "figures" / "comparison.png")
        figure = ('<figure><img src="figures/comparison.png" alt="energy per run, A against B">'
                  "<figcaption>Energy per run: every run and the mean with its 95 % CI</figcaption></figure>")
    except NoFigure as reason:
        figure = f'<p class="no-figure">No figure: {html.escape(str(reason))}.</p>'
    body = f"""
<h1>Campaign {html.escape(comparison.a.campaign)} (A) against {html.escape(comparison.b.campaign)} (B)</h1>
<p>Differences read B − A over the ok runs; Welch's t-test, Mann–Whitney U (two-sided), Cohen's d and Hedges' g
(positive when B is larger), rank-biserial correlation.</p>
<h2>Notes</h2>{_notes(comparison.notes)}
<h2>Figure</h2>{figure}
<h2>Comparison</h2>{html_table(comparison.table, id="comparison")}
<h2>Each campaign</h2><ul>{"".join(links)}</ul>
<h2>Data files</h2><ul><li><a href="data/comparison.csv">comparison.csv</a></li></ul>
"""
    index = out / "index.html"
    index.write_text(_page(f"mltelemetry comparison: {comparison.a.campaign} / {comparison.b.campaign}", body),
                     encoding="utf-8")
    return index
