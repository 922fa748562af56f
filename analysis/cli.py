"""``mltelemetry analyze``: a campaign's figures and statistics as a table, JSON or CSV, and an HTML report.

- ``--campaign X [--source PATH|URL]``: one campaign;
- ``--compare A B`` (or ``A:scenario B:scenario``): two campaigns side by side with the same tests;
- ``--report DIR``: also write the self-contained HTML report with its figures and data files;
- ``--export-oscar DIR`` / ``--import-oscar DIR``: OSCAR's three input files out of, or into, a campaign.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mltelemetry.analysis.campaign import (
    BASELINE_MARGIN,
    BASELINE_SCENARIO,
    CampaignAnalysis,
    analyze_campaign,
    group_label,
)
from mltelemetry.analysis.compare import CampaignComparison, compare_analyses, split_spec
from mltelemetry.analysis.sources import open_source
from mltelemetry.cliutil import one_line_errors
from mltelemetry.errors import MltelemetryError

FORMATS = ("table", "json", "csv")
_TABLE_COLUMNS = ["scenario", "variant", "run", "action", "status", "duration_s", "energy_wh", "mean_power_w",
                  "induced_wh", "gpu_energy_wh", "cpu_energy_wh", "cpu_utilization", "gpu_utilization", "val_accuracy",
                  "efficiency_acc_per_wh", "coverage", "note"]
_ALWAYS = {"scenario", "run", "action", "status", "duration_s", "energy_wh", "mean_power_w", "induced_wh",
           "cpu_utilization", "note"}
_TEXT = {"scenario", "variant", "action", "status", "note"}


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


PLAIN_ROWS = 60


def plain_table(title: str, columns: list[str], cells: list[list[str]], caption: str | None = None) -> str:
    """A table as fixed-width text: text columns left-aligned, numbers right-aligned."""
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if c in _TEXT else v.rjust(w) for c, v, w in zip(columns, values, widths))

    rule = "  ".join("─" * w for w in widths)
    out = [title, rule, line(columns), rule, *(line(row) for row in cells), rule]
    return "\n".join(out + ([caption] if caption else []))


def _p(value: object) -> str:
    """A p-value: 4 decimals, or 2 significant digits below 0.001."""
    if isinstance(value, float) and 0 < value < 1e-3:
        return f"{value:.2g}"
    return _cell(value, 4)


def _digits(column: str) -> int:
    return 4 if column.endswith("_wh") else 2


def render_table(result: CampaignAnalysis, console: Console) -> None:
    baseline = "none in campaign" if result.baseline_power_w is None else f"{result.baseline_power_w:.2f} W"
    rows = result.windows[result.windows.action != "epoch"]
    columns = [c for c in _TABLE_COLUMNS if c in _ALWAYS or (c in rows and rows[c].notna().any() and
                                                             (c != "variant" or rows[c].astype(bool).any()))]
    epochs = int((result.windows.action == "epoch").sum())
    title = f"campaign {result.campaign}: runs and actions (baseline power {baseline})"
    caption = f"{epochs} epoch rows: per-epoch figures in --format json/csv and --report" if epochs else None
    cells = [[_cell(row[c], _digits(c)) for c in columns] for row in rows.to_dict(orient="records")]
    if len(cells) > PLAIN_ROWS:  # rich measures every cell: plain columns keep 100s of rows fast
        console.print(plain_table(title, columns, cells, caption), markup=False, highlight=False, soft_wrap=True)
    else:
        windows = Table(title=title, caption=caption)
        for c in columns:
            windows.add_column(c, justify="left" if c in _TEXT else "right")
        for line in cells:
            windows.add_row(*line)
        console.print(windows)

    summary = Table(title="per scenario and action: mean ± standard deviation over runs [95 % CI]")
    figures = [("duration_s", "duration s", 2), ("energy_wh", "energy Wh", 4), ("mean_power_w", "mean power W", 2),
               ("induced_wh", "induced Wh", 4), ("gpu_energy_wh", "GPU Wh", 4), ("cpu_utilization", "CPU", 2),
               ("gpu_utilization", "GPU load", 2), ("efficiency_acc_per_wh", "val acc/Wh", 3)]
    figures = [f for f in figures if f[0] in ("duration_s", "energy_wh", "mean_power_w", "induced_wh",
                                             "cpu_utilization")
               or (f"{f[0]}_mean" in result.summary and result.summary[f"{f[0]}_mean"].notna().any())]
    for c in ["scenario", "action", "n"] + [f[1] for f in figures]:
        summary.add_column(c)
    for row in result.summary.to_dict(orient="records"):
        def pm(figure: str, digits: int, row: dict = row) -> str:
            text = f"{_cell(row[figure + '_mean'], digits)} ± {_cell(row[figure + '_std'], digits)}"
            if row["n"] >= 2 and figure in ("energy_wh", "induced_wh") and not math.isnan(row[figure + "_ci_low"]):
                text += f" [{_cell(row[figure + '_ci_low'], digits)}, {_cell(row[figure + '_ci_high'], digits)}]"
            return text
        summary.add_row(escape(group_label(row["scenario"], row["variant"])), row["action"], str(row["n"]),
                        *[pm(f, d) for f, _, d in figures])
    console.print(summary)
    render_variants(result, console)

    if not result.tests.empty:
        tests = Table(title="scenarios compared over runs: b against a (diff % of a; Welch's t, Mann–Whitney U, "
                      "Cohen's d)")
        for c in ["a", "b", "figure", "mean a", "mean b", "diff %", "Welch p", "M–W p", "d", "note"]:
            tests.add_column(c)
        for row in result.tests[result.tests.figure.isin(["energy_wh", "induced_wh"])].to_dict(orient="records"):
            tests.add_row(escape(group_label(row["a"], row["variant_a"])),
                          escape(group_label(row["b"], row["variant_b"])),
                          row["figure"], _cell(row["mean_a"], 4), _cell(row["mean_b"], 4),
                          _cell(row["difference_pct"], 1), _p(row["welch_p"]), _p(row["mannwhitney_p"]),
                          _cell(row["cohens_d"], 2), row["reason"])
        console.print(tests)
    if not result.correlations.empty:
        correlations = Table(title="energy per epoch against … (Pearson)")
        for c in ["scenario", "x", "n", "r", "p", "note"]:
            correlations.add_column(c)
        for row in result.correlations.to_dict(orient="records"):
            correlations.add_row(escape(group_label(row["scenario"], row["variant"])), row["x"], str(row["n"]),
                                 _cell(row["r"], 3), _p(row["p"]), row["reason"])
        console.print(correlations)
    if not result.sensors.empty:
        sensors = Table(title="meter against sensors (GPU + RAPL) and CodeCarbon: fraction of wall energy seen")
        for c in ["scenario", "tracker", "n", "ratio mean ± sd", "slope", "intercept Wh", "r²", "note"]:
            sensors.add_column(c)
        for row in result.sensors.to_dict(orient="records"):
            sensors.add_row(row["scenario"], row["tracker"], str(row["n"]),
                            f"{_cell(row['ratio_mean'], 3)} ± {_cell(row['ratio_std'], 3)}", _cell(row["slope"], 3),
                            _cell(row["intercept_wh"], 4), _cell(row["r2"], 3), row["reason"])
        console.print(sensors)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


def render_variants(result: CampaignAnalysis, console: Console) -> None:
    """Energy and time per scenario and variant (to the target accuracy where reached), the Pareto front starred;
    only where there are at least two groups besides the baseline."""
    table = result.variants
    if table.empty or (table.scenario != BASELINE_SCENARIO).sum() < 2:
        return
    to_target = str(table.basis.iloc[0]) == "to target"
    time, energy = ("time_to_target_s", "energy_to_target_wh") if to_target else ("duration_s", "energy_wh")
    out = Table(title=f"variants: wall energy and time {'to the target accuracy' if to_target else 'per run'}, "
                      "mean [95 % CI] over ok runs; * = on the Pareto front (no other is both faster and cheaper)")
    for c in ["", "scenario", "n", "reached", "energy Wh", "time s"]:
        out.add_column(c)
    for row in table[table.scenario != BASELINE_SCENARIO].to_dict(orient="records"):
        def ci(figure: str, digits: int, row: dict = row) -> str:
            text = _cell(row[f"{figure}_mean"], digits)
            if not math.isnan(row[f"{figure}_ci_low"]):
                text += f" [{_cell(row[f'{figure}_ci_low'], digits)}, {_cell(row[f'{figure}_ci_high'], digits)}]"
            return text
        out.add_row("*" if row["pareto"] else "", escape(group_label(row["scenario"], row["variant"])), str(row["n"]),
                    str(row["n_reached"]), ci(energy, 4), ci(time, 1))
    console.print(out)


def render_comparison(comparison: CampaignComparison, console: Console) -> None:
    table = Table(title=f"{comparison.a.campaign} (A) against {comparison.b.campaign} (B): ok runs; "
                  "difference = B − A")
    for c in ["scenario A", "scenario B", "figure", "A mean ± sd (n)", "B mean ± sd (n)", "diff %", "Welch p",
              "M–W p", "Hedges g", "note"]:
        table.add_column(c)
    for row in comparison.table.to_dict(orient="records"):
        digits = _digits(row["figure"])
        table.add_row(escape(group_label(row["scenario_a"], row["variant_a"])),
                      escape(group_label(row["scenario_b"], row["variant_b"])), row["figure"],
                      f"{_cell(row['mean_a'], digits)} ± {_cell(row['std_a'], digits)} ({row['n_a']})",
                      f"{_cell(row['mean_b'], digits)} ± {_cell(row['std_b'], digits)} ({row['n_b']})",
                      _cell(row["difference_pct"], 1), _p(row["welch_p"]), _p(row["mannwhitney_p"]),
                      _cell(row["hedges_g"], 2), row["reason"])
    console.print(table)
    for note in comparison.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


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
    out = io.StringIO()
    pd.concat([result.windows.assign(statistic=""), *summary_rows], ignore_index=True).to_csv(out, index=False)
    return out.getvalue()


def parse_duration_s(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``31d``, ``2w`` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    text = text.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise MltelemetryError(f"--lookback wants a duration such as 12h or 31d, not {text!r}") from None


@contextmanager
def progress_callback(console: Console) -> Iterator[Callable[[str, float, float], None]]:
    """A rich progress bar on ``console`` (stderr) fed by the analysis; silent where stderr is no terminal."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("analysing", total=1)

        def update(what: str, done: float, total: float) -> None:
            progress.update(task, description=what, completed=done, total=total)

        yield update


