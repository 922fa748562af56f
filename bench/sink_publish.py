"""The /metrics sink's share of a tick, this tree against a base commit: a host tick's samples published (and the
page rendered, as after a scraped tick) TICKS times, GAP seconds apart so that each runs on cold caches as in an
exporter; CPU time of the publishing thread per tick, median of REPEAT processes of each version, alternating.

    .venv/bin/python bench/sink_publish.py --base edef974 [--ticks 40] [--gap 0.25] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from overhead_ab import base_package

MEASURE = """
import sys, time
from mltelemetry.exporters.host import HostCollector
from mltelemetry.sinks import PrometheusSink
ticks, gap = int(sys.argv[1]), float(sys.argv[2])
collector, sink = HostCollector("sut"), PrometheusSink("127.0.0.1", 0)
samples = [collector.sample(time.time_ns()) for _ in range(ticks)]
alone = rendered = 0.0
for i, tick in enumerate(samples):
    time.sleep(gap)
    began = time.thread_time()
    sink.publish_samples(tick)  # renders too when the page was scraped since the last publish
    spent = time.thread_time() - began
    if i % 2:
        rendered += spent
    else:
        alone += spent
        sink.metrics("application/openmetrics-text", "bench")  # scraped: the next publish renders
sink.close()
print(alone / (ticks // 2) * 1e6, rendered / (ticks // 2) * 1e6)
"""


def measure(pythonpath: list[str], ticks: int, gap: float) -> tuple[float, float]:
    code = f"import sys; sys.path[:0] = {pythonpath!r}\n" + MEASURE
    out = subprocess.run([sys.executable, "-c", code, str(ticks), str(gap)], check=True, capture_output=True, cwd="/",
                         text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between publishes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"base": [], "this tree": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"base": [str(base_package(args.base, Path(tmp)))], "this tree": []}
        for _ in range(args.repeat):
            for version, path in paths.items():
                results[version].append(measure(path, args.ticks, args.gap))
    print(f"host tick's samples, {args.gap} s apart, µs of CPU per publish (median of {args.repeat} processes)")
    print("| version | publish | publish + render |")
    print("|---|---|---|")
    for version, runs in results.items():
        print(f"| {version if version != 'base' else args.base} | {statistics.median(r[0] for r in runs):.0f} "
              f"| {statistics.median(r[1] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
