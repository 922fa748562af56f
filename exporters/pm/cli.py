"""``mltelemetry exporter pm`` (the power-meter exporter), ``mltelemetry pm emulate`` and ``mltelemetry pm align``."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from mltelemetry.cliutil import (
    DEFAULT_HOST,
    DURATION_UNITS,
    HostLabel,
    Interval,
    Listen,
    OneLineErrorsGroup,
    SinkOptions,
    StorePath,
    one_line_errors,
    parse_duration_s,
    with_sink_options,
)
from mltelemetry.errors import MltelemetryError, UsageError

if TYPE_CHECKING:
    from mltelemetry.exporters.pm.emulator import Emulator
    from mltelemetry.exporters.pm.meter import Driver

app = typer.Typer(cls=OneLineErrorsGroup, no_args_is_help=True)
log = logging.getLogger(__name__)

class DriverName(str, Enum):
    wt300 = "wt300"
    mcp39f511 = "mcp39f511"
    ptd = "ptd"


DRIVERS = tuple(d.value for d in DriverName)
DEFAULT_BAUD = {"wt300": 9600, "mcp39f511": 115200}

DriverOption = Annotated[DriverName, typer.Option(help="Meter driver.")]
GarbageRate = Annotated[float, typer.Option(min=0, max=1, help="Probability that a reading's reply is line noise.")]
PartialRate = Annotated[float, typer.Option(min=0, max=1, help="Probability that a reading's reply is cut short.")]
NanRate = Annotated[float, typer.Option(
    min=0, max=1, help="Probability of invalid values: NAN, INF or 9.91E+37 (wt300); a sample of -1 W (ptd).")]
ChecksumRate = Annotated[float, typer.Option(
    min=0, max=1, help="mcp39f511: probability of a frame with a bad checksum.")]
NakRate = Annotated[float, typer.Option(
    min=0, max=1, help="mcp39f511: probability that the chip answers NAK or checksum-fail.")]
ErrorRate = Annotated[float, typer.Option(min=0, max=1, help="ptd: probability of an 'Error: ...' reply to RL.")]
WT300_PANEL, MCP_PANEL, PTD_PANEL = "wt300", "mcp39f511", "ptd"


def _check_driver(driver: DriverName | str) -> str:
    """The driver's name; an unknown one (where no enum checked it) is a usage error."""
    name = driver.value if isinstance(driver, DriverName) else driver
    if name not in DRIVERS:
        raise UsageError(f"unknown driver {name!r}; known drivers: {', '.join(DRIVERS)}")
    return name


def _only_for(driver: str, **options: object) -> None:
    """Refuse options given for another driver (each name is ``<driver>__<option>``)."""
    for key, value in options.items():
        owner, _, name = key.partition("__")
        if value is not None and owner != driver:
            raise UsageError(f"--{name.replace('_', '-')} applies to --driver {owner}, not {driver}")


@app.callback()
def pm() -> None:
    """Power-meter tools."""


