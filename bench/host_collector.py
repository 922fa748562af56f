"""CPU time of one host collector tick (``HostCollector.sample()``), this tree beside a base version.

Each version runs in fresh processes, alternating (base, this tree, base, ...), each process taking ``--ticks``
ticks back to back ``--rounds`` times; prints each process' best and median µs per tick, and the RAPL zones
found (each zone is one more file read a tick). The base is an import folder put first on the path: a
package assembled by ``bench/overhead_ab.py``'s ``base_package`` (``--base COMMIT``) or an installed wheel
(``--base-site DIR``, as on the device machine).

    python3 bench/host_collector.py --base 761e57a [--processes 3] [--ticks 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import socket, sys, time
from mltelemetry.exporters.host import HostCollector
collector = HostCollector(socket.gethostname())
ticks, rounds = int(sys.argv[1]), int(sys.argv[2])
per_tick = []
for _ in range(rounds):
    start = time.process_time()
    for _ in range(ticks):
        collector.sample(time.time_ns())
    per_tick.append((time.process_time() - start) / ticks * 1e6)
print(len(collector.rapl), *per_tick)
"""


def run(first_on_path: str | None, ticks: int, rounds: int) -> tuple[int, list[float]]:
    path = [first_on_path] if first_on_path else []
    code = f"import sys; sys.path[:0] = {path!r}\n" + PROBE
    out = subprocess.run([sys.executable, "-c", code, str(ticks), str(rounds)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), [float(x) for x in out[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", metavar="COMMIT", help="a commit of this repository")
    base.add_argument("--base-site", metavar="DIR", help="a folder the base version is installed in")
    parser.add_argument("--processes", type=int, default=3, help="processes of each version")
    parser.add_argument("--ticks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.base:
            sys.path.insert(0, str(Path(__file__).parent))
            from overhead_ab import base_package
            base_dir = str(base_package(args.base, Path(tmp)))
        else:
            base_dir = args.base_site
        results: dict[str, list[float]] = {"base": [], "this tree": []}
        for _ in range(args.processes):
            for name, first in (("base", base_dir), ("this tree", None)):
                zones, per_tick = run(first, args.ticks, args.rounds)
                results[name].append(min(per_tick))
                print(f"{name:9}  RAPL zones {zones}  µs a tick: best {min(per_tick):6.1f}, "
                      f"median {statistics.median(per_tick):6.1f}")
    medians = {name: statistics.median(best) for name, best in results.items()}
    print(f"median of the processes' best: base {medians['base']:.1f} µs, this tree {medians['this tree']:.1f} µs "
          f"({medians['this tree'] / medians['base']:.2f})")


if __name__ == "__main__":
    main()
