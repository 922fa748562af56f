"""``mltelemetry campaign run``: the workload generator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mltelemetry.cliutil import one_line_errors
from mltelemetry.workload.campaign import CampaignPlan, Order, run_campaign

app = typer.Typer(no_args_is_help=True)


@app.command("run")
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
) -> None:
    """Run a campaign of scenarios and record every run and action as an event."""
    if order not in Order.__args__:  # type: ignore[attr-defined]
        raise typer.BadParameter(f"--order must be one of {', '.join(Order.__args__)}")  # type: ignore[attr-defined]
    counts = run_campaign(store, CampaignPlan(campaign, list(scenario), runs, seconds, order,  # type: ignore[arg-type]
                                              pause, seed))
    typer.echo(f"campaign {campaign}: {counts['ok']} runs ok, {counts['failed']} failed")
    if counts["failed"]:
        raise typer.Exit(1)
