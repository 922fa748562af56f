"""mltelemetry.analysis: campaign figures from any backend, for the command line and for notebooks.

The Python API::

    from mltelemetry.analysis import analyze

    result = analyze("lab.db", "resnet-sweep")          # or "http://prometheus:9090", "influxdb+http://…/db"
    result.windows   # DataFrame: one row per run, action and epoch (energy_wh, induced_wh, mean_power_w, …)
    result.summary   # DataFrame: per scenario and action, n and mean/std/CI/median/min/max of every figure
    result.tests     # DataFrame: scenario against scenario (Welch's t, Mann–Whitney U, effect sizes)
    result.sensors   # DataFrame: the meter against the on-board sensors (GPU + RAPL) and CodeCarbon
    result.baseline_power_w, result.notes

Modules (a pipeline: source → windows → figure providers → statistics → outputs):

- ``sources``: the embedded store, a Prometheus-compatible API, InfluxDB (InfluxQL);
- ``windows``: the campaign's events with their edges; ``series``: the series read once per metric (per host);
- ``figures``: one provider module per group of figures (wall, device, hosts, gpus, indicators, training, flags,
  baseline, outliers), registered in ``figures/__init__.py``; ``energy``: counter arithmetic at window edges;
- ``summary``: the per-scenario statistics, tests and variants; ``stats``: statistics over runs;
- ``campaign``: ``analyze_campaign``, which runs the pipeline, and its result ``CampaignAnalysis``;
- ``compare``: two campaigns side by side; ``report``: the HTML report; ``oscar``: OSCAR's files;
- ``cli``: ``mltelemetry analyze``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mltelemetry.analysis.campaign import CampaignAnalysis, analyze_campaign
from mltelemetry.analysis.sources import DEFAULT_LOOKBACK_S, Source, open_source
from mltelemetry.store import Store

__all__ = ["CampaignAnalysis", "Source", "analyze", "analyze_campaign", "open_source"]


def analyze(source: str | Path | Store | Source, campaign: str, host: str | Sequence[str] | None = None, *,
            lookback_s: float = DEFAULT_LOOKBACK_S, traces: bool = False, all_hosts: bool = False
            ) -> CampaignAnalysis:
    """Every figure of ``campaign`` as DataFrames (``.windows``, ``.summary``, ``.tests``, ``.correlations``,
    ``.sensors``), as ``mltelemetry analyze`` computes them.

    ``source`` is what ``--source`` takes (a store file, ``http(s)://`` for a Prometheus-compatible API,
    ``influxdb+http(s)://HOST:PORT/DATABASE``), an open :class:`~mltelemetry.store.Store` or a source; one
    opened here is closed again. ``host`` picks one host's series where several were recorded, and a list of
    hosts (or ``all_hosts``) analyses several as one: energies summed, each host's share in ``figure[host]``
    columns; ``lookback_s``
    is how far back a Prometheus-compatible source looks for the events; ``traces`` adds the per-second meter
    power of every run (``.traces``, what the report plots). Raises
    :class:`~mltelemetry.errors.MltelemetryError` where the campaign has no events.
    """
    opened = open_source(source, lookback_s=lookback_s)
    try:
        return analyze_campaign(opened, campaign, host, traces=traces, all_hosts=all_hosts)
    finally:
        if opened is not source:
            opened.close()
