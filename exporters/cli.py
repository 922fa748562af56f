"""``mltelemetry exporter ...``: one command per exporter, each defined beside its collector and imported when it
runs (an exporter's process holds its own exporter's code and parameters only)."""

import typer

from mltelemetry.cliutil import LazyGroup


class ExporterGroup(LazyGroup):
    subcommands = {
        "host": ("mltelemetry.exporters.host", "host_command",
                 "Publish CPU, memory, disk, network, load, swap and RAPL energy of this machine."),
        "pm": ("mltelemetry.exporters.pm.cli", "pm_exporter_command",
               "Publish a power meter's power, voltage, current, energy (ours and the meter's) and health."),
        "gpu": ("mltelemetry.exporters.gpu.cli", "gpu_command",
                "Publish power (instant and 1 s average), hardware energy counter, temperature, load, memory, "
                "clocks, P-state, PCIe link, throttle reasons, power limit and fan of NVIDIA GPUs through NVML."),
    }
    # each command carries its --influx-*, --spool-*, --tls-* and --basic-auth-file options (with_sink_options)


app = typer.Typer(cls=ExporterGroup, no_args_is_help=True)


@app.callback()
def exporter() -> None:
    """Run one exporter (host, pm, gpu)."""  # a callback: a group of lazy commands is a group on its own too
