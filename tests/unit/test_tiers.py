"""The unit tier stays in memory: tests/conftest.py fails a unit test at once when it starts a process, forks
(refused, not tried here), opens a pty or an IP socket, or sleeps: such a test belongs in tests/integration."""

import multiprocessing
import os
import pty
import socket
import subprocess
import time

import pytest


@pytest.mark.parametrize(("attempt", "what"), [
    (lambda: subprocess.run(["true"]), "start a process"),
    (lambda: multiprocessing.get_context("spawn").Process(target=print).start(), "start a process"),
    (lambda: os.openpty(), "open a pty"),
    (lambda: pty.openpty(), "open a pty"),
    (lambda: time.sleep(0.01), "sleep"),
    (lambda: socket.create_connection(("127.0.0.1", 9), timeout=1), "use the network"),
    (lambda: socket.socket(socket.AF_INET6).bind(("::1", 0)), "use the network"),
], ids=["subprocess", "multiprocessing", "openpty", "pty", "sleep", "connect", "bind"])
def test_a_unit_test_cannot_leave_memory(attempt, what):
    with pytest.raises(pytest.fail.Exception, match=f"a unit test must not {what}"):
        attempt()


def test_a_unix_socket_pair_in_memory_is_fine():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