@with_sink_options
@one_line_errors
def pm_exporter_command(
    port: Annotated[str, typer.Option(help="The meter: serial device or pyserial URL, /dev/usbtmcN or usbtmc://PATH, "
                                           "tcp://HOST:PORT (ptd: HOST[:PORT], default port 8888).")],
    driver: DriverOption = DriverName.wt300,
    meter: Annotated[str, typer.Option(help="Value of the meter label.")] = "pm0",
    listen: Listen = "127.0.0.1:9811",
    store: StorePath = None,
    interval: Interval = 1.0,
    host_label: HostLabel = DEFAULT_HOST,
    meter_rate: Annotated[float, typer.Option(
        help="Update interval to set on the meter, in seconds (wt300: :RATE; ptd: the Go period).")] = 1.0,
    baudrate: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Serial speed (8N1); default 9600 (wt300), 115200 (mcp39f511).")] = None,
    sync: Annotated[Optional[bool], typer.Option(  # noqa: UP045
        "--sync/--no-sync", rich_help_panel=WT300_PANEL,
        help="Wait for the meter's data-update event before each read, so no update is read twice or "
             "skipped (default on).")] = None,
    meter_integration: Annotated[Optional[bool], typer.Option(  # noqa: UP045
        "--meter-integration/--no-meter-integration", rich_help_panel=WT300_PANEL,
        help="Run the meter's integrator and publish its energy as pm_meter_energy_joules_total (default on).")] = None,
    channel: Annotated[Optional[int], typer.Option(  # noqa: UP045
        rich_help_panel=MCP_PANEL, help="Channel (outlet) to read: 1 or 2 (default 1).")] = None,
    accumulation: Annotated[Optional[int], typer.Option(  # noqa: UP045
        rich_help_panel=MCP_PANEL, help="Accumulation window set on start: 2^N line cycles, N 1..8 (default 4, "
                                         "the factory setting: 320 ms at 50 Hz).")] = None,
    energy_unit: Annotated[Optional[float], typer.Option(  # noqa: UP045
        rich_help_panel=MCP_PANEL, help="Joules per count of the chip's energy counter (default 3.6 = 1 mWh; "
                                         "check against pm_energy_joules_total on your board).")] = None,
    voltage_range: Annotated[Optional[str], typer.Option(  # noqa: UP045
        rich_help_panel=PTD_PANEL, help="Voltage range to set (volts or Auto); default: PTDaemon's.")] = None,
    current_range: Annotated[Optional[str], typer.Option(  # noqa: UP045
        rich_help_panel=PTD_PANEL, help="Current range to set (amperes or Auto); default: PTDaemon's.")] = None,
    mark: Annotated[Optional[str], typer.Option(  # noqa: UP045
        rich_help_panel=PTD_PANEL, help="Mark PTDaemon writes beside our samples in its log.")] = None,
    *, sink_options: SinkOptions,
) -> None:
    """Publish a power meter's power, voltage, current, energy (ours and the meter's) and health."""
    from mltelemetry.exporters.pm.collector import PmCollector
    from mltelemetry.exporters.runtime import exporter_sinks, serve
    from mltelemetry.sinks import parse_listen

    driver = _check_driver(driver)  # type: ignore[assignment]
    _only_for(driver, wt300__sync=sync, wt300__meter_integration=meter_integration, mcp39f511__channel=channel,
              mcp39f511__accumulation=accumulation, mcp39f511__energy_unit=energy_unit,
              ptd__voltage_range=voltage_range, ptd__current_range=current_range, ptd__mark=mark)
    if driver == "ptd" and baudrate is not None:
        raise UsageError("--baudrate applies to serial meters (wt300, mcp39f511), not ptd")
    try:  # the drivers refuse bad settings before anything opens: the command line's mistake
        open_meter = _meter_factory(driver, port, meter_rate=meter_rate, baudrate=baudrate, sync=sync,
                                    meter_integration=meter_integration, channel=channel, accumulation=accumulation,
                                    energy_unit=energy_unit, voltage_range=voltage_range,
                                    current_range=current_range, mark=mark)
    except MltelemetryError as e:
        raise UsageError(str(e)) from None
    synchronised = driver == "ptd" or (driver == "wt300" and sync is not False)
    if synchronised and interval < meter_rate:
        raise UsageError(f"--interval {interval:g} is shorter than the meter's update interval {meter_rate:g} s: "
                               "each read waits for a new update" + (", use --no-sync" if driver == "wt300" else ""))
    if synchronised and interval > meter_rate:
        log.warning("--interval %g s is longer than the meter's update interval %g s: the values read are the "
                    "latest update's, not averages over the interval", interval, meter_rate)
    parse_listen(listen)
    collector = PmCollector(open_meter, host=host_label, meter=meter, wall_ns=time.time_ns)
    sinks = exporter_sinks(collector.name, listen=listen, store=str(store) if store else None, interval_s=interval,
                           options=sink_options)
    serve(collector, sinks, interval_s=interval, host=host_label)


def _meter_factory(driver: str, port: str, *, meter_rate: float, baudrate: int | None, sync: bool | None,
                   meter_integration: bool | None, channel: int | None, accumulation: int | None,
                   energy_unit: float | None, voltage_range: str | None, current_range: str | None,
                   mark: str | None):
    """A function that opens the meter (called again on every reconnect); bad options are refused now."""
    baud = baudrate if baudrate is not None else DEFAULT_BAUD.get(driver, 9600)
    if driver == "wt300":
        from mltelemetry.exporters.pm import wt300

        wt300.rate_command(meter_rate)  # refuse a bad rate now, not on every reconnect

        def open_wt300() -> Driver:
            return wt300.Wt300(port, baudrate=baud, rate_s=meter_rate, sync=sync is not False,
                               integration=meter_integration is not False)

        return open_wt300
    if driver == "mcp39f511":
        from mltelemetry.exporters.pm import mcp39f511

        n = accumulation if accumulation is not None else 4
        unit = energy_unit if energy_unit is not None else 3.6
        ch = channel if channel is not None else 1
        mcp39f511.check_options(ch, n, unit)  # refuse bad settings now, not on every reconnect

        def open_mcp() -> Driver:
            return mcp39f511.Mcp39f511(port, baudrate=baud, channel=ch, accumulation_n=n, energy_unit_j=unit)

        return open_mcp
    from mltelemetry.exporters.pm import ptd

    period_ms = round(meter_rate * 1000)
    ptd.check_options(port, period_ms, mark or "mltelemetry")  # refuse bad settings now, not on every reconnect

    def open_ptd() -> Driver:
        return ptd.Ptd(port, period_ms=period_ms, mark=mark or "mltelemetry", voltage_range=voltage_range,
                       current_range=current_range)

    return open_ptd


