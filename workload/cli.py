"""``mltelemetry campaign run``: the workload generator."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from mltelemetry.cliutil import (
    DEFAULT_HOST,
    HostLabel,
    OneLineErrorsGroup,
    SinkOptions,
    finite_number,
    one_line_errors,
    with_sink_options,
)
from mltelemetry.storecli import campaign_list_command
from mltelemetry.workload.campaign import CampaignPlan, CooldownSettings, SettleSettings, run_campaign
from mltelemetry.workload.compare import make_compare
from mltelemetry.workload.config import DEFAULT_HUB_HANDLE, PRECISIONS, MLConfig
from mltelemetry.workload.lm_config import LMConfig
from mltelemetry.workload.ml import ML_SCENARIOS
from mltelemetry.workload.variants import parse_vary

app = typer.Typer(cls=OneLineErrorsGroup, no_args_is_help=True)
app.command("list")(campaign_list_command)


class RunOrder(str, Enum):
    blocked = "blocked"
    interleaved = "interleaved"
    random = "random"


class BackendChoice(str, Enum):
    keras = "keras"
    torch = "torch"


class IdleFramework(str, Enum):
    auto = "auto"
    none = "none"
    keras = "keras"
    torch = "torch"


class CompareTool(str, Enum):
    codecarbon = "codecarbon"


@app.command("run")
@with_sink_options  # --influx-*, --spool-*, --tls-*, --basic-auth-file: the events go live there too
@one_line_errors
def run_command(
    campaign: Annotated[str, typer.Option(help="Campaign name; must be new in the store (unless --resume).")],
    store: Annotated[Path, typer.Option(help="Embedded store file the events go to.")],
    scenario: Annotated[list[str], typer.Option(help="Scenario to run (repeat the option).")] = [  # noqa: B006
        "baseline", "idle", "cpu"],
    runs: Annotated[int, typer.Option(min=1, help="Runs of each scenario.")] = 3,
    seconds: Annotated[float, typer.Option(callback=finite_number,
                                           help="Length of the main action of baseline, idle and cpu runs, in "
                                                "seconds (the paper's idle: 10 minutes).")] = 600.0,
    order: Annotated[RunOrder, typer.Option(help="Order of the runs.")] = RunOrder.blocked,
    pause: Annotated[float, typer.Option(min=0, help="Seconds between runs.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for --order random.")] = 0,
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve the current run and finished events on "
                                             "Prometheus /metrics, or 'off'.")] = "off",
    host_label: HostLabel = DEFAULT_HOST,
    grafana_url: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Also post every event to Grafana's annotations API (token from $GRAFANA_TOKEN).")] = None,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failed run (by default it is recorded "
                                                 "failed and the campaign goes on).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an existing campaign: run only the runs not yet "
                                              "recorded ok; runs of a killed campaign are marked lost and run "
                                              "again. The plan (--scenario/--runs/--seconds/--order/--seed/--vary "
                                              "and the ML settings) must be the one it started with.")] = False,
    lm: Annotated[list[str], typer.Option(help="NAME=VALUE settings of lm-train/lm-infer (repeat): d_model, layers, "
                                               "heads, context, steps_per_epoch, max_epochs, target_val_loss "
                                               "(nats/byte, none), corpus_bytes, prompts, prompt_tokens, "
                                               "new_tokens, prefill_rounds, decode_rounds, checkpoint (an "
                                               "lm-train export folder for lm-infer).")] = [],  # noqa: B006
    processes: Annotated[int, typer.Option(min=1, help="Training processes of cnn, transfer and lm-train on torch "
                                                       "(DistributedDataParallel, one per GPU, NCCL; gloo on the "
                                                       "CPU); --batch-size is per process.")] = 1,
    vary: Annotated[list[str], typer.Option(help="NAME=V1,V2,...: run every ML scenario in each combination of "
                                                 "the values (repeat for more settings; batch_size, precision, "
                                                 "backend, learning_rate, image_size, gpu_power_limit in W, set "
                                                 "through NVML around each run, needs root).")] = [],  # noqa: B006
    settle: Annotated[bool, typer.Option(help="Before each run, wait until the GPUs' power (NVML) is within "
                                              "--settle-margin W of the campaign's first baseline run.")] = False,
    settle_margin: Annotated[float, typer.Option(min=0, help="Settle margin, W above the baseline's GPU power.")
                             ] = 5.0,
    settle_limit: Annotated[float, typer.Option(min=0, help="Longest settle wait, seconds.")] = 300.0,
    cooldown: Annotated[bool, typer.Option(help="Before each run, wait until the GPU is within --cooldown-margin "
                                                "of the baseline's temperature (GPU exporter series or NVML).")
                        ] = False,
    cooldown_margin: Annotated[float, typer.Option(min=0, help="Cooldown margin, °C.")] = 2.0,
    cooldown_limit: Annotated[float, typer.Option(min=0, help="Longest cooldown wait, seconds.")] = 600.0,
    cooldown_reference: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="Reference GPU temperature, °C (default: the latest baseline run's mean, else the start's).")] = None,
    compare: Annotated[Optional[CompareTool], typer.Option(  # noqa: UP045
        help="'codecarbon': wrap each run in CodeCarbon's offline tracker; its estimate goes on the run event.")
    ] = None,
    codecarbon_country: Annotated[str, typer.Option(help="ISO 3166 alpha-3 country for CodeCarbon's "
                                                         "emission factor.")] = "DEU",
    backend: Annotated[BackendChoice, typer.Option(help="Framework of cnn and transfer.")] = BackendChoice.keras,
    data: Annotated[str, typer.Option(help="Images for cnn and transfer: 'synthetic', a tf_flowers-layout "
                                           "directory (or one above it) or a TFDS data dir.")] = "synthetic",
    image_size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 224,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per training step (recorded on the run).")] = 32,
    precision: Annotated[str, typer.Option(help="fp32, tf32, bf16 or fp16 (mixed precision); recorded on the "
                                                "run.")] = "fp32",
    max_epochs: Annotated[int, typer.Option(min=1, help="Most epochs per training run.")] = 100,
    target_accuracy: Annotated[Optional[float], typer.Option(  # noqa: UP045
        min=0, max=1, help="Validation accuracy (0-1) that ends training (default 0.80 cnn, 0.85 transfer).")
    ] = None,
    learning_rate: Annotated[float, typer.Option(help="Adam's learning rate.")] = 0.001,
    validation_split: Annotated[float, typer.Option(help="Fraction of each class kept for validation.")] = 0.2,
    synthetic_images: Annotated[int, typer.Option(min=2, help="Synthetic images per class.")] = 40,
    hub_handle: Annotated[str, typer.Option(help="tensorflow-hub handle (URL or local SavedModel directory) of "
                                                 "the transfer model on keras; 'none' for the fallback.")
                          ] = DEFAULT_HUB_HANDLE,
    torch_weights: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="torchvision mobilenet_v2 state-dict file for transfer on torch (default: random weights).")] = None,
    keep_downloads: Annotated[bool, typer.Option(help="Keep downloaded hub models at cleanup.")] = False,
    device: Annotated[str, typer.Option(help="torch device: auto, cpu, cuda, cuda:1, ...")] = "auto",
    workdir: Annotated[Optional[Path], typer.Option(help="Where runs make their working folders.")] = None,  # noqa: UP045
    export_dir: Annotated[Path, typer.Option(help="Where model architecture and history are exported.")
                          ] = Path("mltelemetry-exports"),
    idle_framework: Annotated[IdleFramework, typer.Option(help="What the idle process imports.")
                              ] = IdleFramework.auto,
    progress: Annotated[bool, typer.Option(help="Show the progress line.")] = True,
    *, sink_options: SinkOptions,
) -> None:
    """Run a campaign of scenarios and record every run and action as an event."""
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"--precision must be one of {', '.join(PRECISIONS)}")
    try:
        lm_settings = LMConfig.from_settings(lm)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--lm") from None
    try:
        varied = parse_vary(vary)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--vary") from None
    from mltelemetry.backends import live_events

    order, backend, idle_framework = order.value, backend.value, idle_framework.value  # type: ignore[assignment]

    config = MLConfig(backend=backend, data=data, image_size=image_size, batch_size=batch_size,  # type: ignore[arg-type]
                      precision=precision, processes=processes,
                      max_epochs=max_epochs, target_accuracy=target_accuracy, learning_rate=learning_rate,
                      validation_split=validation_split, seed=seed, synthetic_per_class=synthetic_images,
                      hub_handle=None if hub_handle.lower() == "none" else hub_handle, torch_weights=torch_weights,
                      keep_downloads=keep_downloads, device=device, workdir=workdir, export_dir=export_dir,
                      lm=lm_settings)
    plan = CampaignPlan(campaign, list(scenario), runs, seconds, order, pause, seed,  # type: ignore[arg-type]
                        config=config, idle_framework=idle_framework, vary=varied)
    if varied and not plan.has_ml:
        raise typer.BadParameter("varies the ML scenarios (cnn, transfer), and no --scenario is one",
                                 param_hint="--vary")
    keras_ml = [s for s in scenario if s in ML_SCENARIOS and
                (backend == "keras" or "keras" in varied.get("backend", []))]
    if processes > 1 and keras_ml:
        raise typer.BadParameter(f"{keras_ml[0]} on keras runs in one process; --processes needs --backend torch",
                                 param_hint="--processes")
    cooling = CooldownSettings(cooldown_margin, cooldown_limit, reference_c=cooldown_reference,
                               host=host_label) if cooldown else None
    settling = SettleSettings(settle_margin, settle_limit) if settle else None
    comparing = make_compare(compare.value if compare else None, country_iso_code=codecarbon_country)

    with live_events(listen=listen, host=host_label, grafana_url=grafana_url, options=sink_options) as publishers, \
            _sigterm_as_interrupt():
        counts = run_campaign(store, plan, show_progress=progress, fail_fast=fail_fast, resume=resume,
                              cooldown=cooling, settle=settling, compare=comparing, publishers=publishers)
    summary = f"campaign {campaign}: {counts['ok']} runs ok, {counts['failed']} failed"
    if counts["skipped"]:
        summary += f", {counts['skipped']} already done"
    if counts["lost"]:
        summary += f", {counts['lost']} lost by a killed campaign (run again)"
    if counts["interrupted"]:
        where = "the run in progress is recorded aborted" if counts["aborted"] else "between runs"
        typer.echo(f"{summary}, interrupted: {where}; --resume runs the rest")
        raise typer.Exit(130)
    typer.echo(summary)
    if counts["failed"]:
        raise typer.Exit(1)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the campaign as Ctrl-C does: the run in progress is recorded aborted."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (CliRunner in a thread): leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
