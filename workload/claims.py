"""Claims: a campaign or run is in the store from the moment it starts, not only once it ends.

A claim is the window's event written at its start with status ``running`` (end = start) and the
owner process (host, pid, the process's start time, so a reused pid is not mistaken for it); the
window's final event replaces it when it closes. So a second process sees a campaign that is
running (and is refused), and a run whose process was killed (SIGKILL, power cut) stays
recognisable: a ``running`` claim whose owner is gone is what ``--resume`` marks ``lost``.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil

from mltelemetry.schema import Event

RUNNING, LOST = "running", "lost"
OWNER_FIELDS = ("owner_host", "owner_pid", "owner_started")


def owner() -> dict[str, Any]:
    """This process as a claim's owner."""
    return {"owner_host": socket.gethostname(), "owner_pid": os.getpid(),
            "owner_started": round(psutil.Process().create_time(), 2)}


def owner_alive(fields: dict[str, Any]) -> bool:
    """Whether the process that wrote a claim still runs. A claim from another host counts as alive: it
    cannot be checked from here. A claim without an owner (written by hand) counts as gone."""
    if fields.get("owner_host") != socket.gethostname():
        return "owner_host" in fields
    try:
        process = psutil.Process(int(fields["owner_pid"]))
        return process.status() != psutil.STATUS_ZOMBIE and \
            round(process.create_time(), 2) == fields.get("owner_started")
    except psutil.AccessDenied:
        return True  # another user's process: it exists
    except (KeyError, ValueError, psutil.Error):
        return False


def describe_owner(fields: dict[str, Any]) -> str:
    return f"process {fields.get('owner_pid')} on {fields.get('owner_host')}"


def stale_claims(rows: list[tuple[int, Event]]) -> list[tuple[int, Event]]:
    """The ``running`` claims among ``rows`` whose process is gone."""
    return [(row, e) for row, e in rows if e.status == RUNNING and not owner_alive(e.fields)]


def as_lost(claim: Event, rows: list[tuple[int, Event]]) -> Event:
    """The claim marked lost, its end moved to the last window its process recorded inside it (the same scenario
    and run for a run; anything for a campaign), so the analysis can tell which windows it holds."""
    inside = [e.end_ns for _, e in rows if e.start_ns >= claim.start_ns and e is not claim and e.status != RUNNING
              and (claim.action == "campaign" or (e.scenario, e.run) == (claim.scenario, claim.run))]
    # A campaign claim ends before the next campaign event of the same name (a later resume) starts.
    later = [e.start_ns for _, e in rows if e.action == "campaign" and e.start_ns > claim.start_ns]
    if claim.action == "campaign" and later:
        inside = [t for t in inside if t <= min(later)]
    return Event(campaign=claim.campaign, scenario=claim.scenario, run=claim.run, action=claim.action,
                 epoch=claim.epoch, start_ns=claim.start_ns, end_ns=max(inside, default=claim.end_ns), status=LOST,
                 fields=dict(claim.fields))
