"""Byte links to a meter: serial (pyserial, any of its URLs), TCP, and Linux USB-TMC character devices.

``open_link(port, ...)`` picks one from the port text:

- ``tcp://HOST:PORT``: a TCP connection (a meter's or a serial server's raw socket, PTDaemon);
- ``vxi11://HOST[:PORT][/DEVICE]``: VXI-11 over Ethernet (a WT310E; ``vxi11.py``), the portmapper
  at PORT (111) and DEVICE ``inst0``;
- ``usbtmc://PATH`` or ``/dev/usbtmcN``: the kernel's USB-TMC driver (a WT310 over USB). Each
  ``read()`` of the device returns one response message, and blocks until it arrives or the
  kernel's timeout (set per read with ``USBTMC_IOCTL_SET_TIMEOUT``) expires. A ``usbtmc://`` path
  that is not a USB-TMC device (a pseudo-terminal, in tests) is read the way a tty is;
- anything else: a serial device path or pyserial URL, 8N1 at ``baudrate``.

Every link reads what is waiting at once instead of one byte per system call (pyserial's
``read_until`` makes a select and a read per byte), and every vendor error (SerialException,
OSError, socket errors) becomes :class:`MeterDisconnected` here, in one place.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol
from urllib.parse import urlsplit

import serial

from mltelemetry.exporters.pm.meter import MeterDisconnected

_CHUNK = 4096
_POLL_S = 0.05  # pyserial's per-read wait: how often a serial read re-checks its deadline

# linux/usb/tmc.h: USBTMC_IOC_NR = 91 ('['); _IOW(91, 10, __u32) and _IO(91, 2)
USBTMC_IOCTL_SET_TIMEOUT = 0x40045B0A
USBTMC_IOCTL_CLEAR = 0x5B02


class Link(Protocol):
    description: str

    def write(self, data: bytes) -> None: ...

    def read_some(self, timeout_s: float) -> bytes:
        """What is waiting, at least one byte; waits up to ``timeout_s`` for it; b"" on timeout."""
        ...

    def reset_input(self) -> None:
        """Drop whatever the meter sent that was not read yet."""
        ...

    def close(self) -> None: ...


def shut_socket(sock: socket.socket) -> None:
    """Shut a socket down, then close it (an emulator pulling its cable): a socket that another thread's select()
    waits on stays open until that select returns, so a closed listener would still accept and a closed connection
    would not end; shutdown takes effect at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # never connected, or already gone
    try:
        sock.close()
    except OSError:
        pass


def read_line(link: Link, timeout_s: float, max_bytes: int = 256) -> bytes:
    """Bytes up to and including LF, or what came before ``timeout_s`` ran out (then without LF)."""
    deadline = time.monotonic() + timeout_s
    line = bytearray()
    while not line.endswith(b"\n") and len(line) < max_bytes:
        chunk = link.read_some(deadline - time.monotonic())
        if not chunk:
            break
        line += chunk
    return bytes(line)


class LineReader:
    """Lines from a link that sends several per reply: bytes after a line's LF are kept for the next."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._buffer = bytearray()

    def read_line(self, timeout_s: float, max_bytes: int = 1024) -> bytes:
        """The next line including its LF, or what came before ``timeout_s`` ran out (then without LF)."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer and len(self._buffer) < max_bytes:
            chunk = self.link.read_some(deadline - time.monotonic())
            if not chunk:
                break
            self._buffer += chunk
        end = self._buffer.find(b"\n")
        end = min(len(self._buffer), max_bytes) if end < 0 else min(end + 1, max_bytes)
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line

    def reset(self) -> None:
        """Drop what was received and not read yet."""
        self._buffer.clear()
        self.link.reset_input()


def read_exact(link: Link, count: int, timeout_s: float) -> bytes:
    """``count`` bytes, or fewer if ``timeout_s`` ran out first."""
    deadline = time.monotonic() + timeout_s
    data = bytearray()
    while len(data) < count:
        chunk = link.read_some(deadline - time.monotonic())
        if not chunk:
            break
        data += chunk
    return bytes(data)


def open_link(port: str, *, baudrate: int = 9600, timeout_s: float = 1.0, tcp_default_port: int | None = None) -> Link:
    """The link the port text names (see the module docstring); MeterDisconnected if it cannot be opened."""
    if port.startswith("tcp://"):
        host, tcp_port = parse_tcp(port, tcp_default_port)
        return TcpLink(host, tcp_port, timeout_s=timeout_s)
    if port.startswith("vxi11://"):
        from mltelemetry.exporters.pm.vxi11 import Vxi11Link

        host, portmapper_port, device = parse_vxi11(port)
        return Vxi11Link(host, portmapper_port=portmapper_port, device=device, timeout_s=max(timeout_s, 1.0))
    if port.startswith("usbtmc://"):
        return UsbtmcLink(port.removeprefix("usbtmc://"))
    if os.path.basename(port).startswith("usbtmc"):
        return UsbtmcLink(port)
    return SerialLink(port, baudrate=baudrate)


def parse_tcp(address: str, default_port: int | None = None) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``, or ``HOST`` with a default port) as (host, port)."""
    text = address if "://" in address else f"tcp://{address}"
    try:
        parts = urlsplit(text)
        host, tcp_port = parts.hostname, parts.port if parts.port is not None else default_port
    except ValueError:
        host, tcp_port = None, None
    if not host or tcp_port is None or parts.scheme != "tcp":
        raise MeterDisconnected(f"{address!r} is not tcp://HOST:PORT")
    return host, tcp_port


def parse_vxi11(address: str) -> tuple[str, int, str]:
    """``vxi11://HOST[:PORTMAPPER_PORT][/DEVICE]`` as (host, portmapper port (111), device (inst0))."""
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port if parts.port is not None else 111
    except ValueError:
        host, port = None, 0
    device = parts.path.strip("/") if host else ""
    if not host or parts.scheme != "vxi11" or not (device or "inst0").isprintable():
        raise MeterDisconnected(f"{address!r} is not vxi11://HOST[:PORT][/DEVICE]")
    return host, port, device or "inst0"


