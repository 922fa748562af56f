"""``mltelemetry analyze``: a campaign's figures and statistics as a table, JSON or CSV, and an HTML report.

- ``--campaign X [--source PATH|URL]``: one campaign;
- ``--compare A B`` (or ``A:scenario B:scenario``): two campaigns side by side with the same tests;
- ``--report DIR``: also write the self-contained HTML report with its figures and data files;
- ``--export-oscar DIR`` / ``--import-oscar DIR``: a campaign out as OSCAR measurement folders, or such folders in
  (``--baseline``, ``--timezone``), with OSCAR's own figures beside ours (``--oscar-figures``).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mltelemetry.analysis.campaign import CampaignAnalysis, analyze_campaign
from mltelemetry.analysis.compare import CampaignComparison, compare_analyses, split_spec
from mltelemetry.analysis.figures.baseline import BASELINE_MARGIN, BASELINE_SCENARIO
from mltelemetry.analysis.figures.gpus import gpu_column
from mltelemetry.analysis.figures.hosts import host_column
from mltelemetry.analysis.sources import SENSOR_EXPORTERS, open_source
from mltelemetry.analysis.windows import group_label
from mltelemetry.cliutil import DURATION_UNITS, one_line_errors, parse_duration_s, writable_folder
from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.safety import write_csv
from mltelemetry.tables import print_table


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


FORMATS = tuple(f.value for f in Format)
_TABLE_COLUMNS = ["scenario", "variant", "run", "action", "status", "duration_s", "energy_wh", "mean_power_w",
                  "induced_wh", "gpu_energy_wh", "cpu_energy_wh", "cpu_utilization", "gpu_utilization", "val_accuracy",
                  "efficiency_acc_per_wh", "coverage", "note"]
_ALWAYS = {"scenario", "run", "action", "status", "duration_s", "energy_wh", "mean_power_w", "induced_wh",
           "cpu_utilization", "note"}
_TEXT = {"scenario", "variant", "action", "status", "note", "a", "b", "figure", "tracker", "x", "scenario A",
         "scenario B"}


def _cell(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if abs(value) >= 1e6:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _decimals(value: float, significant: int = 4) -> int:
    """Decimals that show ``value`` to about ``significant`` digits (0 to 6), never in exponent form."""
    if not math.isfinite(value) or value == 0:
        return 2
    return min(6, max(0, significant - 1 - math.floor(math.log10(abs(value)))))


def _p(value: object) -> str:
    """A p-value: 4 decimals, or 2 significant digits below 0.001."""
    if isinstance(value, float) and 0 < value < 1e-3:
        return f"{value:.2g}"
    return _cell(value, 4)


def _digits(column: str) -> int:
    return 4 if column.endswith("_wh") else 2


_FIXED_DECIMALS = {"cpu_utilization": 2, "gpu_utilization": 2, "val_accuracy": 2, "duration_s": 1,
                   "mean_power_w": 1}


def _row_decimals(row: dict, figure: str) -> int:
    """Decimals of a figure in a summary row: fixed for ratios, seconds and watts; else about 4 significant
    digits, induced energy taking those of the energy (a baseline's induced energy is about 0)."""
    if figure in _FIXED_DECIMALS:
        return _FIXED_DECIMALS[figure]
    like = "energy_wh" if figure == "induced_wh" else figure
    return _decimals(row.get(f"{like}_mean", math.nan))


def _mean_pm(row: dict, figure: str, spread: str) -> str:
    """``mean ± spread`` of a summary row, both to the same decimals; spread is ``std`` or ``ci`` (95 % CI
    half-width); just the mean where there is no spread (one run)."""
    mean = row.get(f"{figure}_mean", math.nan)
    if mean is None or not math.isfinite(mean):
        return "–"
    digits = _row_decimals(row, figure)
    half = row.get(f"{figure}_std") if spread == "std" else (row.get(f"{figure}_ci_high", math.nan) - mean)
    if half is None or not math.isfinite(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


# Per-scenario summary columns: heading, figure, how it is shown (mean ± sd, mean ± 95 % CI, or the mean); all of
# them together fit 100 columns (accuracy per Wh is in --detail and the report).
_SUMMARY_FIGURES = [("time s", "duration_s", "mean"), ("energy Wh ± sd", "energy_wh", "std"),
                    ("power W", "mean_power_w", "mean"), ("induced Wh ± CI", "induced_wh", "ci"),
                    ("CPU", "cpu_utilization", "mean"), ("GPU Wh", "gpu_energy_wh", "mean"),
                    ("GPU", "gpu_utilization", "mean"), ("val acc", "val_accuracy", "mean")]
_SUMMARY_ALWAYS = {"duration_s", "energy_wh", "mean_power_w", "induced_wh"}


def _summary_cell(row: dict, figure: str, how: str) -> str:
    if how != "mean":
        return _mean_pm(row, figure, how)
    return _cell(row.get(f"{figure}_mean", math.nan), _row_decimals(row, figure))


def scenario_summary(result: CampaignAnalysis, action: str = "run") -> tuple[list[str], list[list[str]]]:
    """The per-scenario table a newcomer wants first: one row per scenario (its ``action`` windows, runs by
    default), figures that were recorded only."""
    rows = result.summary[result.summary.action == action].to_dict(orient="records")
    figures = [f for f in _SUMMARY_FIGURES if f[1] in _SUMMARY_ALWAYS
               or any(math.isfinite(r.get(f"{f[1]}_mean", math.nan)) for r in rows)]
    columns = ["scenario", "n", *(f[0] for f in figures)]
    cells = [[group_label(r["scenario"], r["variant"]), str(r["n"]),
              *(_summary_cell(r, figure, how) for _, figure, how in figures)] for r in rows]
    return columns, cells


def _windows_table(result: CampaignAnalysis, console: Console) -> None:
    rows = result.windows[result.windows.action != "epoch"]
    columns = [c for c in _TABLE_COLUMNS if c in _ALWAYS or (c in rows and rows[c].notna().any() and
                                                             (c != "variant" or rows[c].astype(bool).any()))]
    epochs = int((result.windows.action == "epoch").sum())
    caption = f"{epochs} epoch rows: per-epoch figures in --format json/csv and --report" if epochs else None
    cells = [[_cell(row[c], _digits(c)) for c in columns] for row in rows.to_dict(orient="records")]
    print_table(console, f"campaign {result.campaign}: every run and action", columns, cells, _TEXT, caption)


def _action_summary(result: CampaignAnalysis, console: Console) -> None:
    figures = [("duration_s", "duration s"), ("energy_wh", "energy Wh"), ("mean_power_w", "mean power W"),
               ("induced_wh", "induced Wh"), ("gpu_energy_wh", "GPU Wh"), ("cpu_utilization", "CPU"),
               ("gpu_utilization", "GPU load"), ("efficiency_acc_per_wh", "val acc/Wh")]
    figures = [f for f in figures if f[0] in _SUMMARY_ALWAYS
               or (f"{f[0]}_mean" in result.summary and result.summary[f"{f[0]}_mean"].notna().any())]
    cells = [[group_label(row["scenario"], row["variant"]), row["action"], str(row["n"]),
              *(_mean_pm(row, f, "std") for f, _ in figures)]
             for row in result.summary.to_dict(orient="records")]
    print_table(console, "per scenario and action: mean ± standard deviation over runs",
                ["scenario", "action", "n", *(h for _, h in figures)], cells, _TEXT)


def _wrapped(text: str, indent: str) -> str:
    """Text folded to the 100 columns the tables keep to (a long line would wrap or run off on its own)."""
    return textwrap.fill(text, width=100, subsequent_indent=indent, break_on_hyphens=False)


def _reasons(console: Console, reasons: list[tuple[str, str]]) -> None:
    """Why a table's row has no number, once per reason with the rows it holds for (keeps tables narrow)."""
    rows: dict[str, list[str]] = {}
    for row, reason in reasons:
        if reason:
            rows.setdefault(reason, []).append(row)
    for reason, which in rows.items():
        console.print(_wrapped(f"  – {reason}: {', '.join(which)}", "    "), markup=False, highlight=False,
                      soft_wrap=True)


def render_table(result: CampaignAnalysis, console: Console, detail: bool = False) -> None:
    """The analysis for people: the per-scenario summary first (within 100 columns), the scenario tests and the
    meter against the sensors; with ``detail`` also every action's summary, every run and action, and the
    correlations per epoch."""
    baseline = ("none in the campaign: no induced energy" if result.baseline_power_w is None
                else f"{result.baseline_power_w:.2f} W")
    hosts = f" (hosts {', '.join(result.hosts)}, summed)" if result.hosts else ""
    console.print(f"campaign {result.campaign}{hosts}: baseline power {baseline}", markup=False, highlight=False)
    columns, cells = scenario_summary(result)
    by_action = not cells and not result.summary.empty  # windows of your own but no run windows around them
    if by_action:
        _action_summary(result, console)
    else:
        print_table(console, "per scenario, mean of its ok runs (induced: above the baseline power; CI: 95 %)",
                    columns, cells, _TEXT)
    console.print()
    render_hosts(result, console)
    render_gpus(result, console)
    render_variants(result, console)

    if not result.tests.empty:
        figure = "induced_wh" if result.baseline_power_w is not None else "energy_wh"
        tests = result.tests[result.tests.figure == figure].to_dict(orient="records")
        print_table(console, f"{figure} of b against a over runs (diff % of a; Welch's t, Mann–Whitney U, "
                    "Cohen's d)", ["a", "b", "mean a", "mean b", "diff %", "Welch p", "M–W p", "d"],
                    [[group_label(r["a"], r["variant_a"]), group_label(r["b"], r["variant_b"]),
                      _cell(r["mean_a"], _decimals(max(abs(r["mean_a"]), abs(r["mean_b"])))),
                      _cell(r["mean_b"], _decimals(max(abs(r["mean_a"]), abs(r["mean_b"])))),
                      _cell(r["difference_pct"], 1), _p(r["welch_p"]),
                      _p(r["mannwhitney_p"]), _cell(r["cohens_d"], 2)] for r in tests], _TEXT)
        _reasons(console, [(f"{group_label(r['a'], r['variant_a'])}/{group_label(r['b'], r['variant_b'])}",
                            r["reason"]) for r in tests])
        console.print()
    if not result.sensors.empty:
        sensors = result.sensors.to_dict(orient="records")
        print_table(console, "meter against on-board sensors (GPU + RAPL) and CodeCarbon: share of wall energy",
                    ["scenario", "tracker", "n", "share ± sd", "slope", "intercept Wh", "r²"],
                    [[r["scenario"], r["tracker"], str(r["n"]), f"{_cell(r['ratio_mean'], 3)} ± "
                      f"{_cell(r['ratio_std'], 3)}", _cell(r["slope"], 3), _cell(r["intercept_wh"], 4),
                      _cell(r["r2"], 3)] for r in sensors], _TEXT)
        _reasons(console, [(f"{r['scenario']} {r['tracker']}", r["reason"]) for r in sensors])
        console.print()
    if detail:
        if not by_action:
            _action_summary(result, console)
            console.print()
        _windows_table(result, console)
        console.print()
        if not result.correlations.empty:
            print_table(console, "energy per epoch against … (Pearson)", ["scenario", "x", "n", "r", "p", "note"],
                        [[group_label(r["scenario"], r["variant"]), r["x"], str(r["n"]), _cell(r["r"], 3), _p(r["p"]),
                          r["reason"]] for r in result.correlations.to_dict(orient="records")], _TEXT)
            console.print()
    for note in result.notes:
        console.print(_wrapped(f"note: {note}", "      "), markup=False, highlight=False, soft_wrap=True)
    if not detail:
        console.print("every action, run and epoch: --detail, --format json/csv or --report DIR", markup=False,
                      highlight=False, style="dim")


def render_hosts(result: CampaignAnalysis, console: Console) -> None:
    """Each host's share of the summed figures (several hosts analysed as one): mean of the ok runs."""
    if not result.hosts:
        return
    shares = [("energy Wh", "energy_wh"), ("power W", "mean_power_w"), ("induced Wh", "induced_wh"),
              ("GPU Wh", "gpu_energy_wh"), ("CPU Wh", "cpu_energy_wh")]
    rows = result.summary[result.summary.action == "run"].to_dict(orient="records")
    shown = [(heading, figure) for heading, figure in shares
             if any(math.isfinite(r.get(f"{host_column(figure, h)}_mean", math.nan)) for r in rows
                    for h in result.hosts)]
    host_power = result.baseline.get("host_power_w") or {}
    cells = [[group_label(r["scenario"], r["variant"]), h, str(r["n"]),
              *(_cell(r.get(f"{host_column(figure, h)}_mean", math.nan), _row_decimals(r, figure))
                for _, figure in shown)]
             for r in rows for h in result.hosts]
    baselines = ", ".join(f"{h} {p:.2f} W" for h, p in host_power.items() if p is not None)
    print_table(console, "per host, mean of the scenario's ok runs (the summary above is their sum)",
                ["scenario", "host", "n", *(heading for heading, _ in shown)], cells, _TEXT | {"host"},
                caption=f"baseline power per host: {baselines}" if baselines else None)
    console.print()


def render_gpus(result: CampaignAnalysis, console: Console) -> None:
    """Each GPU's energy, mean power and load (several GPUs): mean of the scenario's ok runs."""
    if not result.gpus:
        return
    figures = [("GPU Wh", "gpu_energy_wh"), ("power W", "gpu_mean_power_w"), ("load", "gpu_utilization")]
    rows = result.summary[result.summary.action == "run"].to_dict(orient="records")
    cells = [[group_label(r["scenario"], r["variant"]), gpu, str(r["n"]),
              *(_cell(r.get(f"{gpu_column(figure, gpu)}_mean", math.nan), _row_decimals(r, figure))
                for _, figure in figures)]
             for r in rows for gpu in result.gpus]
    print_table(console, "per GPU, mean of the scenario's ok runs (GPU Wh above is their sum, load their mean)",
                ["scenario", "GPU", "n", *(heading for heading, _ in figures)], cells, _TEXT | {"GPU"})
    console.print()


def render_variants(result: CampaignAnalysis, console: Console) -> None:
    """Energy and time per scenario and variant (to the target accuracy where reached), the Pareto front starred;
    only where there are at least two groups besides the baseline."""
    table = result.variants
    if table.empty or (table.scenario != BASELINE_SCENARIO).sum() < 2 or not table.variant.astype(bool).any():
        return  # scenarios alone are compared in the summary and the tests
    to_target = str(table.basis.iloc[0]) == "to target"
    time, energy = ("time_to_target_s", "energy_to_target_wh") if to_target else ("duration_s", "energy_wh")

    def ci(row: dict, figure: str, digits: int) -> str:
        text = _cell(row[f"{figure}_mean"], digits)
        if not math.isnan(row[f"{figure}_ci_low"]):
            text += f" [{_cell(row[f'{figure}_ci_low'], digits)}, {_cell(row[f'{figure}_ci_high'], digits)}]"
        return text

    cells = [["*" if row["pareto"] else "", group_label(row["scenario"], row["variant"]), str(row["n"]),
              str(row["n_reached"]), ci(row, energy, 4), ci(row, time, 1)]
             for row in table[table.scenario != BASELINE_SCENARIO].to_dict(orient="records")]
    print_table(console, f"variants: wall energy and time {'to the target accuracy' if to_target else 'per run'}, "
                "mean [95 % CI] over ok runs", ["", "scenario", "n", "reached", "energy Wh", "time s"], cells,
                {"", "scenario"}, caption="* on the Pareto front: no other group is both faster and cheaper")
    console.print()


def render_oscar(figures: pd.DataFrame, console: Console) -> None:
    """OSCAR's report figures per scenario beside ours, each column labelled with its definition."""
    from mltelemetry.analysis.oscar import OSCAR_LABELS

    columns = ["scenario", "runs", *OSCAR_LABELS]
    cells = [[str(row[c]) if c in ("scenario", "runs") else _cell(row[c], _digits(c)) for c in columns]
             for row in figures.to_dict(orient="records")]
    print_table(console, "OSCAR's figures beside mltelemetry's (ok runs, mean over runs)", columns, cells,
                {"scenario"}, caption="\n".join(f"{k}: {v}" for k, v in OSCAR_LABELS.items()))


def render_comparison(comparison: CampaignComparison, console: Console) -> None:
    cells = []
    for row in comparison.table.to_dict(orient="records"):
        digits = _digits(row["figure"])
        cells.append([group_label(row["scenario_a"], row["variant_a"]),
                      group_label(row["scenario_b"], row["variant_b"]), row["figure"],
                      f"{_cell(row['mean_a'], digits)} ± {_cell(row['std_a'], digits)} ({row['n_a']})",
                      f"{_cell(row['mean_b'], digits)} ± {_cell(row['std_b'], digits)} ({row['n_b']})",
                      _cell(row["difference_pct"], 1), _p(row["welch_p"]), _p(row["mannwhitney_p"]),
                      _cell(row["hedges_g"], 2), row["reason"]])
    print_table(console, f"{comparison.a.campaign} (A) against {comparison.b.campaign} (B): ok runs; "
                "difference = B − A", ["scenario A", "scenario B", "figure", "A mean ± sd (n)", "B mean ± sd (n)",
                                       "diff %", "Welch p", "M–W p", "Hedges g", "note"], cells, _TEXT)
    for note in comparison.notes:
        console.print(_wrapped(f"note: {note}", "      "), markup=False, highlight=False, soft_wrap=True)


def render_csv(result: CampaignAnalysis) -> str:
    """One CSV: the window rows, then the summary rows (``statistic`` says mean or std).

    The report directory (``--report``) holds every table in full, one CSV each.
    """
    summary_rows = []
    for statistic in ("mean", "std"):
        part = result.summary[["scenario", "variant", "action", "n"]].copy()
        part["statistic"] = statistic
        for column in result.summary.columns:
            if column.endswith(f"_{statistic}"):
                part[column.removesuffix(f"_{statistic}")] = result.summary[column]
        summary_rows.append(part)
    return write_csv(pd.concat([result.windows.assign(statistic=""), *summary_rows], ignore_index=True))


@contextmanager
def progress_callback(console: Console) -> Iterator[Callable[[str, float, float], None]]:
    """A rich progress bar on ``console`` (stderr) fed by the analysis; silent where stderr is no terminal."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("analysing", total=1)

        def update(what: str, done: float, total: float) -> None:
            progress.update(task, description=what, completed=done, total=total)

        yield update


def print_analysis(result: CampaignAnalysis, format: str, detail: bool = False) -> None:
    """The analysis on stdout as ``format`` (table, json or csv); tables with ``detail``: every run and action."""
    if format == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif format == "csv":
        typer.echo(render_csv(result), nl=False)
    else:
        render_table(result, Console(), detail)


def _two_campaigns(value: tuple[str, str] | None) -> tuple[str, str] | None:
    """--compare takes the next two words whatever they are: an option among them is a mistake to name."""
    if value and value[0] is not None:
        for word in value:
            if word.startswith("-"):
                raise typer.BadParameter(f"wants two campaign names (A B, or A:SCENARIO B:SCENARIO) before any "
                                         f"other option, got {word!r} as one of them")
    return value


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise typer.BadParameter("must be a fraction such as 0.05 (inf: no check), not nan")
    return value


@one_line_errors
def analyze_command(
    campaign: Annotated[Optional[str], typer.Option(help="Campaign to analyse.")] = None,  # noqa: UP045
    source: Annotated[str, typer.Option(
        help="Embedded store file, a Prometheus-compatible API URL (http://HOST:9090; VictoriaMetrics, Thanos, "
             "Mimir) or influxdb+http://HOST:8086/DATABASE (InfluxQL; token from INFLUX_TOKEN).")] = "mltelemetry.db",
    format: Annotated[Format, typer.Option("--format", help="Output on stdout.")] = Format.table,
    detail: Annotated[bool, typer.Option(help="Tables: also every action's summary, every run and action, and "
                                              "the correlations per epoch.")] = False,
    host: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        help="Only this host's series; repeated (--host a --host b): those hosts analysed as one, energy summed "
             "over them with each host's share in energy_wh[HOST] columns (default: the one host recorded).")] = None,
    all_hosts: Annotated[bool, typer.Option(
        "--all-hosts", help="Every host with series during the campaign, analysed as one (as if each were named "
                            "with --host).")] = False,
    sensor_exporters: Annotated[str, typer.Option(
        help="GPU and RAPL energy from: auto (ours, else dcgm-exporter's and node_exporter's), mltelemetry (ours "
             "only) or standard (dcgm-exporter's and node_exporter's only).")] = "auto",
    report: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Also write an HTML report with figures and data files into this directory.")] = None,
    compare: Annotated[Optional[tuple[str, str]], typer.Option(  # noqa: UP045
        callback=_two_campaigns, help="Two campaigns side by side: A B, or A:SCENARIO B:SCENARIO.")] = None,
    lookback: Annotated[str, typer.Option(
        help=f"How far back a Prometheus-compatible source looks for the campaign's events ({DURATION_UNITS})."
        )] = "31d",
    export_oscar: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Write the campaign as OSCAR measurement folders (one per scenario) into this new or empty "
             "directory.")] = None,
    import_oscar: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="First import an OSCAR measurement (a folder per scenario) into the store --source as "
             "--campaign.")] = None,
    baseline: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="With --import-oscar: the scenario folder that is the baseline (default: the one named baseline, any "
             "case).")] = None,
    timezone: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="With --import-oscar/--export-oscar: the time zone of the OSCAR files' local time, e.g. Europe/Berlin "
             "(default: their stamps are stored, and written, as UTC).")] = None,
    oscar_figures: Annotated[bool, typer.Option(
        "--oscar-figures",
        help="Also OSCAR's report figures per scenario beside ours (always with --import-oscar).")] = False,
    baseline_margin: Annotated[float, typer.Option(
        min=0.0, callback=_not_nan,
        help="Flag 'baseline' runs whose mean power lies further than this fraction from the first baseline's and "
             "leave them out of the baseline power (inf: no check).")] = BASELINE_MARGIN,
) -> None:
    """Energy per run, action and epoch (counters at the event edges), baseline-adjusted, with statistics."""
    format = format.value  # type: ignore[assignment]
    if sensor_exporters not in SENSOR_EXPORTERS:
        raise UsageError(f"--sensor-exporters takes {', '.join(SENSOR_EXPORTERS)}, not {sensor_exporters!r}")
    if compare and compare[0] is not None:
        if campaign or export_oscar or import_oscar:
            raise UsageError("--compare takes the two campaigns itself: leave out --campaign and the OSCAR "
                             "options")
    elif not campaign:
        raise UsageError("say which campaign: --campaign X (or --compare A B)")
    if baseline and not import_oscar:
        raise UsageError("--baseline names the baseline folder of --import-oscar: give both")
    if timezone and not (import_oscar or export_oscar):
        raise UsageError("--timezone is the OSCAR files' local time: give it with --import-oscar or --export-oscar")
    if oscar_figures and format == "csv":
        raise UsageError("--oscar-figures shows a table or JSON: use --format table or json")
    if all_hosts and host:
        raise UsageError("--all-hosts takes every host: leave out --host, or name the hosts with --host only")
    hosts = list(dict.fromkeys(host or []))
    one_host = hosts[0] if len(hosts) == 1 else None
    if len(hosts) > 1 or all_hosts:
        if import_oscar or export_oscar or oscar_figures:
            raise UsageError("OSCAR files describe one host: give one --host (or none) with the OSCAR options")
    lookback_s = parse_duration_s(lookback, "--lookback")
    if report is not None and report.exists() and not report.is_dir():  # before the analysis, not after
        raise UsageError(f"--report wants a folder, and {report} is a file")
    if report:
        writable_folder(report, "--report")
    stderr = Console(stderr=True)
    if import_oscar:
        from mltelemetry.analysis.oscar import import_oscar as do_import

        imported = do_import(import_oscar, source, campaign, one_host or campaign, baseline, timezone)
        for line in [imported.summary(), *imported.notes]:
            stderr.print(line, soft_wrap=True, highlight=False, markup=False)
    opened = open_source(source, lookback_s=lookback_s)
    try:
        with progress_callback(stderr) as progress:
            if compare and compare[0] is not None:
                (ca, sa), (cb, sb) = split_spec(compare[0]), split_spec(compare[1])
                a, b = (analyze_campaign(opened, c, hosts or None, progress=progress, traces=bool(report),
                                         sensor_exporters=sensor_exporters, baseline_margin=baseline_margin,
                                         all_hosts=all_hosts)
                        for c in (ca, cb))
                comparison = compare_analyses(a, b, sa, sb)
                result = None
            else:
                result = analyze_campaign(opened, campaign, hosts or None, progress=progress, traces=bool(report),
                                          sensor_exporters=sensor_exporters, baseline_margin=baseline_margin,
                                          all_hosts=all_hosts)
                comparison = None
            if export_oscar and result is not None:
                from mltelemetry.analysis.oscar import export_oscar as do_export

                exported = do_export(opened, result, export_oscar, one_host, timezone)
                for line in [f"OSCAR files written to {', '.join(str(f) for f in exported.folders)}", *exported.notes]:
                    stderr.print(line, soft_wrap=True, highlight=False, markup=False)
            oscar = None
            if result is not None and (oscar_figures or import_oscar):
                from mltelemetry.analysis.oscar import oscar_figures as figures_of

                oscar = figures_of(opened, result, one_host)
    finally:
        opened.close()
    if report:
        from mltelemetry.analysis.report import write_comparison_report, write_report

        with progress_callback(stderr) as progress:
            try:
                index = (write_report(result, report, progress=progress) if result is not None
                         else write_comparison_report(comparison, report, progress=progress))
            except OSError as e:  # no permission, disk full, a file where a folder goes
                raise MltelemetryError(f"cannot write the report into {report}: {e.strerror or e}") from e
        stderr.print(f"report written to {index}", soft_wrap=True, highlight=False)
    if comparison is not None:
        if format == "json":
            typer.echo(json.dumps(comparison.to_dict(), indent=2))
        elif format == "csv":
            typer.echo(write_csv(comparison.table), nl=False)
        else:
            render_comparison(comparison, Console())
        return
    if oscar is not None and format == "json":
        from mltelemetry.analysis.campaign import records
        from mltelemetry.analysis.oscar import OSCAR_LABELS

        typer.echo(json.dumps({**result.to_dict(), "oscar": {"labels": OSCAR_LABELS, "scenarios": records(oscar)}},
                              indent=2))
        return
    print_analysis(result, format, detail)
    if oscar is not None and format == "table":
        render_oscar(oscar, Console())
