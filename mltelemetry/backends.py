"""The backends a command can publish to, and building them from its options.

A backend is a :class:`~mltelemetry.publisher.Publisher` class and a function that builds it from a command's
:class:`~mltelemetry.publisher.PublisherSettings` (None where the options name none); registering it is one line
of ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from mltelemetry.annotations import grafana_publisher
from mltelemetry.cliutil import SinkOptions
from mltelemetry.event_series import EVENT_KEEP_S, EVENT_METRICS
from mltelemetry.influx import influx_publisher
from mltelemetry.publisher import Publisher, PublisherSettings
from mltelemetry.sinks import prometheus_publisher, store_publisher

BACKENDS = (
    prometheus_publisher,  # --listen
    store_publisher,  # --store
    influx_publisher,  # --influx-url
    grafana_publisher,  # --grafana-url
)


def build_publishers(settings: PublisherSettings) -> list[Publisher]:
    """Every publisher the settings name, in ``BACKENDS`` order; if one cannot start, those started are closed."""
    publishers: list[Publisher] = []
    try:
        for backend in BACKENDS:
            publisher = backend(settings)
            if publisher is not None:
                publishers.append(publisher)
    except BaseException:
        for publisher in publishers:
            publisher.close()
        raise
    return publishers


@contextmanager
def live_events(*, listen: str = "off", host: str, grafana_url: str | None = None,
                options: SinkOptions | None = None, linger_s: float = 15.0) -> Iterator[Sequence[Publisher]]:
    """The workload's live publishers (Prometheus /metrics on ``listen``, the InfluxDB of ``options``, Grafana)
    for the block, closed after it; /metrics waits up to ``linger_s`` for a last scrape of the last events."""
    settings = PublisherSettings(options or SinkOptions(), listen=listen, name="workload", host_label=host,
                                 keep_s=dict.fromkeys(EVENT_METRICS, EVENT_KEEP_S), linger_s=linger_s,
                                 grafana_url=grafana_url)
    with ExitStack() as stack:
        publishers = build_publishers(settings)
        for publisher in publishers:
            stack.callback(publisher.close)
        yield publishers