class SerialLink:
    """A serial port or pyserial URL (``socket://``, ``rfc2217://``, ``loop://``), 8N1."""

    def __init__(self, port: str, *, baudrate: int = 9600) -> None:
        self.description = port
        with self._errors():
            self._serial = serial.serial_for_url(port, baudrate=baudrate, bytesize=8, parity="N", stopbits=1,
                                                 timeout=_POLL_S, write_timeout=1.0)
        try:
            self._fd: int | None = self._serial.fileno()
        except (AttributeError, OSError, serial.SerialException):
            self._fd = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (serial.SerialException, OSError, termios.error) as e:  # tcflush raises termios.error
            raise MeterDisconnected(f"{self.description}: {e}") from e

    def write(self, data: bytes) -> None:
        with self._errors():
            self._serial.write(data)

    def read_some(self, timeout_s: float) -> bytes:
        with self._errors():
            if self._fd is not None:  # a device: one select for the whole wait, then what is waiting
                if not select.select([self._fd], [], [], max(0.0, timeout_s))[0]:
                    return b""
                return self._serial.read(max(1, min(self._serial.in_waiting, _CHUNK)))
            deadline = time.monotonic() + timeout_s  # a URL handler: poll every _POLL_S
            while True:
                chunk = self._serial.read(max(1, min(self._serial.in_waiting, _CHUNK)))
                if chunk or time.monotonic() >= deadline:
                    return chunk

    def reset_input(self) -> None:
        with self._errors():
            self._serial.reset_input_buffer()

    def close(self) -> None:
        try:
            self._serial.close()
        except (serial.SerialException, OSError, termios.error):
            pass  # already gone


class TcpLink:
    """A TCP connection; the peer closing it is a disconnect."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 2.0) -> None:
        self.description = f"tcp://{host}:{port}"
        try:
            self._socket = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as e:
            raise MeterDisconnected(f"{self.description}: {e.strerror or e}") from e
        self._socket.setblocking(False)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data: bytes) -> None:
        try:
            self._socket.setblocking(True)
            self._socket.settimeout(2.0)
            self._socket.sendall(data)
        except OSError as e:
            raise MeterDisconnected(f"{self.description}: {e.strerror or e}") from e
        finally:
            self._socket.setblocking(False)

    def read_some(self, timeout_s: float) -> bytes:
        try:
            ready, _, _ = select.select([self._socket], [], [], max(0.0, timeout_s))
            if not ready:
                return b""
            data = self._socket.recv(_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as e:
            raise MeterDisconnected(f"{self.description}: {e.strerror or e}") from e
        if not data:
            raise MeterDisconnected(f"{self.description}: connection closed by the peer")
        return data

    def reset_input(self) -> None:
        try:
            while select.select([self._socket], [], [], 0)[0]:
                if not self._socket.recv(_CHUNK):
                    raise MeterDisconnected(f"{self.description}: connection closed by the peer")
        except BlockingIOError:
            pass
        except OSError as e:
            raise MeterDisconnected(f"{self.description}: {e.strerror or e}") from e

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass


class UsbtmcLink:
    """A Linux USB-TMC character device (``/dev/usbtmcN``): one ``read()`` returns one response.

    On a real device the kernel driver answers the USB-TMC ioctls: a read blocks until the
    response or the kernel timeout, which is set to each read's timeout (ETIMEDOUT is a timeout,
    not a disconnect). A path whose device refuses those ioctls (a pseudo-terminal) is read
    with select, as a tty.
    """

    def __init__(self, path: str) -> None:
        self.description = f"usbtmc://{path}"
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise MeterDisconnected(f"{self.description}: {e.strerror or e}") from e
        try:
            fcntl.ioctl(self._fd, USBTMC_IOCTL_CLEAR)
            self.native = True
        except OSError as e:
            if e.errno not in (errno.ENOTTY, errno.EINVAL):
                os.close(self._fd)
                raise MeterDisconnected(f"{self.description}: {e.strerror or e}") from e
            self.native = False
            try:  # a tty: raw, as pyserial would set it
                import tty
                tty.setraw(self._fd)
            except OSError:
                pass
        self._timeout_ms: int | None = None

    def _error(self, e: OSError) -> MeterDisconnected:
        return MeterDisconnected(f"{self.description}: {e.strerror or e}")

    def write(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except OSError as e:
            raise self._error(e) from e

    def read_some(self, timeout_s: float) -> bytes:
        try:
            if self.native:
                timeout_ms = max(1, round(timeout_s * 1000))
                if timeout_ms != self._timeout_ms:
                    fcntl.ioctl(self._fd, USBTMC_IOCTL_SET_TIMEOUT, struct.pack("I", timeout_ms))
                    self._timeout_ms = timeout_ms
                return os.read(self._fd, _CHUNK)
            if not select.select([self._fd], [], [], max(0.0, timeout_s))[0]:
                return b""
            data = os.read(self._fd, _CHUNK)
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                return b""
            raise self._error(e) from e
        if not data:
            raise MeterDisconnected(f"{self.description}: end of file")
        return data

    def reset_input(self) -> None:
        try:
            if self.native:
                fcntl.ioctl(self._fd, USBTMC_IOCTL_CLEAR)
                return
            while select.select([self._fd], [], [], 0)[0]:
                if not os.read(self._fd, _CHUNK):
                    break
        except OSError as e:
            raise self._error(e) from e

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
