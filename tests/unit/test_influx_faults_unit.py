"""The InfluxDB sink's hostile settings: credentials in the URL, a token file others can read (the full spool disk:
tests/integration/test_influx_faults.py)."""

from __future__ import annotations

import logging

import pytest

from mltelemetry.errors import MltelemetryError
from mltelemetry.influx import InfluxConfig, read_token


def test_credentials_in_the_influx_url_are_refused_and_never_echoed():
    # main: accepted, shown in ps, logged at INFO and in every write warning; the write failed, spooling forever
    with pytest.raises(MltelemetryError, match="must not hold credentials") as refused:
        InfluxConfig("http://admin:s3cret@127.0.0.1:8086", "b", "v1")
    assert "s3cret" not in str(refused.value)


def test_a_token_file_others_can_read_is_warned_about(tmp_path, caplog):
    token = tmp_path / "token"
    token.write_text("user:pw\n")
    token.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert read_token(token) == "user:pw"
    assert "can be read by other users" not in caplog.text
    token.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert read_token(token) == "user:pw"
    assert f"the token file {token} can be read by other users; chmod 600 it" in caplog.text
