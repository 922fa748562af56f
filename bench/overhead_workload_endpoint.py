"""The workload's /metrics through a paper-sized campaign (issue 11): scrape time and series, bounded.

2 scenarios × 30 runs × 100 epochs (epochs of 2 s on a simulated clock, four numeric fields each, a run
window around them) published into a real ``PrometheusSink``; a keep-alive
client scrapes ``/metrics`` every 15 simulated seconds and after the campaign. Prints scrape time
(median, p99, max: wall clock, the render included) and the largest page (series, bytes).

    .venv/bin/python bench/overhead_workload_endpoint.py [--out bench/results/workload_endpoint.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import requests
from provenance import provenance

from mltelemetry.event_series import EVENT_KEEP_S, EVENT_METRICS
from mltelemetry.publisher import WindowChange
from mltelemetry.schema import Event
from mltelemetry.sinks import PrometheusSink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    now = [0.0]
    sink = PrometheusSink("127.0.0.1", 0, clock=lambda: now[0], keep_s=dict.fromkeys(EVENT_METRICS, EVENT_KEEP_S),
                          host_label="sut")
    session, url = requests.Session(), f"http://127.0.0.1:{sink.port}/metrics"
    times_ms, largest_series, largest_bytes, next_scrape = [], 0, 0, 15.0

    def scrape() -> None:
        nonlocal largest_series, largest_bytes
        began = time.perf_counter()
        body = session.get(url, timeout=10).content
        times_ms.append((time.perf_counter() - began) * 1000)
        largest_bytes = max(largest_bytes, len(body))
        largest_series = max(largest_series, sum(1 for line in body.splitlines() if line[:1] not in (b"#", b"")))

    def window(action: str, scenario: str, run: int, seconds: float, epoch: int | None = None) -> None:
        nonlocal next_scrape
        event = Event("paper", scenario, run, action, int(now[0] * 1e9), int(now[0] * 1e9), epoch=epoch)
        sink.publish_events(WindowChange(event, closed=False, running=(event,)))
        now[0] += seconds
        event.end_ns = int(now[0] * 1e9)
        event.fields = {"loss": 0.5, "accuracy": 0.9, "val_loss": 0.6, "val_accuracy": 0.8}
        sink.publish_events(WindowChange(event, closed=True))
        while now[0] >= next_scrape:
            next_scrape += 15.0
            scrape()

    try:
        for scenario in ("mnist", "cifar10"):
            for run in range(30):
                for epoch in range(100):
                    window("epoch", scenario, run, 2.0, epoch)
                window("run", scenario, run, 1.0)
        for _ in range(10):
            now[0] = next_scrape
            next_scrape += 15.0
            scrape()
    finally:
        sink.close()
    result = {**provenance(), "events": 2 * 30 * 101, "scrapes": len(times_ms), "median_ms": float(np.median(times_ms)),
              "p99_ms": float(np.percentile(times_ms, 99)), "max_ms": float(max(times_ms)),
              "largest_page_series": largest_series, "largest_page_bytes": largest_bytes, "keep_s": EVENT_KEEP_S}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
