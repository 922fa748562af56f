"""A local, size-limited, ordered spool of line-protocol batches for a push sink whose server is away.

The spool is a folder of segment files, one per spooled batch, named ``<sequence>-<lines>.lp``
so that the order and the line count survive a restart without reading them. A segment is
written to a temporary name, flushed to disk and renamed, so a killed exporter leaves either
the whole batch or none of it. Segments are sent oldest first and deleted only once the server
took them: after an outage or a restart the batches arrive in the order they were spooled, and
none is sent twice unless the process dies between the server's answer and the deletion (a
point written twice in InfluxDB overwrites itself: same series, same timestamp).

When the segments pass ``max_bytes`` the oldest are dropped, as Telegraf's metric buffer does,
and their lines counted in ``dropped_lines``. One process owns a spool folder at a time (an
advisory lock); a second one is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mltelemetry.errors import MltelemetryError

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(\d{20})-(\d+)\.lp$")
_TMP_PREFIX = ".tmp-"


class SpoolInUse(MltelemetryError):
    """Another process holds the spool folder."""


@dataclass(frozen=True)
class Segment:
    seq: int
    lines: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.seq:020d}-{self.lines}.lp"


class Spool:
    """FIFO of line-protocol batches in ``directory``, at most ``max_bytes`` (the oldest go first)."""

    def __init__(self, directory: str | Path, max_bytes: int = 512 * 2**20, fsync: bool = True) -> None:
        if max_bytes <= 0:
            raise MltelemetryError(f"the spool size limit must be positive, got {max_bytes} bytes")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dropped_lines = 0
        self._warned_at: float | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / "lock", "a")  # noqa: SIM115 (held for the spool's lifetime)
        except OSError as e:
            raise MltelemetryError(f"cannot use spool folder {self.directory}: {e.strerror or e}") from e
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise SpoolInUse(f"spool folder {self.directory} is in use by another process; "
                                   "give each exporter its own --spool-dir") from None
        found: list[Segment] = []
        for path in self.directory.iterdir():
            if path.name.startswith(_TMP_PREFIX):  # a batch whose writer died before the rename
                path.unlink(missing_ok=True)
            elif m := _SEGMENT.match(path.name):
                found.append(Segment(int(m[1]), int(m[2]), path.stat().st_size))
        self._segments: deque[Segment] = deque(sorted(found, key=lambda s: s.seq))
        self._next_seq = self._segments[-1].seq + 1 if self._segments else 0
        self.bytes = sum(s.size for s in self._segments)
        self.lines = sum(s.lines for s in self._segments)
        if self._segments:
            log.info("spool %s holds %d line(s) from before; they are sent first", self.directory, self.lines)

    @property
    def empty(self) -> bool:
        return not self._segments

    @property
    def fill_ratio(self) -> float:
        """Spooled bytes over the limit, 0 to 1."""
        return min(1.0, self.bytes / self.max_bytes)

    def append(self, lines: Sequence[str]) -> None:
        """Add one batch at the end; drops the oldest batches while the spool is over its limit."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        segment = Segment(self._next_seq, len(lines), len(data))
        tmp = self.directory / f"{_TMP_PREFIX}{segment.name}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self.directory / segment.name)
        except OSError:  # disk full, folder gone: leave no partial segment behind; the caller keeps the batch
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._next_seq += 1
        self._segments.append(segment)
        self.bytes += segment.size
        self.lines += segment.lines
        while self.bytes > self.max_bytes and self._segments:
            oldest = self._segments[0]
            self._remove_oldest(oldest)
            self.dropped_lines += oldest.lines
            if self._warned_at is None or time.monotonic() - self._warned_at > 60:  # once a minute at most
                self._warned_at = time.monotonic()
                log.warning("spool %s is full (%d bytes): dropping its oldest lines, %d so far", self.directory,
                            self.max_bytes, self.dropped_lines)

    def peek(self, max_lines: int) -> tuple[list[Segment], list[str]]:
        """The oldest segments holding at most ``max_lines`` lines (at least one while any is left), and their lines.

        A segment that cannot be read (deleted, unreadable) is dropped and its lines counted in
        ``dropped_lines``, so one lost file does not stall the segments after it.
        """
        taken: list[Segment] = []
        lines: list[str] = []
        for segment in list(self._segments):
            if taken and len(lines) + segment.lines > max_lines:
                break
            try:
                text = (self.directory / segment.name).read_text()
            except (OSError, UnicodeDecodeError) as e:
                if taken:  # return what was read; the bad segment is the oldest at the next peek
                    break
                self._remove_oldest(segment)
                self.dropped_lines += segment.lines
                log.error("spool %s: cannot read segment %s, its %d line(s) are dropped: %s", self.directory,
                          segment.name, segment.lines, e)
                continue
            taken.append(segment)
            lines += text.splitlines()
        return taken, lines

    def pop(self, segments: Sequence[Segment]) -> None:
        """Forget the oldest segments, as ``peek`` gave them, once the server has taken (or refused) them."""
        for segment in segments:
            self._remove_oldest(segment)

    def _remove_oldest(self, segment: Segment) -> None:
        if not self._segments or self._segments[0] != segment:
            raise ValueError(f"segment {segment.name} is not the oldest in {self.directory}")
        (self.directory / segment.name).unlink(missing_ok=True)
        self._segments.popleft()
        self.bytes -= segment.size
        self.lines -= segment.lines

    def close(self) -> None:
        self._lock.close()  # releases the lock
