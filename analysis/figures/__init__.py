"""The figure providers: each module computes a few figures per window and declares their names in ``FIGURES``.

A provider is a module with ``FIGURES`` (the columns it adds, summarised per scenario) and ``provide(ctx)``
(:class:`~mltelemetry.analysis.figures.context.Context`). Window providers run in the order below, each reading
the series and the columns of those before it; then the windows become a table and the table providers run
(figures that need other windows: the baseline runs, a scenario's runs). A new figure is one module here, one
line below, and its test.
"""

from __future__ import annotations

from mltelemetry.analysis.figures import baseline, device, flags, gpus, hosts, indicators, outliers, training, wall

WINDOW_PROVIDERS = [
    wall,  # wall energy and mean power from the meter; its coverage and gaps
    device,  # GPU and RAPL energy, the GPU's share, the sensors' sum
    hosts,  # each host's share, when several are analysed as one
    gpus,  # each GPU's energy, power and load, when there are several
    indicators,  # hardware indicators (paper table 2) and sensor coverage
    training,  # the training script's fields, efficiency, time and energy to target, per token, CodeCarbon
    flags,  # which windows are not trusted, and why
]
TABLE_PROVIDERS = [
    baseline,  # baseline power and induced energy
    outliers,  # outlier runs
]


def figure_names() -> list[str]:
    """Every figure the registered providers declare, in their order: the figure columns of the windows table,
    summarised per scenario."""
    return ["duration_s"] + [name for provider in WINDOW_PROVIDERS + TABLE_PROVIDERS for name in provider.FIGURES]



