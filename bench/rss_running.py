"""Where a running exporter's resident memory is: its largest mappings, threads and RSS after a while scraped.

Starts ``mltelemetry exporter KIND`` (interval 1 s, or 0.1 s for gpu) writing to a fresh store and serving
/metrics, scrapes it every second for ``--seconds``, then prints VmRSS (anonymous / file-backed), its threads and
its largest mappings from /proc/PID/smaps, once per ``--env`` setting given (NAME=VALUE, e.g. MALLOC_ARENA_MAX=1;
an empty setting is the exporter as it is), one exporter after another.

    python3 bench/rss_running.py --exporter gpu --seconds 60 [--env MALLOC_ARENA_MAX=1 ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter

from overhead_bench import free_port

COMMANDS = {"host": ["host", "--interval", "1"], "gpu": ["gpu", "--gpus", "0", "--interval", "0.1"]}


def mappings(pid: int) -> Counter:
    """RSS in MiB of each mapped file ([anonymous] and [heap], [stack] as the kernel names them)."""
    rss, name = Counter(), None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else "[anonymous]"
            elif parts[0] == "Rss:":
                rss[name] += int(parts[1]) / 1024
    return rss


def measure(kind: str, seconds: float, setting: str) -> None:
    env = dict(os.environ)
    if setting:
        key, _, value = setting.partition("=")
        env[key] = value
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen([sys.executable, "-m", "mltelemetry", "exporter", *COMMANDS[kind],
                                    "--store", f"{tmp}/s.db", "--listen", f"127.0.0.1:{port}"], env=env)
        try:
            deadline = time.monotonic() + seconds
            time.sleep(3)
            while time.monotonic() < deadline:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                time.sleep(1)
            status = dict(line.split(":", 1) for line in open(f"/proc/{process.pid}/status"))
            rss, anon, file = (int(status[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "RssFile"))
            threads = len(os.listdir(f"/proc/{process.pid}/task"))
            print(f"\n{kind} exporter, {setting or 'as it is'}, after {seconds:.0f} s scraped every second: "
                  f"{rss:.1f} MiB (anonymous {anon:.1f}, files {file:.1f}), {threads} threads")
            for name, mib in mappings(process.pid).most_common(8):
                print(f"   {mib:6.1f} MiB  {name}")
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", choices=sorted(COMMANDS), default="host")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    for setting in ["", *args.env]:
        measure(args.exporter, args.seconds, setting)


if __name__ == "__main__":
    main()
