"""``mltelemetry analyze``: a campaign's figures as a table, JSON or CSV."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from mltelemetry.analysis.campaign import CampaignAnalysis, analyze_campaign
from mltelemetry.cliutil import one_line_errors
from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store

FORMATS = ("table", "json", "csv")


def _cell(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(result: CampaignAnalysis, console: Console) -> None:
    baseline = "none in campaign" if result.baseline_power_w is None else f"{result.baseline_power_w:.2f} W"
    windows = Table(title=f"campaign {result.campaign}: runs and actions (baseline power {baseline})")
    columns = ["scenario", "run", "action", "status", "duration_s", "energy_wh", "mean_power_w", "induced_wh",
               "cpu_utilization", "note"]
    for c in columns:
        windows.add_column(c, justify="right" if c not in ("scenario", "action", "status", "note") else "left")
    for row in result.windows.to_dict(orient="records"):
        windows.add_row(*[_cell(row[c], 4 if c.endswith("_wh") else 2) for c in columns])
    console.print(windows)

    summary = Table(title="per scenario and action: mean ± standard deviation over runs")
    for c in ["scenario", "action", "n", "duration s", "energy Wh", "mean power W", "induced Wh", "CPU"]:
        summary.add_column(c)
    for row in result.summary.to_dict(orient="records"):
        def pm(figure: str, digits: int, row: dict = row) -> str:
            return f"{_cell(row[figure + '_mean'], digits)} ± {_cell(row[figure + '_std'], digits)}"
        summary.add_row(row["scenario"], row["action"], str(row["n"]), pm("duration_s", 2), pm("energy_wh", 4),
                        pm("mean_power_w", 2), pm("induced_wh", 4), pm("cpu_utilization", 2))
    console.print(summary)


def render_csv(result: CampaignAnalysis) -> str:
    """One CSV: the window rows, then the summary rows (``statistic`` says mean or std)."""
    summary_rows = []
    for statistic in ("mean", "std"):
        part = result.summary[["scenario", "action", "n"]].copy()
        part["statistic"] = statistic
        for column in result.summary.columns:
            if column.endswith(f"_{statistic}"):
                part[column.removesuffix(f"_{statistic}")] = result.summary[column]
        summary_rows.append(part)
    out = io.StringIO()
    pd.concat([result.windows.assign(statistic=""), *summary_rows], ignore_index=True).to_csv(out, index=False)
    return out.getvalue()


@one_line_errors
def analyze_command(
    campaign: Annotated[str, typer.Option(help="Campaign to analyse.")],
    source: Annotated[Path, typer.Option(help="Embedded store file holding the campaign.")] = Path(
        "mltelemetry.db"),
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    host: Annotated[str | None, typer.Option(help="Only this host's series (default: all).")] = None,
) -> None:
    """Energy per run and action (meter counter at the event edges), baseline-adjusted, with statistics."""
    if format not in FORMATS:
        raise MltelemetryError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    with Store(source, create=False) as store:
        result = analyze_campaign(store, campaign, host)
    if format == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif format == "csv":
        typer.echo(render_csv(result), nl=False)
    else:
        render_table(result, Console(width=200))
