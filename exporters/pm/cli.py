"""``mltelemetry exporter pm`` (the power-meter exporter) and ``mltelemetry pm emulate``."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from mltelemetry.cliutil import DEFAULT_HOST, HostLabel, Interval, Listen, StorePath, one_line_errors
from mltelemetry.errors import MltelemetryError

app = typer.Typer(no_args_is_help=True)

DRIVERS = ("wt300",)

Driver = Annotated[str, typer.Option(help=f"Meter driver: {', '.join(DRIVERS)}.")]
GarbageRate = Annotated[float, typer.Option(min=0, max=1, help="Probability that a VAL? reply is line noise.")]
PartialRate = Annotated[float, typer.Option(min=0, max=1, help="Probability that a VAL? reply lacks its end.")]
NanRate = Annotated[float, typer.Option(min=0, max=1, help="Probability that a VAL? reply is NAN, INF or 9.91E+37.")]


def _check_driver(driver: str) -> None:
    if driver not in DRIVERS:
        raise MltelemetryError(f"unknown driver {driver!r}; known drivers: {', '.join(DRIVERS)}")


@app.callback()
def pm() -> None:
    """Power-meter tools."""


@one_line_errors
def pm_exporter_command(
    port: Annotated[str, typer.Option(help="Serial device or pyserial URL of the meter.")],
    driver: Driver = "wt300",
    meter: Annotated[str, typer.Option(help="Value of the meter label.")] = "pm0",
    listen: Listen = "127.0.0.1:9811",
    store: StorePath = None,
    interval: Interval = 1.0,
    host_label: HostLabel = DEFAULT_HOST,
    meter_rate: Annotated[float, typer.Option(help="Update interval to set on the meter, in seconds.")] = 1.0,
    baudrate: Annotated[int, typer.Option(help="Serial speed (8N1).")] = 9600,
) -> None:
    """Publish a power meter's power, voltage, current and integrated energy."""
    from mltelemetry.exporters.pm import wt300
    from mltelemetry.exporters.pm.collector import PmCollector
    from mltelemetry.exporters.runtime import serve
    from mltelemetry.sinks import parse_listen

    _check_driver(driver)
    wt300.rate_command(meter_rate)  # refuse a bad rate now, not on every reconnect
    parse_listen(listen)

    def open_meter() -> wt300.Wt300:
        return wt300.Wt300(port, baudrate=baudrate, rate_s=meter_rate)

    serve(PmCollector(open_meter, host=host_label, meter=meter), listen=listen,
          store=str(store) if store else None, interval_s=interval, host=host_label)


@app.command("emulate")
@one_line_errors
def emulate_command(
    link: Annotated[Path, typer.Option(help="Path of the symlink to the emulated serial port.")],
    driver: Driver = "wt300",
    profile: Annotated[str, typer.Option(help="Power profile: constant:W, steps:W1/S1,W2/S2,..., "
                                              "csv:PATH (seconds,watts) or cpu:IDLE_W,SLOPE_W.")] = "constant:100",
    update_interval: Annotated[float, typer.Option(min=0.01, help="Meter update interval in seconds "
                                                                  "(a client's :RATE changes it).")] = 1.0,
    garbage_rate: GarbageRate = 0.0,
    partial_rate: PartialRate = 0.0,
    nan_rate: NanRate = 0.0,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the fault injection.")] = None,  # noqa: UP045
) -> None:
    """Emulate a power meter on a pseudo-terminal until SIGINT or SIGTERM."""
    from mltelemetry.exporters.pm.emulator import Faults, Wt300Emulator, parse_profile

    _check_driver(driver)
    emulator = Wt300Emulator(parse_profile(profile), link, update_interval_s=update_interval,
                             faults=Faults(garbage_rate, partial_rate, nan_rate, seed))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: emulator.stop())
    emulator.plug()
    try:
        typer.echo(f"emulating a {emulator.IDN.split(',')[1]} on {link} -> {emulator.port.device} "
                   f"(profile {profile}, update every {update_interval:g} s)")
        emulator.run()
    finally:
        emulator.close()
