"""mltelemetry.analysis: campaign figures from any backend.

- ``sources``: the embedded store, a Prometheus-compatible API, InfluxDB (InfluxQL);
- ``energy``: counter arithmetic at window edges; ``stats``: statistics over runs;
- ``campaign``: every figure per run, action and epoch, and the per-scenario statistics;
- ``compare``: two campaigns side by side; ``report``: the HTML report; ``oscar``: OSCAR's files;
- ``cli``: ``mltelemetry analyze``.
"""
