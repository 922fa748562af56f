"""What a power-meter plug-in declares, so the rest of the code never names a meter.

Each meter's module (``wt300.py``, ``mcp39f511.py``, ``ptd.py``) ends with a ``PLUGIN``: its name,
what it reads, how it is reached (``TRANSPORTS``), the largest power it can measure, its own options
with their defaults, how to connect, and its emulator (a module beside it, imported when used).
``registry.py`` lists the plug-ins; ``mltelemetry exporter pm`` and ``mltelemetry pm emulate`` are
built from that list (``cli.py``), and the collector takes each meter's power range from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mltelemetry.exporters.pm.emulator import Emulator
    from mltelemetry.exporters.pm.meter import Driver

TRANSPORTS = {"serial": "serial", "usbtmc": "USB-TMC", "tcp": "TCP", "vxi11": "VXI-11"}
"""How a driver can reach its meter (``transport.open_link`` tells them apart by the port's text), and how
--help names them. An emulator serves serial and USB-TMC meters on a pseudo-terminal (``--link``)."""


@dataclass(frozen=True)
class MeterOption:
    """One option of one meter: ``--<name>`` (``--<name>/--no-<name>`` for a bool default), shown in the
    meter's help panel. ``help`` is said first, then ``(default <default>[, <default_text>])``; a None default
    means "leave the meter's own setting", which ``default_text`` names. ``keyword`` is the emulator's
    constructor argument the option sets (emulator options only; default: ``name``)."""

    name: str
    default: object
    help: str
    default_text: str = ""
    min: float | None = None
    keyword: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def value_type(self) -> type:
        return str if self.default is None else type(self.default)

    def help_text(self, *, say_default: bool = True) -> str:
        """The option's --help; ``say_default=False`` where the command line shows the default itself."""
        if not say_default:
            return f"{self.help}{f' ({self.default_text})' if self.default_text else ''}."
        if self.default is None:
            own = self.default_text or "the meter's own"
            return f"{self.help} (default: {own})."
        shown = ("on" if self.default else "off") if isinstance(self.default, bool) else f"{self.default:g}" \
            if isinstance(self.default, float) else str(self.default)
        return f"{self.help} (default {shown}{', ' + self.default_text if self.default_text else ''})."


@dataclass(frozen=True)
class Connection:
    """How the exporter reaches a meter whose options were checked: ``open`` opens it (called again on every
    reconnect); ``synchronised`` says each read waits for an update the meter has not delivered yet, so the
    exporter's interval must not be shorter than the meter's; ``unsynchronised_hint`` tells the user how to
    read without waiting, where the meter can ("use --no-sync")."""

    open: Callable[[], Driver]
    synchronised: bool = False
    unsynchronised_hint: str = ""


@dataclass(frozen=True)
class MeterPlugin:
    """One meter driver as the command line, the collector and the docs see it.

    - ``name``: ``--driver``'s value and the ``driver`` label of ``pm_meter_info``;
    - ``meter``: what it reads, for ``--help``;
    - ``transports``: keys of ``TRANSPORTS`` the driver speaks (and its emulator serves);
    - ``max_power_w``: the most active power the meter can measure at all (its top ranges with their
      over-range margin); the collector counts a reading above it as invalid and drops it;
    - ``connect(port, *, rate_s, baudrate, **options)``: refuses bad settings now (``MeterError``, one
      line) and returns the :class:`Connection`; ``options`` are the meter's own, defaults applied;
    - ``emulator()``: the emulator class (an :class:`~mltelemetry.exporters.pm.emulator.Emulator`), taking
      ``(profile, link, *, faults, clock_shift_s, **emulator options by keyword)``;
    - ``options``, ``emulator_options``: the meter's own options of ``exporter pm`` and ``pm emulate``;
    - ``baudrate``: the default serial speed (None: not a serial meter, ``--baudrate`` is refused);
    - ``rate``: what ``--meter-rate`` sets on this meter, for ``--help`` ("" where it sets nothing);
    - ``default_tcp``: where ``pm emulate`` listens when given no place (None: a place must be given).
    """

    name: str
    meter: str
    transports: tuple[str, ...]
    max_power_w: float
    connect: Callable[..., Connection]
    emulator: Callable[[], type[Emulator]]
    options: tuple[MeterOption, ...] = ()
    emulator_options: tuple[MeterOption, ...] = ()
    baudrate: int | None = None
    rate: str = ""
    default_tcp: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.transports) - set(TRANSPORTS)
        if not self.transports or unknown:
            raise ValueError(f"meter {self.name!r}: transports must be some of {sorted(TRANSPORTS)}, "
                             f"not {sorted(self.transports)}")
        if not self.max_power_w > 0:
            raise ValueError(f"meter {self.name!r}: max_power_w must be positive watts")