@app.command("emulate")
@one_line_errors
def emulate_command(
    link: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Serve on a pseudo-terminal: path of the symlink to it (wt300, mcp39f511).")] = None,
    tcp: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Serve on a TCP port instead, HOST:PORT (port 0: a free one); ptd default 127.0.0.1:8888.")] = None,
    vxi11: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="wt300: serve VXI-11 (as a WT310E on Ethernet), the portmapper on HOST:PORT (0: a free port).")] = None,
    driver: DriverOption = DriverName.wt300,
    profile: Annotated[str, typer.Option(help="Power profile: constant:W, steps:W1/S1,W2/S2,..., "
                                              "csv:PATH (seconds,watts) or cpu:IDLE_W,SLOPE_W.")] = "constant:100",
    update_interval: Annotated[float, typer.Option(
        min=0.01, help="wt300: update interval in seconds (a client's :RATE changes it).")] = 1.0,
    line_frequency: Annotated[float, typer.Option(
        min=1, help="mcp39f511: mains frequency in Hz (the accumulation window is 2^N cycles).")] = 50.0,
    garbage_rate: GarbageRate = 0.0,
    partial_rate: PartialRate = 0.0,
    nan_rate: NanRate = 0.0,
    checksum_rate: ChecksumRate = 0.0,
    nak_rate: NakRate = 0.0,
    error_rate: ErrorRate = 0.0,
    disconnect_every: Annotated[float, typer.Option(
        min=0, help="Pull the cable every this many seconds (0: never); it comes back after --disconnect-for.")] = 0.0,
    disconnect_for: Annotated[float, typer.Option(min=0, help="Seconds the cable stays pulled.")] = 3.0,
    clock_shift_ms: Annotated[float, typer.Option(
        help="Shift the meter's clock: what it reports lags the load by this many ms (for `pm align`).")] = 0.0,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the fault injection.")] = None,  # noqa: UP045
) -> None:
    """Emulate a power meter on a pseudo-terminal or TCP port until SIGINT or SIGTERM."""
    from mltelemetry.exporters.pm.emulator import Faults, TcpServerLink, parse_profile

    driver = _check_driver(driver)  # type: ignore[assignment]
    given = sum(x is not None for x in (link, tcp, vxi11))
    if given > 1 or (given == 0 and driver != "ptd"):
        raise UsageError("give one of --link PATH (a pseudo-terminal), --tcp HOST:PORT or --vxi11 HOST:PORT")
    if driver == "ptd" and (link is not None or vxi11 is not None):
        raise UsageError("PTDaemon listens on TCP: use --tcp HOST:PORT")
    if vxi11 is not None and driver != "wt300":
        raise UsageError("--vxi11 emulates a WT300-series meter on Ethernet: use it with --driver wt300")
    where: object
    if vxi11 is not None:
        from mltelemetry.exporters.pm.transport import parse_tcp
        from mltelemetry.exporters.pm.vxi11 import Vxi11ServerLink

        host, port = parse_tcp(vxi11)
        where = Vxi11ServerLink(host, port)
    elif tcp is not None or link is None:
        from mltelemetry.exporters.pm.transport import parse_tcp

        host, port = parse_tcp(tcp or "127.0.0.1:8888")
        where = TcpServerLink(host, port)
    else:
        where = link
    faults = Faults(garbage_rate, partial_rate, nan_rate, seed, checksum_rate=checksum_rate, nak_rate=nak_rate,
                    error_rate=error_rate, markers=("nan",) if driver == "ptd" else ("nan", "inf", "overrange"))
    try:
        power_profile = parse_profile(profile)
    except MltelemetryError as e:  # --profile's value (a csv: file that cannot be read included)
        raise UsageError(str(e)) from None
    emulator = _emulator(driver, power_profile, where, update_interval, line_frequency, faults,
                         clock_shift_ms / 1000)
    stop = threading.Event()

    def shutdown(*_: object) -> None:
        stop.set()
        emulator.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, shutdown)
    emulator.plug()
    if disconnect_every > 0:
        threading.Thread(target=_pull_cable, args=(emulator, stop, disconnect_every, disconnect_for),
                         daemon=True).start()
    try:
        typer.echo(_banner(driver, emulator, profile, update_interval), nl=True)
        emulator.run()
    finally:
        stop.set()
        emulator.close()


