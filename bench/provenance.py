"""Where a benchmark's numbers come from, written into its results file: the commit, the command, when, where.

Bench scripts run as ``python bench/NAME.py``, so this module is importable from them as ``provenance``.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def provenance() -> dict[str, object]:
    """The commit (and whether the tree had uncommitted changes), the command line, the UTC time and the machine."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None,
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}"}
