"""``--compare codecarbon``: CodeCarbon's offline estimate of each run, stored on the run event.

The tracker starts just before the run's window opens (CodeCarbon's start-up, about 2 s, stays
out of the run) and stops inside it, as the run ends; its estimate goes onto the run event as
``codecarbon_energy_joules`` (and its parts), so the analysis can put it beside the meter's
figure (the paper's fig. 9). CodeCarbon is an optional extra (``mltelemetry[codecarbon]``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError, UsageError

log = logging.getLogger(__name__)

J_PER_KWH = 3.6e6
COMPARE_TOOLS = ("codecarbon",)


class CodeCarbonCompare:
    """Wraps each run in an ``OfflineEmissionsTracker`` (``country_iso_code`` sets only the emission factor;
    ``measure_power_secs`` is CodeCarbon's sampling interval)."""

    def __init__(self, *, country_iso_code: str = "DEU", measure_power_secs: float = 1.0,
                 tracker_factory: Callable[..., Any] | None = None) -> None:
        if tracker_factory is None:
            try:
                from codecarbon import OfflineEmissionsTracker
            except ImportError as e:
                raise MltelemetryError("--compare codecarbon needs CodeCarbon: pip install 'mltelemetry[codecarbon]'"
                                       ) from e
            tracker_factory = OfflineEmissionsTracker
        self.factory = tracker_factory
        self.options = {"country_iso_code": country_iso_code, "measure_power_secs": measure_power_secs,
                        "log_level": "error"}

    def _tracker(self, project: str) -> Any:
        try:  # CodeCarbon 3: no output but the object's own data
            return self.factory(project_name=project, output_methods=[], **self.options)
        except TypeError:  # CodeCarbon 2
            return self.factory(project_name=project, save_to_file=False, **self.options)

    def start(self, project: str) -> Any:
        """A started tracker, or None when CodeCarbon fails to start (logged; the run goes on)."""
        try:
            tracker = self._tracker(project)
            tracker.start()
            return tracker
        except Exception as e:
            log.warning("CodeCarbon did not start: %s", e)
            return None

    def stop(self, tracker: Any) -> dict[str, Any]:
        """Stop ``tracker``; its estimate as event fields (J, kg, s)."""
        if tracker is None:
            return {"codecarbon_error": "CodeCarbon did not start"}
        try:
            tracker.stop()
            data = tracker.final_emissions_data
        except Exception as e:
            log.warning("CodeCarbon failed to stop: %s", e)
            return {"codecarbon_error": f"{type(e).__name__}: {e}"}
        fields = {
            schema.FIELD_CODECARBON_ENERGY: float(data.energy_consumed) * J_PER_KWH,
            schema.FIELD_CODECARBON_ENERGY_KWH: float(data.energy_consumed),
            "codecarbon_cpu_energy_joules": float(data.cpu_energy) * J_PER_KWH,
            "codecarbon_gpu_energy_joules": float(data.gpu_energy) * J_PER_KWH,
            "codecarbon_ram_energy_joules": float(data.ram_energy) * J_PER_KWH,
            "codecarbon_emissions_kg": float(data.emissions),
            "codecarbon_duration_s": float(data.duration),
        }
        version = getattr(data, "codecarbon_version", None)
        if version:
            fields["codecarbon_version"] = str(version)
        return fields


def make_compare(tool: str | None, **options: Any) -> CodeCarbonCompare | None:
    if tool in (None, "", "none"):
        return None
    if tool not in COMPARE_TOOLS:
        raise UsageError(f"--compare knows {', '.join(COMPARE_TOOLS)}, not {tool!r}")
    return CodeCarbonCompare(**options)
