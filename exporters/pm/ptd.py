"""SPEC PTDaemon client: publish a meter that PTDaemon owns (SPECpower, MLPerf Power) over its TCP port.

Protocol (reference/power-meters.md §3; mlcommons/power-dev ``ptd_client_server``; SPEC's
``power.pm``): CRLF-terminated text lines, one reply line per command except ``RL``.

- ``Hello`` → ``Hello, PTDaemon here!`` (anything else: not PTDaemon);
- ``Identify`` → ``driver,interval ms,can watts,volts,amps,pf,energy,freq,accepted,version=…,OS=…,
  mode=…,can accuracy,can set range,channels,…``;
- ``RR`` → ``Ranges,{A auto},{A range},{V auto},{V range}``; ``SR,V,<range|Auto>`` and
  ``SR,A,…`` → ``Range V changed`` (or an error);
- ``Go,<period ms>,0,<mark>`` → ``Starting untimed measurement…``: samples every period until
  ``Stop`` (→ ``Stopping untimed measurement``);
- ``RL`` → ``Last N samples`` and N lines ``Time,<date time>,Watts,W,Volts,V,Amps,A,PF,pf[,Mark,m]``,
  the samples not read yet; PTDaemon waits up to one period when there is none;
- ``Uncertainty`` → ``Uncertainty,avg,min,max,total,invalid,valid,unknown`` since ``Go``
  (relative, 0.01 = 1 %; a negative average: unknown, as with auto-ranging).

On start the client checks Hello, reads Identify (the meter's identity), stops a measurement left
running, sets the ranges asked for and sends ``Go``. Each ``read()`` asks ``RL``: the reading is the
mean of the new samples (normally one per period, each PTDaemon's average over it). A sample
whose watts are negative (PTDaemon's -1 error, -2 missed sample), NaN or absurd is dropped (and
counted as an invalid reading); an
``RL`` whose samples are all bad, an error reply, garbage or a reply cut short raises
:class:`InvalidReading`. PTDaemon's timestamps are not used (their date order differs between
versions): the exporter stamps the reading. Where PTDaemon estimates accuracy, the reading's
uncertainty is a sample's own ``Uncertainty`` field where the lines carry one, else the running
average ``Uncertainty`` reports since ``Go`` (the figure SPEC's tools check). ``close()`` sends
``Stop``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltelemetry.exporters.pm.meter import NUMBER, InvalidReading, MeterError, MeterIdentity, MeterReading, decode_reply
from mltelemetry.exporters.pm.plugin import Connection, MeterOption, MeterPlugin
from mltelemetry.exporters.pm.transport import LineReader, Link, TcpLink, parse_tcp

if TYPE_CHECKING:
    from mltelemetry.exporters.pm.ptd_emulator import PtdEmulator

log = logging.getLogger(__name__)

DEFAULT_PORT = 8888
HELLO = "Hello, PTDaemon here!"
_LAST = re.compile(r"Last (\d{1,6}) samples?", re.ASCII)
_CHANNEL = re.compile(r"Ch\d+", re.ASCII)
MAX_POWER_W = 1e9  # SPEC's limit for "unreasonably large"
_MAX_LINE = 1024


@dataclass(frozen=True)
class Sample:
    """One PTDaemon sample: W, V, A (None where invalid or not measured) and its uncertainty (ratio)."""

    watts: float | None
    volts: float | None
    amps: float | None
    uncertainty: float | None = None


@dataclass(frozen=True)
class PtdIdentity:
    """What ``Identify`` says: the meter's identity, its averaging interval (ms, None if unknown),
    whether PTDaemon estimates accuracy, and its channel count."""

    meter: MeterIdentity
    interval_ms: float | None
    can_accuracy: bool
    channels: int


def _number(text: str) -> float | None:
    text = text.strip()
    if not NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def parse_identify(text: str) -> PtdIdentity:
    """An ``Identify`` reply; fields that are missing or odd are left unknown."""
    fields = [f.strip() for f in text.strip().split(",")]
    version = next((f.removeprefix("version=") for f in fields if f.startswith("version=")), "")
    version_at = next((i for i, f in enumerate(fields) if f.startswith("version=")), None)
    interval = _number(fields[1]) if len(fields) > 1 else None
    flags = fields[version_at + 3:version_at + 6] if version_at is not None else []
    can_accuracy = len(flags) > 0 and flags[0] == "1"
    channels = int(flags[2]) if len(flags) > 2 and flags[2].isdigit() else 1
    model = fields[0] if fields and fields[0] else "PTDaemon"
    return PtdIdentity(MeterIdentity(model=model, firmware=f"PTDaemon {version}" if version else "",
                                     raw=text.strip()), interval, can_accuracy, channels)


def parse_last(line: bytes) -> int:
    """How many sample lines an ``RL`` reply announces (``Last N samples``)."""
    text = decode_reply(line)
    match = _LAST.fullmatch(text.strip())
    if not match:
        raise InvalidReading(f"PTDaemon answered RL with {text[:60]!r}")
    return int(match[1])


def parse_sample(line: bytes) -> Sample:
    """One ``Time,…,Watts,W,Volts,V,Amps,A,PF,pf[,Mark,m]`` line; the first (total) channel's values.

    InvalidReading when the line is not a sample; a value that is negative, NaN or absurd is None.
    """
    text = decode_reply(line)
    fields = text.split(",")
    if len(fields) < 4 or fields[0] != "Time":
        raise InvalidReading(f"not a PTDaemon sample: {text[:60]!r}")
    values: dict[str, str] = {}
    for key, value in zip(fields[2::2], fields[3::2]):
        if _CHANNEL.fullmatch(key) or key == "Mark":
            break  # per-channel values follow the total; the mark ends the sample
        values.setdefault(key, value)
    if "Watts" not in values:
        raise InvalidReading(f"sample without watts: {text[:60]!r}")

    def measured(key: str, limit: float) -> float | None:
        value = _number(values.get(key, ""))
        return value if value is not None and 0 <= value <= limit else None

    uncertainty = measured("Uncertainty", 10.0)
    return Sample(measured("Watts", MAX_POWER_W), measured("Volts", 1e6), measured("Amps", 1e6), uncertainty)


def parse_uncertainty(text: str) -> tuple[float, int] | None:
    """``Uncertainty,avg,min,max,total,invalid,valid,unknown`` (first channel) as (average, samples with a
    known uncertainty); None when the average is unknown (negative) or the reply is not that."""
    fields = text.strip().split(",")
    if len(fields) < 8 or fields[0] != "Uncertainty":
        return None
    numbers = [_number(f) for f in fields[1:8]]
    if any(n is None for n in numbers):
        return None
    average, _, _, total, _, _, unknown = numbers  # type: ignore[misc]
    if average < 0 or total < unknown or average > 10:  # type: ignore[operator]
        return None
    return average, int(total - unknown)  # type: ignore[operator]


def check_options(address: str, period_ms: int, mark: str) -> tuple[str, int]:
    """Refuse settings PTDaemon cannot take (:class:`MeterError`, one line); the address as (host, port)."""
    if not 100 <= period_ms <= 60_000:
        raise MeterError(f"PTDaemon's sampling period must be 100 to 60000 ms (a meter rate of 0.1 to 60 s), "
                         f"not {period_ms} ms")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", mark):
        raise MeterError(f"mark {mark!r} must be 1 to 64 letters, digits, '_', '.' or '-'")
    return parse_tcp(address, DEFAULT_PORT)


class Ptd:
    """A PTDaemon at ``address`` (``tcp://HOST:PORT``, ``HOST:PORT`` or ``HOST``; port 8888), sampling
    every ``period_ms``. ``voltage_range``/``current_range`` (a number or ``Auto``) are set before ``Go``
    when given; ``mark`` labels the samples in PTDaemon's log."""

    name = "ptd"

    def __init__(self, address: str, *, timeout_s: float = 2.0, period_ms: int = 1000, mark: str = "mltelemetry",
                 voltage_range: str | None = None, current_range: str | None = None) -> None:
        host, port = check_options(address, period_ms, mark)
        self.address = f"{host}:{port}"
        self.timeout_s = timeout_s
        self.period_s = period_ms / 1000
        self._flush = False
        self._link: Link = TcpLink(host, port, timeout_s=timeout_s)
        self._lines = LineReader(self._link)
        try:
            self._initialise(period_ms, mark, voltage_range, current_range)
        except InvalidReading as e:
            self.close()
            raise MeterError(f"{self.address}: PTDaemon did not answer as expected ({e})") from e
        except BaseException:
            self.close()
            raise

    def _initialise(self, period_ms: int, mark: str, voltage_range: str | None, current_range: str | None) -> None:
        hello = decode_reply(self._query("Hello"))
        if hello != HELLO:
            raise MeterError(f"{self.address} is not PTDaemon (it answered Hello with {hello[:60]!r})")
        identify = parse_identify(decode_reply(self._query("Identify")))
        self.identity = identify.meter
        self.can_accuracy = identify.can_accuracy
        log.info("%s: %s", self.address, identify.meter.raw)
        self._query("Stop")  # a measurement left running (our earlier session's) would refuse Go
        log.info("%s: ranges %s", self.address, decode_reply(self._query("RR")))
        for kind, value in (("V", voltage_range), ("A", current_range)):
            if value is not None:
                reply = decode_reply(self._query(f"SR,{kind},{value}"))
                if not reply.lower().startswith(f"range {kind.lower()}"):
                    raise MeterError(f"{self.address}: PTDaemon refused range {kind}={value}: {reply[:80]}")
        reply = decode_reply(self._query(f"Go,{period_ms},0,{mark}"))
        if not reply.startswith("Starting"):
            raise MeterError(f"{self.address}: PTDaemon did not start measuring: {reply[:80]}")

    def _query(self, command: str, timeout_s: float | None = None) -> bytes:
        if self._flush:
            self._lines.reset()
            self._flush = False
        self._link.write(command.encode("ascii") + b"\r\n")
        return self._lines.read_line(self.timeout_s if timeout_s is None else timeout_s, _MAX_LINE)

    def read(self) -> MeterReading:
        """The mean W, V, A of the samples PTDaemon took since the last read, and their uncertainty."""
        try:
            count = parse_last(self._query("RL", self.period_s + self.timeout_s))
            samples = [parse_sample(self._lines.read_line(self.timeout_s, _MAX_LINE)) for _ in range(count)]
        except InvalidReading:
            self._flush = True
            raise
        valid = [s for s in samples if s.watts is not None]
        if not valid:
            raise InvalidReading(f"no valid sample among the {count} new ones", samples=max(count, 1))

        def mean(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return sum(known) / len(known) if known else None

        uncertainty = mean([s.uncertainty for s in valid]) if any(s.uncertainty is not None for s in valid) \
            else self._uncertainty() if self.can_accuracy else None
        return MeterReading(mean([s.watts for s in valid]), mean([s.volts for s in valid]),
                            mean([s.amps for s in valid]), uncertainty=uncertainty, dropped=count - len(valid))

    def _uncertainty(self) -> float | None:
        """PTDaemon's average uncertainty over the samples since ``Go`` (None where unknown)."""
        try:
            parsed = parse_uncertainty(decode_reply(self._query("Uncertainty")))
        except InvalidReading:
            self._flush = True
            return None
        return parsed[0] if parsed is not None and parsed[1] > 0 else None

    def close(self) -> None:
        try:
            self._link.write(b"Stop\r\n")
        except MeterError:
            pass
        self._link.close()

    def __enter__(self) -> Ptd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the plug-in: what `exporter pm --driver ptd` and `pm emulate --driver ptd` are built from ------------
def _connect(port: str, *, rate_s: float, baudrate: int | None, voltage_range: str | None,
             current_range: str | None, mark: str) -> Connection:
    period_ms = round(rate_s * 1000)
    check_options(port, period_ms, mark)  # refuse bad settings now, not on every reconnect

    def open_meter() -> Ptd:
        return Ptd(port, period_ms=period_ms, mark=mark, voltage_range=voltage_range, current_range=current_range)

    return Connection(open_meter, synchronised=True)  # RL waits up to a period for a new sample


def _emulator() -> type[PtdEmulator]:
    from mltelemetry.exporters.pm.ptd_emulator import PtdEmulator

    return PtdEmulator


PLUGIN = MeterPlugin(
    name="ptd",
    meter="any analyzer SPEC PTDaemon owns (SPECpower, MLPerf Power)",
    transports=("tcp",),
    max_power_w=100_000.0,  # PTDaemon drives analyzers of every size
    connect=_connect,
    emulator=_emulator,
    options=(
        MeterOption("voltage_range", None, "Voltage range to set (volts or Auto)", default_text="PTDaemon's"),
        MeterOption("current_range", None, "Current range to set (amperes or Auto)", default_text="PTDaemon's"),
        MeterOption("mark", "mltelemetry", "Mark PTDaemon writes beside our samples in its log"),
    ),
    rate="the Go period",
    default_tcp=f"127.0.0.1:{DEFAULT_PORT}",
)