def _emulator(driver: str, profile, where, update_interval: float, line_frequency: float, faults,
              clock_shift_s: float) -> Emulator:
    if driver == "wt300":
        from mltelemetry.exporters.pm.emulator import Wt300Emulator

        return Wt300Emulator(profile, where, update_interval_s=update_interval, faults=faults,
                             clock_shift_s=clock_shift_s)
    if driver == "mcp39f511":
        from mltelemetry.exporters.pm.mcp39f511_emulator import Mcp39f511Emulator

        return Mcp39f511Emulator(profile, where, line_frequency_hz=line_frequency, faults=faults,
                                 clock_shift_s=clock_shift_s)
    from mltelemetry.exporters.pm.ptd_emulator import PtdEmulator

    return PtdEmulator(profile, where, faults=faults, clock_shift_s=clock_shift_s)


def _banner(driver: str, emulator: Emulator, profile: str, update_interval: float) -> str:
    port = emulator.port
    device = getattr(port, "device", None)
    where = f"{emulator.address} -> {device}" if device else emulator.address
    if driver == "wt300":
        from mltelemetry.exporters.pm.emulator import Wt300Emulator

        return (f"emulating a {Wt300Emulator.IDN.split(',')[1]} on {where} (profile {profile}, "
                f"update every {update_interval:g} s)")
    if driver == "mcp39f511":
        return f"emulating an MCP39F511N on {where} (profile {profile})"
    return f"emulating PTDaemon on {where} (profile {profile})"


def _pull_cable(emulator: Emulator, stop: threading.Event, every_s: float, for_s: float) -> None:
    while not stop.wait(every_s):
        emulator.unplug()
        log.info("cable pulled for %g s", for_s)
        if stop.wait(for_s):
            return
        emulator.plug()


def _parse_time_ns(text: str | None, what: str) -> int | None:
    """ISO 8601 (UTC unless it says otherwise) or seconds since the epoch, as UTC ns."""
    if text is None:
        return None
    import datetime

    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise UsageError(f"{what} wants a finite time, not {text!r}")
        return round(seconds * 1e9)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} wants an ISO 8601 time or seconds since the epoch, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return round(moment.timestamp() * 1e9)


@app.command("align")
@one_line_errors
def align_command(
    source: Annotated[str, typer.Option(
        help="Embedded store file, a Prometheus-compatible API URL or influxdb+http://HOST:8086/DATABASE.")]
        = "mltelemetry.db",
    meter: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="The meter label of the power series (default: the only meter in the source).")] = None,
    reference: Annotated[str, typer.Option(
        help="Metric that should move with the meter's power: host_cpu_total_utilization_ratio, gpu_power_watts, "
             "...")] = "host_cpu_total_utilization_ratio",
    label: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--label", help="K=V label of the reference series (repeatable).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Only series of this host label.")] = None,  # noqa: UP045
    start: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Start of the range: ISO 8601 (UTC by default) or epoch seconds.")] = None,
    end: Annotated[Optional[str], typer.Option(help="End of the range (default: now).")] = None,  # noqa: UP045
    last: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help=f"The range is this long, up to --end: 90s, 15m, 2h ({DURATION_UNITS}).")] = None,
    max_lag: Annotated[float, typer.Option(min=0.1, help="Largest offset searched, in seconds.")] = 3.0,
    meter_window: Annotated[Optional[float], typer.Option(  # noqa: UP045
        min=0, help="Seconds each meter value averages (default: its sampling interval).")] = None,
    reference_window: Annotated[Optional[float], typer.Option(  # noqa: UP045
        min=0, help="Seconds each reference value averages (default: its sampling interval).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Estimate how far the meter's power series lags a series that moves with it, in milliseconds."""
    from mltelemetry.analysis.sources import open_source
    from mltelemetry.exporters.pm.align import align_from_source

    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label wants K=V, not {item!r}")
        labels[key] = value
    if not labels and reference.removeprefix("mltelemetry_") == "host_cpu_utilization_ratio":
        labels = {"cpu": "total"}  # the whole machine as stored before it had its own series name
    for name, value in (("--max-lag", max_lag), ("--meter-window", meter_window),
                        ("--reference-window", reference_window)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{name} wants a finite number of seconds, not {value}")
    end_ns = _parse_time_ns(end, "--end")
    start_ns = _parse_time_ns(start, "--start")
    if last is not None:
        if start_ns is not None:
            raise UsageError("give --start or --last, not both")
        end_ns = end_ns if end_ns is not None else time.time_ns()
        start_ns = end_ns - round(parse_duration_s(last, "--last") * 1e9)
    opened = open_source(source)
    try:
        result, meter_name = align_from_source(opened, meter=meter, reference=reference, reference_labels=labels,
                                               host=host, start_ns=start_ns, end_ns=end_ns, max_lag_s=max_lag,
                                               meter_window_s=meter_window, reference_window_s=reference_window)
    finally:
        opened.close()
    typer.echo(result.json() if as_json else f"meter {meter_name}: {result.line()}")
