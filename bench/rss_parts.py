"""What an exporter's resident memory is made of: RSS of a fresh Python after each import an exporter makes.

Each line starts a new interpreter that imports the modules listed up to it and prints its RSS (VmRSS), so
the steps add up the way they do in a running exporter (imports shared by two parts count once, at the
first). Commit, machine and Python version go with the numbers (bench/overhead.md).

    python3 bench/rss_parts.py [--exporter host|pm|gpu] [--python PYTHON]

``--python``: another interpreter, e.g. a plain venv's (this one's site-packages go on its import path, without
their .pth start-up hooks): what an exporter costs where site-packages run no start-up code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from overhead_bench import python_env

STEPS = {
    "host": ["psutil", "typer", "mltelemetry.store", "mltelemetry.sinks", "mltelemetry.exporters.host"],
    "pm": ["serial", "typer", "mltelemetry.store", "mltelemetry.sinks", "mltelemetry.exporters.pm.cli"],
    "gpu": ["pynvml", "pynvml.nvmlInit()", "typer", "mltelemetry.store", "mltelemetry.sinks",
            "mltelemetry.exporters.gpu.cli"],
}
# A step "module.function()" calls that function (NVML's start loads the driver's library).
PROBE = ("import sys, importlib\n"
         "for name in sys.argv[1:]:\n"
         "    module, _, call = name[:-2].rpartition('.') if name.endswith('()') else (name, '', '')\n"
         "    getattr(importlib.import_module(module), call)() if call else importlib.import_module(module)\n"
         "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
         "kib = [int(status[k].split()[0]) for k in ('VmRSS', 'RssAnon', 'RssFile')]\n"
         "print(*(k / 1024 for k in kib), 'pydantic' in sys.modules, len(sys.modules))")


def rss_after(modules: list[str], python: str) -> tuple[float, float, float, bool, int]:
    """RSS, its anonymous and its file-backed part (shared libraries' pages) in MiB, pydantic loaded, modules."""
    out = subprocess.run([python, "-c", PROBE, *modules], capture_output=True, text=True, check=True,
                         env=python_env(python))
    rss, anon, file, pydantic, count = out.stdout.split()
    return float(rss), float(anon), float(file), pydantic == "True", int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", choices=sorted(STEPS), action="append")
    parser.add_argument("--python", default=sys.executable, help="the interpreter measured")
    args = parser.parse_args()
    version = subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"], text=True,
                             capture_output=True, check=True).stdout.strip()
    print(f"Python {version}, {args.python}")
    for exporter in args.exporter or sorted(STEPS):
        before, anon, file, _, _ = rss_after([], args.python)
        print(f"\n{exporter}: a bare Python {before:.1f} MiB (anonymous {anon:.1f}, files {file:.1f})")
        for i, name in enumerate(STEPS[exporter]):
            try:
                rss, anon, file, pydantic, count = rss_after(STEPS[exporter][:i + 1], args.python)
            except subprocess.CalledProcessError as e:
                print(f"  + {name}: failed ({e.stderr.strip().splitlines()[-1]})")
                break
            print(f"  + {name:34} {rss:6.1f} MiB (+{rss - before:4.1f}; anonymous {anon:5.1f}, files {file:5.1f}), "
                  f"{count} modules" + (", pydantic loaded" if pydantic else ""))
            before = rss


if __name__ == "__main__":
    main()
