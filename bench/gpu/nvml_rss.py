"""What NVML's start adds to a process's resident memory, and how much of it the process can give back.

Each case runs in a fresh interpreter: RSS (VmRSS, its anonymous and file-backed parts) before and after
`pynvml.nvmlInit()`, after glibc's `malloc_trim(0)` (returns freed heap pages to the system), the threads NVML
started, and the largest mappings after the start (from /proc/self/smaps). Run on the GPU machine:

    python3 bench/gpu/nvml_rss.py
"""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = r"""
import ctypes, os, sys
def rss():
    status = dict(line.split(':', 1) for line in open('/proc/self/status'))
    return tuple(int(status[k].split()[0]) / 1024 for k in ('VmRSS', 'RssAnon', 'RssFile'))
def fmt(r):
    return f"{r[0]:6.1f} MiB (anonymous {r[1]:5.1f}, files {r[2]:5.1f})"
print('bare         ', fmt(rss()))
import pynvml
print('import pynvml', fmt(rss()))
pynvml.nvmlInit()
print('nvmlInit     ', fmt(rss()), 'threads', len(os.listdir('/proc/self/task')))
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
pynvml.nvmlDeviceGetTotalEnergyConsumption(handle); pynvml.nvmlDeviceGetPowerUsage(handle)
print('first reads  ', fmt(rss()))
libc = ctypes.CDLL('libc.so.6')
libc.malloc_trim(0)
print('malloc_trim  ', fmt(rss()))
maps, name = {}, None
for line in open('/proc/self/smaps'):
    parts = line.split()
    if '-' in parts[0] and not parts[0].endswith(':'):
        name = parts[5] if len(parts) > 5 else '[anonymous]'
    elif parts[0] == 'Rss:':
        maps[name] = maps.get(name, 0) + int(parts[1]) / 1024
for name, mib in sorted(maps.items(), key=lambda kv: -kv[1])[:8]:
    print(f'   {mib:6.1f} MiB  {name}')
"""


def main() -> None:
    print(f"Python {sys.version.split()[0]}")
    import pynvml  # its folder goes on PYTHONPATH, for the run without site
    path = os.pathsep.join([os.path.dirname(pynvml.__file__), os.environ.get("PYTHONPATH", "")])
    for label, flags, env in [("python3", [], {}), ("python3 -S (no site)", ["-S"], {}),
                              ("MALLOC_ARENA_MAX=1", [], {"MALLOC_ARENA_MAX": "1"})]:
        print(f"\n== {label}")
        out = subprocess.run([sys.executable, *flags, "-c", PROBE], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": path, **env})
        print(out.stdout + out.stderr[-500:])


if __name__ == "__main__":
    main()
