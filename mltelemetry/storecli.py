"""``mltelemetry store info PATH`` and ``mltelemetry campaign list``: what a store (or any source) holds."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mltelemetry.cliutil import OneLineErrorsGroup, one_line_errors
from mltelemetry.schema import Event
from mltelemetry.store import Store
from mltelemetry.tables import print_table

app = typer.Typer(cls=OneLineErrorsGroup, no_args_is_help=True)

SourceOption = Annotated[str, typer.Option(
    help="Embedded store file, a Prometheus-compatible API URL or influxdb+http://HOST:8086/DATABASE.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _time(ts_ns: int | None) -> str:
    if ts_ns is None:
        return "–"
    return datetime.fromtimestamp(ts_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _span(seconds: float) -> str:
    """A duration for people: 45 s, 12 min, 3.5 h, 2.1 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def campaign_rows(events: list[Event]) -> list[dict]:
    """Per campaign (in start order): scenarios, runs ok / not ok, first start, last end, span in seconds."""
    by_campaign: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_campaign[e.campaign].append(e)
    rows = []
    for name, group in by_campaign.items():
        runs = [e for e in group if e.action == "run"]
        start, end = min(e.start_ns for e in group), max(e.end_ns for e in group)
        rows.append({"campaign": name, "scenarios": list(dict.fromkeys(e.scenario for e in runs or group)),
                     "runs_ok": sum(e.status == "ok" for e in runs), "runs_not_ok": sum(e.status != "ok" for e in runs),
                     "events": len(group), "start": _time(start), "end": _time(end), "span_s": (end - start) / 1e9})
    return sorted(rows, key=lambda r: r["start"])


def print_campaigns(rows: list[dict], console: Console, title: str) -> None:
    columns = ["campaign", "scenarios", "runs ok", "not ok", "start (UTC)", "span"]
    cells = [[r["campaign"], ", ".join(r["scenarios"]), str(r["runs_ok"]), str(r["runs_not_ok"]), r["start"],
              _span(r["span_s"])] for r in rows]
    print_table(console, title, columns, cells, left={"campaign", "scenarios", "start (UTC)"})


@app.command("info")
@one_line_errors
def info_command(path: Annotated[Path, typer.Argument(help="The store file.")], as_json: AsJson = False) -> None:
    """Size, campaigns, metrics and time span of an embedded store file."""
    with Store(path, create=False) as store:
        series = store.series_spans()
        campaigns = campaign_rows(store.events())
    size = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    metrics: dict[str, dict] = {}
    for metric, _labels, n, first, last in series:
        m = metrics.setdefault(metric, {"metric": metric, "series": 0, "samples": 0, "first": None, "last": None})
        m["series"] += 1
        m["samples"] += n
        if first is not None:
            m["first"] = first if m["first"] is None else min(m["first"], first)
            m["last"] = last if m["last"] is None else max(m["last"], last)
    firsts = [m["first"] for m in metrics.values() if m["first"] is not None]
    lasts = [m["last"] for m in metrics.values() if m["last"] is not None]
    first, last = (min(firsts), max(lasts)) if firsts else (None, None)
    info = {"path": str(path), "bytes": size, "wal_bytes": wal_size, "series": len(series),
            "samples": sum(m["samples"] for m in metrics.values()), "first": _time(first), "last": _time(last),
            "span_s": (last - first) / 1e9 if first is not None else 0.0, "campaigns": campaigns,
            "metrics": [{**m, "first": _time(m["first"]), "last": _time(m["last"])}
                        for m in sorted(metrics.values(), key=lambda m: m["metric"])]}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console = Console()
    console.print(f"{path}: {size / 2**20:.1f} MiB (+ {wal_size / 2**20:.1f} MiB write-ahead log), "
                  f"{info['series']} series of {len(metrics)} metrics, {info['samples']:,} samples "
                  f"from {info['first']} to {info['last']} UTC ({_span(info['span_s'])})",
                  markup=False, highlight=False, soft_wrap=True)
    console.print()
    if campaigns:
        print_campaigns(campaigns, console, f"campaigns ({len(campaigns)})")
    else:
        console.print("no campaigns (no events) yet", markup=False)
    print_table(console, "metrics", ["metric", "series", "samples", "first (UTC)", "last (UTC)"],
                [[m["metric"], str(m["series"]), f"{m['samples']:,}", m["first"], m["last"]] for m in info["metrics"]],
                left={"metric", "first (UTC)", "last (UTC)"})


@one_line_errors
def campaign_list_command(source: SourceOption = "mltelemetry.db", as_json: AsJson = False) -> None:
    """The campaigns a store (or a Prometheus-compatible or InfluxDB source) holds, with their runs and span."""
    from mltelemetry.analysis.sources import open_source

    opened = open_source(source)
    try:
        rows = campaign_rows([e for name in opened.campaigns() for e in opened.events(name)])
    finally:
        opened.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo(f"no campaigns in {source}")
    else:
        print_campaigns(rows, Console(), f"campaigns in {source}")
