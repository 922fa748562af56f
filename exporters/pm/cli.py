"""``mltelemetry exporter pm`` (the power-meter exporter) and ``mltelemetry pm emulate``, built from the meter
plug-ins (``registry.py``): ``--driver`` chooses one of them, and each meter's own options join the command in
a help panel named after it. Nothing here names a meter.

``pm align`` is an analysis of stored series: ``analysis/align.py`` (listed under ``pm`` by the root command).
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from copy import copy
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from mltelemetry.cliutil import (
    DEFAULT_HOST,
    HostLabel,
    Interval,
    Listen,
    OneLineErrorsGroup,
    SinkOptions,
    StorePath,
    one_line_errors,
    with_sink_options,
)
from mltelemetry.errors import MltelemetryError, UsageError
from mltelemetry.exporters.pm.plugin import MeterOption, MeterPlugin
from mltelemetry.exporters.pm.registry import PLUGINS

if TYPE_CHECKING:
    from mltelemetry.exporters.pm.emulator import Emulator

log = logging.getLogger(__name__)

GarbageRate = Annotated[float, typer.Option(min=0, max=1, help="Probability that a reading's reply is line noise.")]
PartialRate = Annotated[float, typer.Option(min=0, max=1, help="Probability that a reading's reply is cut short.")]
NanRate = Annotated[float, typer.Option(
    min=0, max=1, help="Probability of invalid values: NAN, INF or 9.91E+37 (wt300); a sample of -1 W (ptd).")]
ChecksumRate = Annotated[float, typer.Option(
    min=0, max=1, help="mcp39f511: probability of a frame with a bad checksum.")]
NakRate = Annotated[float, typer.Option(
    min=0, max=1, help="mcp39f511: probability that the chip answers NAK or checksum-fail.")]
ErrorRate = Annotated[float, typer.Option(min=0, max=1, help="ptd: probability of an 'Error: ...' reply to RL.")]

# pm emulate's places for the emulator, and the transports each serves (a pty stands in for a serial port or
# a USB-TMC device, whose driver reads a tty the same way)
PLACES = {"--link": ("serial", "usbtmc"), "--tcp": ("tcp",), "--vxi11": ("vxi11",)}
PLACE_SYNTAX = {"--link": "--link PATH (a pseudo-terminal)", "--tcp": "--tcp HOST:PORT", "--vxi11": "--vxi11 HOST:PORT"}


# --- building a command of every registered meter ----------------------------------------------------------
def _meter_parameter(plugin: MeterPlugin, option: MeterOption, *, optional: bool) -> inspect.Parameter:
    """``option`` as a keyword parameter with its typer annotation, in the meter's help panel. ``optional``: it
    defaults to None, so a value given for another meter can be told apart and refused."""
    declarations = [f"{option.flag}/--no-{option.flag[2:]}"] if option.value_type is bool else []
    info = typer.Option(*declarations, rich_help_panel=plugin.name, help=option.help_text(say_default=optional),
                        min=option.min)
    value_type = Optional[option.value_type] if optional or option.default is None else option.value_type  # noqa: UP045
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[value_type, info],
                             default=None if optional else option.default)


def _meter_command(function: Callable[..., None], plugins: Sequence[MeterPlugin],
                   options_of: Callable[[MeterPlugin], tuple[MeterOption, ...]], driver_help: str, *,
                   optional: bool, help_of: dict[str, str] | None = None) -> Callable[..., None]:
    """``function`` as a typer command of ``plugins``: its ``driver`` parameter becomes the choice of one of
    them (the first by default), each meter's ``options_of`` join its parameters, and it is called with the
    chosen :class:`MeterPlugin` as ``driver``, ``meter_options`` (every meter's, by name) and ``plugins``.
    ``help_of`` replaces the help of some of ``function``'s own options (texts that list the meters)."""
    if not plugins:
        raise ValueError("no meter plug-ins")
    by_name = {p.name: p for p in plugins}
    choice = Enum("DriverName", {name: name for name in by_name}, type=str)  # type: ignore[misc]
    signature = inspect.signature(function, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name == "driver":
            parameter = parameter.replace(annotation=Annotated[choice, typer.Option(help=driver_help)],
                                          default=choice[plugins[0].name])
        elif parameter.kind is inspect.Parameter.KEYWORD_ONLY:  # meter_options, plugins, sink_options: ours to pass
            continue
        elif help_of and parameter.name in help_of:
            info = copy(parameter.annotation.__metadata__[0])
            info.help = help_of[parameter.name]
            parameter = parameter.replace(annotation=Annotated[parameter.annotation.__origin__, info])
        parameters.append(parameter)
    taken = {p.name: "every meter" for p in parameters}
    meter_names: list[str] = []
    for plugin in plugins:
        for option in options_of(plugin):
            if option.name in taken:
                raise ValueError(f"meter {plugin.name!r}: option {option.flag} is taken by {taken[option.name]}")
            taken[option.name] = plugin.name
            meter_names.append(option.name)
            parameters.append(_meter_parameter(plugin, option, optional=optional))

    @one_line_errors
    def command(**kwargs):
        meter_options = {name: kwargs.pop(name) for name in meter_names}
        plugin = by_name[kwargs.pop("driver").value]
        return function(driver=plugin, meter_options=meter_options, plugins=plugins, **kwargs)

    command.__name__, command.__doc__ = function.__name__, function.__doc__
    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


def _driver_help(plugins: Sequence[MeterPlugin]) -> str:
    return "Meter driver: " + "; ".join(f"{p.name}, {p.meter}" for p in plugins) + "."


def _chosen_options(plugin: MeterPlugin, plugins: Sequence[MeterPlugin],
                    meter_options: dict[str, object]) -> dict[str, object]:
    """The chosen meter's own options, defaults filled in; an option of another meter is a usage error."""
    for other in plugins:
        for option in other.options:
            if other is not plugin and meter_options.get(option.name) is not None:
                raise UsageError(f"{option.flag} applies to --driver {other.name}, not {plugin.name}")
    return {o.name: o.default if meter_options[o.name] is None else meter_options[o.name] for o in plugin.options}


# --- exporter pm ---------------------------------------------------------------------------------------------
def pm_exporter(
    port: Annotated[str, typer.Option(help="The meter: serial device or pyserial URL, /dev/usbtmcN or usbtmc://PATH, "
                                           "tcp://HOST:PORT (ptd: HOST[:PORT], default port 8888).")],
    driver: MeterPlugin,  # the registry's choice (see _meter_command)
    meter: Annotated[str, typer.Option(help="Value of the meter label.")] = "pm0",
    listen: Listen = "127.0.0.1:9811",
    store: StorePath = None,
    interval: Interval = 1.0,
    host_label: HostLabel = DEFAULT_HOST,
    meter_rate: Annotated[float, typer.Option(help="Update interval to set on the meter, in seconds.")] = 1.0,
    baudrate: Annotated[Optional[int], typer.Option(help="Serial speed (8N1).")] = None,  # noqa: UP045
    *,
    meter_options: dict[str, object],
    plugins: Sequence[MeterPlugin],
    sink_options: SinkOptions,
) -> None:
    """Publish a power meter's power, voltage, current, energy (ours and the meter's) and health."""
    from mltelemetry.exporters.pm.collector import PmCollector
    from mltelemetry.exporters.runtime import exporter_sinks, serve
    from mltelemetry.sinks import parse_listen

    options = _chosen_options(driver, plugins, meter_options)
    if driver.baudrate is None and baudrate is not None:
        serial = ", ".join(p.name for p in plugins if p.baudrate is not None)
        raise UsageError(f"--baudrate applies to serial meters ({serial}), not {driver.name}")
    try:  # the plug-in refuses bad settings before anything opens: the command line's mistake
        connection = driver.connect(port, rate_s=meter_rate, baudrate=driver.baudrate if baudrate is None else baudrate,
                                    **options)
    except MltelemetryError as e:
        raise UsageError(str(e)) from None
    if connection.synchronised and interval < meter_rate:
        hint = f", {connection.unsynchronised_hint}" if connection.unsynchronised_hint else ""
        raise UsageError(f"--interval {interval:g} is shorter than the meter's update interval {meter_rate:g} s: "
                         f"each read waits for a new update{hint}")
    if connection.synchronised and interval > meter_rate:
        log.warning("--interval %g s is longer than the meter's update interval %g s: the values read are the "
                    "latest update's, not averages over the interval", interval, meter_rate)
    parse_listen(listen)
    collector = PmCollector(connection.open, host=host_label, meter=meter, wall_ns=time.time_ns,
                            max_power_w=driver.max_power_w)
    sinks = exporter_sinks(collector.name, listen=listen, store=str(store) if store else None, interval_s=interval,
                           options=sink_options)
    serve(collector, sinks, interval_s=interval, host=host_label)


def exporter_command(plugins: Sequence[MeterPlugin] = PLUGINS) -> Callable[..., None]:
    """``mltelemetry exporter pm`` for ``plugins``."""
    rates = "; ".join(f"{p.name}: {p.rate}" for p in plugins if p.rate)
    speeds = ", ".join(f"{p.baudrate} ({p.name})" for p in plugins if p.baudrate is not None)
    command = _meter_command(pm_exporter, plugins, lambda p: p.options, _driver_help(plugins), optional=True,
                             help_of={"meter_rate": "Update interval to set on the meter, in seconds"
                                                    + (f" ({rates})." if rates else "."),
                                      "baudrate": f"Serial speed (8N1); default {speeds}."})
    return with_sink_options(command)  # --influx-*, --spool-*, --tls-*, --basic-auth-file as sink_options


pm_exporter_command = exporter_command()


# --- pm emulate ------------------------------------------------------------------------------------------------
def pm_emulate(
    link: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Serve on a pseudo-terminal: path of the symlink to it (serial and USB-TMC meters).")] = None,
    tcp: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Serve on a TCP port instead, HOST:PORT (port 0: a free one); ptd default 127.0.0.1:8888.")] = None,
    vxi11: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Serve VXI-11 (as a WT310E on Ethernet), the portmapper on HOST:PORT (0: a free port).")] = None,
    driver: MeterPlugin = PLUGINS[0],  # the registry's choice (see _meter_command)
    profile: Annotated[str, typer.Option(help="Power profile: constant:W, steps:W1/S1,W2/S2,..., "
                                              "csv:PATH (seconds,watts) or cpu:IDLE_W,SLOPE_W.")] = "constant:100",
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
    *,
    meter_options: dict[str, object],
    plugins: Sequence[MeterPlugin],
) -> None:
    """Emulate a power meter on a pseudo-terminal or TCP port until SIGINT or SIGTERM."""
    from mltelemetry.exporters.pm.emulator import Faults, parse_profile

    where = _place(driver, plugins, {"--link": link, "--tcp": tcp, "--vxi11": vxi11})
    emulator_class = driver.emulator()
    settings = {o.keyword or o.name: meter_options[o.name] for o in driver.emulator_options}
    try:  # nothing opens yet: bad rates, a bad --profile (a csv: file that cannot be read included) and faults
        # the meter cannot have are the command line's mistakes
        faults = Faults(garbage_rate, partial_rate, nan_rate, seed, checksum_rate=checksum_rate, nak_rate=nak_rate,
                        error_rate=error_rate, markers=emulator_class.MARKERS)
        emulator = emulator_class(parse_profile(profile), where, faults=faults, clock_shift_s=clock_shift_ms / 1000,
                                  **settings)
    except MltelemetryError as e:
        raise UsageError(str(e)) from None
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
        device = getattr(emulator.port, "device", None)
        address = f"{emulator.address} -> {device}" if device else emulator.address
        typer.echo(f"emulating {emulator.TITLE} on {address} (profile {profile}{emulator.details()})")
        emulator.run()
    finally:
        stop.set()
        emulator.close()


def _place(plugin: MeterPlugin, plugins: Sequence[MeterPlugin], given: dict[str, object]) -> object:
    """Where the emulator serves: a pty's path, or a TCP or VXI-11 link; one the meter does not speak is refused."""
    from mltelemetry.exporters.pm.emulator import TcpServerLink
    from mltelemetry.exporters.pm.transport import parse_tcp

    offered = [flag for flag, kinds in PLACES.items() if set(kinds) & set(plugin.transports)]
    chosen = [flag for flag, value in given.items() if value is not None]
    if len(chosen) > 1 or (not chosen and plugin.default_tcp is None):
        raise UsageError("give one of " + ", ".join(PLACE_SYNTAX[f] for f in offered[:-1])
                         + (" or " if len(offered) > 1 else "") + PLACE_SYNTAX[offered[-1]])
    flag = chosen[0] if chosen else "--tcp"
    if flag not in offered:
        speakers = ", ".join(p.name for p in plugins if set(PLACES[flag]) & set(p.transports))
        raise UsageError(f"{flag} is for --driver {speakers}; the {plugin.name} emulator serves "
                         + " or ".join(PLACE_SYNTAX[f] for f in offered))
    if flag == "--link":
        return given[flag]  # the emulator makes a pty with a symlink there
    try:
        host, port = parse_tcp(str(given[flag] or plugin.default_tcp))
    except MltelemetryError as e:
        raise UsageError(f"{flag}: {e}") from None
    if flag == "--vxi11":
        from mltelemetry.exporters.pm.vxi11 import Vxi11ServerLink

        return Vxi11ServerLink(host, port)
    return TcpServerLink(host, port)


def _pull_cable(emulator: Emulator, stop: threading.Event, every_s: float, for_s: float) -> None:
    while not stop.wait(every_s):
        emulator.unplug()
        log.info("cable pulled for %g s", for_s)
        if stop.wait(for_s):
            return
        emulator.plug()


def emulator_command(plugins: Sequence[MeterPlugin] = PLUGINS) -> Callable[..., None]:
    """``mltelemetry pm emulate`` for ``plugins``."""
    return _meter_command(pm_emulate, plugins, lambda p: p.emulator_options, _driver_help(plugins), optional=False)


def build_app(plugins: Sequence[MeterPlugin] = PLUGINS) -> typer.Typer:
    """A ``pm`` group with ``emulate`` alone, for ``plugins`` (the real CLI's ``pm`` group, which also holds
    ``align``, is mltelemetry/cli.py's)."""
    group = typer.Typer(cls=OneLineErrorsGroup, no_args_is_help=True)
    group.callback()(_pm)
    group.command("emulate")(emulator_command(plugins))
    return group


def _pm() -> None:
    """Power-meter tools."""


emulate_command = emulator_command()
app = build_app()  # ``pm emulate`` on its own (the tests start emulators through it)