def print_analysis(result: CampaignAnalysis, format: str) -> None:
    """The analysis on stdout as ``format`` (table, json or csv)."""
    if format == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif format == "csv":
        typer.echo(render_csv(result), nl=False)
    else:
        render_table(result, Console(width=200))


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
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    host: Annotated[Optional[str], typer.Option(help="Only this host's series (default: all).")] = None,  # noqa: UP045
    report: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Also write an HTML report with figures and data files into this directory.")] = None,
    compare: Annotated[Optional[tuple[str, str]], typer.Option(  # noqa: UP045
        help="Two campaigns side by side: A B, or A:SCENARIO B:SCENARIO.")] = None,
    lookback: Annotated[str, typer.Option(
        help="How far back a Prometheus-compatible source looks for the campaign's events.")] = "31d",
    export_oscar: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Write the campaign as OSCAR's three input files into this directory.")] = None,
    import_oscar: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="First import OSCAR's input files from this directory into the store --source as --campaign.")] = None,
    baseline_margin: Annotated[float, typer.Option(
        min=0.0, callback=_not_nan,
        help="Flag 'baseline' runs whose mean power lies further than this fraction from the first baseline's and "
             "leave them out of the baseline power (inf: no check).")] = BASELINE_MARGIN,
) -> None:
    """Energy per run, action and epoch (counters at the event edges), baseline-adjusted, with statistics."""
    if format not in FORMATS:
        raise MltelemetryError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if compare and compare[0] is not None:
        if campaign or export_oscar or import_oscar:
            raise MltelemetryError("--compare takes the two campaigns itself: leave out --campaign and the OSCAR "
                                   "options")
    elif not campaign:
        raise MltelemetryError("say which campaign: --campaign X (or --compare A B)")
    stderr = Console(stderr=True)
    if import_oscar:
        from mltelemetry.analysis.oscar import import_oscar as do_import

        count = do_import(import_oscar, source, campaign, host or "oscar")
        stderr.print(f"imported {count} events of OSCAR input {import_oscar} into {source} as campaign {campaign}",
                     soft_wrap=True, highlight=False)
    opened = open_source(source, lookback_s=parse_duration_s(lookback))
    try:
        with progress_callback(stderr) as progress:
            if compare and compare[0] is not None:
                (ca, sa), (cb, sb) = split_spec(compare[0]), split_spec(compare[1])
                a, b = (analyze_campaign(opened, c, host, progress=progress, traces=bool(report),
                                         baseline_margin=baseline_margin) for c in (ca, cb))
                comparison = compare_analyses(a, b, sa, sb)
                result = None
            else:
                result = analyze_campaign(opened, campaign, host, progress=progress, traces=bool(report),
                                          baseline_margin=baseline_margin)
                comparison = None
            if export_oscar and result is not None:
                from mltelemetry.analysis.oscar import export_oscar as do_export

                folders = do_export(opened, result, export_oscar, host)
                stderr.print(f"OSCAR input files written to {', '.join(str(f) for f in folders)}", soft_wrap=True,
                             highlight=False)
    finally:
        opened.close()
    if report:
        from mltelemetry.analysis.report import write_comparison_report, write_report

        with progress_callback(stderr) as progress:
            index = (write_report(result, report, progress=progress) if result is not None
                     else write_comparison_report(comparison, report, progress=progress))
        stderr.print(f"report written to {index}", soft_wrap=True, highlight=False)
    if comparison is not None:
        if format == "json":
            typer.echo(json.dumps(comparison.to_dict(), indent=2))
        elif format == "csv":
            typer.echo(comparison.table.to_csv(index=False), nl=False)
        else:
            render_comparison(comparison, Console(width=200))
        return
    print_analysis(result, format)
