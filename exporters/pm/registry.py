"""The power meters this installation knows: one registration line per meter (see ``plugin.py``).

``mltelemetry exporter pm`` and ``mltelemetry pm emulate`` are built from ``PLUGINS`` (``cli.py``), in this
order (the first is ``--driver``'s default).
"""

from __future__ import annotations

from collections.abc import Sequence

from mltelemetry.exporters.pm import mcp39f511, ptd, wt300
from mltelemetry.exporters.pm.plugin import MeterPlugin

PLUGINS: tuple[MeterPlugin, ...] = (
    wt300.PLUGIN,
    mcp39f511.PLUGIN,
    ptd.PLUGIN,
)

DEFAULT_MAX_POWER_W = 100_000.0
"""The power range assumed for a driver no plug-in declares (a scripted driver in a test)."""


def find(name: str, plugins: Sequence[MeterPlugin] = PLUGINS) -> MeterPlugin | None:
    """The plug-in called ``name``, or None."""
    return next((p for p in plugins if p.name == name), None)


def max_power_w(name: str) -> float:
    """The largest power the driver called ``name`` can measure (``DEFAULT_MAX_POWER_W`` if none is registered)."""
    plugin = find(name)
    return plugin.max_power_w if plugin is not None else DEFAULT_MAX_POWER_W
