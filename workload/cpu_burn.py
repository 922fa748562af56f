"""The CPU scenario's worker, in a module of its own so spawned workers import nothing heavy."""

import hashlib
import time


def hash_until(deadline: float) -> int:
    """Keep one core busy hashing until ``deadline`` (time.time()); returns the rounds done."""
    digest, rounds = b"mltelemetry", 0
    while time.time() < deadline:
        for _ in range(2000):
            digest = hashlib.sha256(digest).digest()
        rounds += 2000
    return rounds
