"""``mltelemetry campaign run``: the workload generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mltelemetry.cliutil import DEFAULT_HOST, HostLabel, one_line_errors, with_sink_options
from mltelemetry.workload.campaign import CampaignPlan, Order, run_campaign

app = typer.Typer(no_args_is_help=True)


@app.command("run")
@with_sink_options  # --influx-*, --spool-*, --tls-*, --basic-auth-file: the events go live there too
@one_line_errors
def run_command(
    campaign: Annotated[str, typer.Option(help="Campaign name; must be new in the store.")],
    store: Annotated[Path, typer.Option(help="Embedded store file the events go to.")],
    scenario: Annotated[list[str], typer.Option(help="Scenario to run (repeat the option).")] = [  # noqa: B006
        "baseline", "idle", "cpu"],
    runs: Annotated[int, typer.Option(min=1, help="Runs of each scenario.")] = 3,
    seconds: Annotated[float, typer.Option(help="Length of each run's main action, in seconds.")] = 10.0,
    order: Annotated[str, typer.Option(help="blocked, interleaved or random.")] = "blocked",
    pause: Annotated[float, typer.Option(min=0, help="Seconds between runs.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for --order random.")] = 0,
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve the current run and finished events on "
                                             "Prometheus /metrics, or 'off'.")] = "off",
    host_label: HostLabel = DEFAULT_HOST,
    grafana_url: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Also post every event to Grafana's annotations API (token from $GRAFANA_TOKEN).")] = None,
) -> None:
    """Run a campaign of scenarios and record every run and action as an event."""
    if order not in Order.__args__:  # type: ignore[attr-defined]
        raise typer.BadParameter(f"--order must be one of {', '.join(Order.__args__)}")  # type: ignore[attr-defined]
    from mltelemetry.sinks_events import live_events

    with live_events(listen=listen, host=host_label, grafana_url=grafana_url):
        counts = run_campaign(store, CampaignPlan(campaign, list(scenario), runs, seconds,
                                                  order, pause, seed))  # type: ignore[arg-type]
    typer.echo(f"campaign {campaign}: {counts['ok']} runs ok, {counts['failed']} failed")
    if counts["failed"]:
        raise typer.Exit(1)
