"""/metrics listens on loopback unless told otherwise, and the basic-auth file is checked (TLS and auth scraped by a
real Prometheus: tests/integration/test_live_security.py)."""

from __future__ import annotations

import pytest

from mltelemetry.errors import MltelemetryError
from mltelemetry.sinks import WebSecurity, parse_listen, read_basic_auth_file


def test_exporters_listen_on_loopback_unless_told_otherwise():
    assert parse_listen(":9810") == ("127.0.0.1", 9810)
    assert parse_listen("0.0.0.0:9810") == ("0.0.0.0", 9810)
    assert parse_listen("off") is None


def test_basic_auth_file_is_checked(tmp_path):
    (tmp_path / "bad").write_text("no-colon\n")
    with pytest.raises(MltelemetryError, match="want user:password"):
        read_basic_auth_file(tmp_path / "bad")
    (tmp_path / "ok").write_text("# scrapers\nprometheus:s3cret:with:colons\n\n")
    assert read_basic_auth_file(tmp_path / "ok") == {"prometheus": "s3cret:with:colons"}
    with pytest.raises(MltelemetryError, match="both --tls-cert and --tls-key"):
        WebSecurity(tls_cert=tmp_path / "ok")
