"""Two versions of the exporters side by side: CPU-s per hour of the host (or PM) exporter of a base commit and of
this tree, each scraped every second by one real Prometheus and writing a store only, in the same window.

A shared machine's load moves every figure by tens of percent between runs (the exporters' ticks run on cold
caches); run side by side, base and new see the same load, so their ratio is what a change is worth.

    .venv/bin/python bench/overhead_ab.py --base 12c9417 --seconds 120 [--exporter pm] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from overhead_bench import cpu_and_rss, free_port, stop_all
from provenance import provenance

ROOT = Path(__file__).resolve().parent.parent
# The repository's folders are subpackages of one import package (pyproject's package-dir): assemble it.
SUBPACKAGES = ("exporters", "workload", "analysis", "deploy", "grafana")
RUN = "import sys; {path}sys.argv[0] = 'mltelemetry'; from mltelemetry.cli import main; main()"


def base_package(commit: str, where: Path) -> Path:
    """The import package of ``commit`` under ``where`` (put first on sys.path, it wins over the editable install)."""
    source = where / "source"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    package = where / "package"
    shutil.copytree(source / "mltelemetry", package / "mltelemetry")
    for sub in SUBPACKAGES:
        shutil.copytree(source / sub, package / "mltelemetry" / sub)
    return package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare this tree with")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--exporter", choices=("host", "pm"), default="host")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        code = {"base": RUN.format(path=f"sys.path.insert(0, {str(base_package(args.base, tmp_path))!r}); "),
                "new": RUN.format(path="")}
        background, measured, ports = [], {}, {"base": free_port(), "new": free_port()}
        for version in ("base", "new"):
            for scraped in (True, False):
                name = f"{version}, {'store + /metrics scraped' if scraped else 'store only'}"
                command = [sys.executable, "-c", code[version], "exporter", args.exporter,
                           "--store", str(tmp_path / f"{version}{scraped}.db"),
                           "--listen", f"127.0.0.1:{ports[version]}" if scraped else "off"]
                if args.exporter == "pm":
                    link = tmp_path / f"wt310-{version}{scraped}"
                    background.append(subprocess.Popen(
                        [sys.executable, "-m", "mltelemetry", "pm", "emulate", "--driver", "wt300", "--link", str(link),
                         "--profile", "constant:100"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    while not link.exists():
                        time.sleep(0.1)
                    command += ["--driver", "wt300", "--port", str(link)]
                measured[name] = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        config = tmp_path / "prometheus.yml"
        config.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: b\n    static_configs:\n"
                          f"      - targets: ['127.0.0.1:{ports['base']}', '127.0.0.1:{ports['new']}']\n")
        background.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{free_port()}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            time.sleep(args.warmup)
            window, per_hour, rss_mb = cpu_and_rss(measured, args.seconds)
        finally:
            stop_all([*measured.values(), *background])
    print(f"{args.exporter} exporter, base {args.base} against this tree, window {window:.0f} s")
    print("| process | CPU-s per hour | new / base | RSS MB |")
    print("|---|---|---|---|")
    for name, value in per_hour.items():
        base = per_hour[name.replace("new,", "base,")]
        print(f"| {name} | {value:.2f} | {value / base:.2f} | {rss_mb[name]:.0f} |")
    if args.out:
        args.out.write_text(json.dumps({**provenance(), "base": args.base, "exporter": args.exporter,
                                        "window_s": window, "cpu_s_per_hour": per_hour, "rss_mb": rss_mb}, indent=2))


if __name__ == "__main__":
    main()
