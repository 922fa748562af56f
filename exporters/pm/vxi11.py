"""VXI-11 (ONC RPC over TCP): how a WT310E on Ethernet talks, and how MLPerf's sampler reaches it
(pyvisa ``TCPIP::<ip>::INSTR``). Both ends: :class:`Vxi11Link` for the driver, :class:`Vxi11ServerLink`
for the emulator.

The protocol, as far as a meter needs it: the portmapper (program 100000, version 2, TCP port 111)
answers ``GETPORT`` with the port of the device core channel (program 0x0607AF, version 1), on which
``create_link`` opens ``inst0``, ``device_write`` sends one message (flag END), ``device_read`` returns
one response (reason END) or, after ``io_timeout`` ms without one, error 15, ``device_clear`` drops
what the device holds, and ``destroy_link`` closes the link. Messages are XDR-encoded RPC calls in
record-marked fragments (a 4-byte length whose top bit marks the last fragment), with AUTH_NONE.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mltelemetry.exporters.pm.meter import InvalidReading, MeterDisconnected
from mltelemetry.exporters.pm.transport import shut_socket

log = logging.getLogger(__name__)
T = TypeVar("T")

PORTMAPPER, PORTMAPPER_VERSION, GETPORT = 100000, 2, 3
CORE, CORE_VERSION = 0x0607AF, 1
CREATE_LINK, DEVICE_WRITE, DEVICE_READ, DEVICE_CLEAR, DESTROY_LINK = 10, 11, 12, 15, 23
FLAG_END = 0x08
REASON_END = 0x04
ERROR_IO_TIMEOUT, ERROR_INVALID_LINK = 15, 4
IPPROTO_TCP = 6
_LAST = 0x80000000
_MAX_RECORD = 1 << 20


def _opaque(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data + b"\0" * (-len(data) % 4)


class _Unpacker:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def uint(self) -> int:
        if self.at + 4 > len(self.data):
            raise ValueError("XDR data ends early")
        (value,) = struct.unpack_from(">I", self.data, self.at)
        self.at += 4
        return value

    def int(self) -> int:
        value = self.uint()
        return value - (1 << 32) if value >= 1 << 31 else value

    def opaque(self) -> bytes:
        size = self.uint()
        if size > len(self.data) - self.at:
            raise ValueError("XDR opaque longer than the data")
        value = self.data[self.at:self.at + size]
        self.at += size + (-size % 4)
        return value


def _record(payload: bytes) -> bytes:
    return struct.pack(">I", _LAST | len(payload)) + payload


def _split_records(buffer: bytearray) -> list[bytes]:
    """Complete records at the front of ``buffer`` (removed from it); fragments are joined."""
    records, at, pending = [], 0, b""
    while at + 4 <= len(buffer):
        (header,) = struct.unpack_from(">I", buffer, at)
        size = header & ~_LAST
        if size > _MAX_RECORD:
            raise ValueError("RPC fragment too large")
        if at + 4 + size > len(buffer):
            break
        pending += bytes(buffer[at + 4:at + 4 + size])
        at += 4 + size
        if header & _LAST:
            records.append(pending)
            pending = b""
            del buffer[:at]
            at = 0
    return records


# --- the driver's end ----------------------------------------------------------------------
class Vxi11Link:
    """A VXI-11 link to ``device`` on ``host`` (the portmapper at ``portmapper_port``): a :class:`Link`."""

    def __init__(self, host: str, *, portmapper_port: int = 111, device: str = "inst0", timeout_s: float = 2.0) -> None:
        self.description = f"vxi11://{host}:{portmapper_port}/{device}"
        self.timeout_s = timeout_s
        self._xid = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
        try:
            with socket.create_connection((host, portmapper_port), timeout=timeout_s) as portmapper:
                reply = self._call(portmapper, PORTMAPPER, PORTMAPPER_VERSION, GETPORT,
                                   struct.pack(">IIII", CORE, CORE_VERSION, IPPROTO_TCP, 0), timeout_s)
            core_port = reply.uint()
            if not core_port:
                raise MeterDisconnected(f"{self.description}: no VXI-11 core channel registered there")
            self._socket = socket.create_connection((host, core_port), timeout=timeout_s)
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reply = self._core(CREATE_LINK, struct.pack(">iII", os.getpid() & 0x7FFFFFFF, 0, 0) +
                               _opaque(device.encode("ascii")), timeout_s)
            error, self._lid = reply.int(), reply.int()
        except (OSError, ValueError) as e:
            raise MeterDisconnected(f"{self.description}: {getattr(e, 'strerror', None) or e}") from e
        if error:
            self._socket.close()
            raise MeterDisconnected(f"{self.description}: create_link failed with VXI-11 error {error}")

    def _call(self, sock: socket.socket, program: int, version: int, procedure: int, args: bytes,
              timeout_s: float) -> _Unpacker:
        self._xid = (self._xid + 1) & 0x7FFFFFFF
        call = struct.pack(">IIIIIIIIII", self._xid, 0, 2, program, version, procedure, 0, 0, 0, 0) + args
        sock.settimeout(timeout_s)
        sock.sendall(_record(call))
        buffer = bytearray()
        while True:
            try:
                records = _split_records(buffer)
            except ValueError as e:  # the record framing is lost: the stream cannot be resynchronised
                raise ConnectionResetError(f"RPC framing lost ({e})") from e
            for record in records:
                reply = _Unpacker(record)
                if reply.uint() != self._xid:
                    continue  # a late reply to an earlier call
                if reply.uint() != 1 or reply.uint() != 0:
                    raise ValueError("RPC call denied")
                reply.uint()
                reply.opaque()  # verifier
                if reply.uint() != 0:
                    raise ValueError("RPC call not accepted (program, version or procedure unavailable)")
                return reply
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("connection closed by the peer")
            buffer += chunk

    def _core(self, procedure: int, args: bytes, timeout_s: float) -> _Unpacker:
        return self._call(self._socket, CORE, CORE_VERSION, procedure, args, timeout_s)

    def _guarded(self, procedure: int, args: bytes, timeout_s: float, parse: Callable[[_Unpacker], T]) -> T:
        """One core call and the parse of its reply: a lost connection is :class:`MeterDisconnected`, a
        malformed reply (short XDR, an RPC refusal) :class:`InvalidReading`, so the caller resets the link."""
        try:
            return parse(self._core(procedure, args, timeout_s))
        except OSError as e:
            raise MeterDisconnected(f"{self.description}: {e.strerror or e}") from e
        except ValueError as e:
            raise InvalidReading(f"{self.description}: malformed VXI-11 reply ({e})") from e

    def write(self, data: bytes) -> None:
        io_ms = round(self.timeout_s * 1000)
        error = self._guarded(DEVICE_WRITE, struct.pack(">iIII", self._lid, io_ms, 0, FLAG_END) + _opaque(data),
                              self.timeout_s + 1, _Unpacker.int)
        if error:
            raise MeterDisconnected(f"{self.description}: device_write failed with VXI-11 error {error}")

    def read_some(self, timeout_s: float) -> bytes:
        io_ms = max(1, round(timeout_s * 1000))

        def parse(reply: _Unpacker) -> tuple[int, bytes]:
            error = reply.int()
            if error:
                return error, b""
            reply.int()  # reason
            return 0, reply.opaque()

        error, data = self._guarded(DEVICE_READ, struct.pack(">iIIIIi", self._lid, 4096, io_ms, 0, 0, 0),
                                    max(timeout_s, 0) + self.timeout_s, parse)
        if error == ERROR_IO_TIMEOUT:
            return b""
        if error:
            raise MeterDisconnected(f"{self.description}: device_read failed with VXI-11 error {error}")
        return data

    def reset_input(self) -> None:
        error = self._guarded(DEVICE_CLEAR, struct.pack(">iIII", self._lid, 0, 0, 1000), self.timeout_s,
                              _Unpacker.int)
        if error:
            raise MeterDisconnected(f"{self.description}: device_clear failed with VXI-11 error {error}")

    def close(self) -> None:
        try:
            self._core(DESTROY_LINK, struct.pack(">i", self._lid), 0.5)
        except (OSError, ValueError, AttributeError):
            pass
        try:
            self._socket.close()
        except (OSError, AttributeError):
            pass


# --- the emulator's end --------------------------------------------------------------------
@dataclass
class _Client:
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)


class Vxi11ServerLink:
    """The emulator's cable for VXI-11: a portmapper on ``portmapper_port`` (0: a free one) and a core
    channel, both on ``host``. Bytes written by ``device_write`` go to the emulator; what it sends
    is queued and returned one response (up to LF) per ``device_read``, which waits for one up to its
    ``io_timeout``."""

    def __init__(self, host: str = "127.0.0.1", portmapper_port: int = 0) -> None:
        self.host, self.portmapper_port = host, portmapper_port
        self.core_port = 0
        self._listeners: list[socket.socket] = []
        self._clients: list[_Client] = []
        self._output = bytearray()
        self._waiting: list[tuple[_Client, int, int, float]] = []  # (client, xid, max bytes, deadline)

    @property
    def address(self) -> str:
        return f"vxi11://{self.host}:{self.portmapper_port}"

    link = address

    @property
    def plugged(self) -> bool:
        return bool(self._listeners)

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, port))
        except OSError as e:
            listener.close()
            from mltelemetry.errors import MltelemetryError

            raise MltelemetryError(f"cannot listen on {self.host}:{port}: {e.strerror or e}") from None
        listener.listen(4)
        listener.setblocking(False)
        return listener

    def plug(self) -> None:
        if self._listeners:
            return
        portmapper = self._listen(self.portmapper_port)
        try:
            core = self._listen(self.core_port)
        except BaseException:
            portmapper.close()
            raise
        self.portmapper_port, self.core_port = portmapper.getsockname()[1], core.getsockname()[1]
        self._listeners = [portmapper, core]

    def unplug(self) -> None:
        for s in [*self._listeners, *(c.sock for c in self._clients)]:
            shut_socket(s)
        self._listeners, self._clients, self._waiting = [], [], []
        self._output.clear()

    def fds(self) -> list[int]:
        return [s.fileno() for s in self._listeners] + [c.sock.fileno() for c in self._clients]

    def next_deadline(self) -> float | None:
        return min((w[3] for w in self._waiting), default=None)

    def service(self, now: float) -> None:
        """Answer reads that waited past their io_timeout with error 15."""
        for waiting in [w for w in self._waiting if w[3] <= now]:
            self._waiting.remove(waiting)
            self._reply(waiting[0], waiting[1], struct.pack(">ii", ERROR_IO_TIMEOUT, 0) + _opaque(b""))

    def readable(self, fd: int) -> tuple[bytes, bool]:
        for listener in self._listeners:
            if fd == listener.fileno():
                try:
                    sock, _ = listener.accept()
                except OSError:
                    return b"", False
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._clients.append(_Client(sock))
                return b"", False
        client = next((c for c in self._clients if c.sock.fileno() == fd), None)
        if client is None:
            return b"", False
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return b"", False
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return b"", False
        client.buffer += data
        written = bytearray()
        try:
            for record in _split_records(client.buffer):
                written += self._handle(client, record, time.monotonic())
        except ValueError:
            self._drop(client)
        return bytes(written), False

    def _drop(self, client: _Client) -> None:
        client.sock.close()
        self._clients = [c for c in self._clients if c is not client]
        self._waiting = [w for w in self._waiting if w[0] is not client]

    def _reply(self, client: _Client, xid: int, results: bytes, accept: int = 0) -> None:
        message = struct.pack(">IIIIII", xid, 1, 0, 0, 0, accept) + results
        try:
            client.sock.sendall(_record(message))
        except OSError:
            self._drop(client)

    def _handle(self, client: _Client, record: bytes, now: float) -> bytes:
        """One RPC call; returns the bytes a device_write delivered to the emulator."""
        call = _Unpacker(record)
        xid, kind, _, program, version, procedure = (call.uint() for _ in range(6))
        call.uint()
        call.opaque()  # credentials
        call.uint()
        call.opaque()  # verifier
        if kind != 0:
            return b""
        if program == PORTMAPPER and procedure == GETPORT:
            wanted = call.uint()
            self._reply(client, xid, struct.pack(">I", self.core_port if wanted == CORE else 0))
        elif program == PORTMAPPER and procedure == 0:
            self._reply(client, xid, b"")
        elif program != CORE or version != CORE_VERSION:
            self._reply(client, xid, b"", accept=1)  # PROG_UNAVAIL
        elif procedure == CREATE_LINK:
            self._reply(client, xid, struct.pack(">iiII", 0, 1, 0, 4096))
        elif procedure == DEVICE_WRITE:
            call.int(), call.uint(), call.uint(), call.uint()
            data = call.opaque()
            self._reply(client, xid, struct.pack(">iI", 0, len(data)))
            return data
        elif procedure == DEVICE_READ:
            call.int()
            size, io_ms = call.uint(), call.uint()
            self._waiting.append((client, xid, max(1, size), now + io_ms / 1000))
            self._serve_reads()
        elif procedure == DEVICE_CLEAR:
            self._output.clear()
            self._reply(client, xid, struct.pack(">i", 0))
        elif procedure == DESTROY_LINK:
            self._reply(client, xid, struct.pack(">i", 0))
        else:
            self._reply(client, xid, b"", accept=3)  # PROC_UNAVAIL
        return b""

    def _serve_reads(self) -> None:
        while self._waiting and self._output:
            client, xid, size, _ = self._waiting.pop(0)
            end = self._output.find(b"\n")
            take = min(size, end + 1 if end >= 0 else len(self._output))
            data, reason = bytes(self._output[:take]), REASON_END if end >= 0 and take == end + 1 else 0
            del self._output[:take]
            self._reply(client, xid, struct.pack(">ii", 0, reason) + _opaque(data))

    def send(self, data: bytes) -> None:
        self._output += data
        self._serve_reads()
