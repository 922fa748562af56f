"""The deployment files: compose.yaml (docker-compose config), Prometheus config, recording and alerting rules
(promtool), systemd units (systemd-analyze, and their command lines run without InfluxDB)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from conftest import free_port, require_binary, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRETS = {"INFLUX_ADMIN_PASSWORD": "influx-admin-pw", "INFLUX_TOKEN": "influx-operator-token",
           "GRAFANA_ADMIN_PASSWORD": "grafana-admin-pw"}


def compose_config(tmp_path, env: str, *extra: str) -> subprocess.CompletedProcess:
    env_file = tmp_path / ".env"
    env_file.write_text(env)
    return subprocess.run([require_binary("docker-compose"), "--project-directory", str(ROOT), "--env-file",
                           str(env_file), "-f", str(ROOT / "compose.yaml"), *extra, "config"],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})


def mounts(service: dict) -> dict[str, str]:
    """target → source of a service's volumes (docker-compose 1.x prints SOURCE:TARGET:MODE)."""
    return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}


def filled_env() -> str:
    text = (DEPLOY / "compose.env.example").read_text()
    for name, value in SECRETS.items():
        text = re.sub(rf"^{name}=$", f"{name}={value}", text, flags=re.M)
    return text


def test_compose_validates_with_the_env_file(tmp_path):
    result = compose_config(tmp_path, filled_env(), "--profile", "pm", "--profile", "gpu")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"influxdb", "prometheus", "grafana", "exporter-host", "exporter-pm", "exporter-gpu"}
    assert all(s["network_mode"] == "host" for s in services.values())
    assert services["influxdb"]["image"].startswith("influxdb:2.7")
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == SECRETS["INFLUX_TOKEN"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert mounts(services["grafana"])["/etc/grafana/provisioning"] == str(ROOT / "grafana" / "provisioning")
    assert mounts(services["grafana"])["/etc/grafana/dashboards"] == str(ROOT / "grafana" / "dashboards")
    assert mounts(services["prometheus"])["/etc/prometheus"] == str(DEPLOY / "prometheus")
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    ports = {}
    for name in ("exporter-host", "exporter-pm", "exporter-gpu"):
        service = services[name]
        assert service["environment"]["INFLUX_TOKEN"] == SECRETS["INFLUX_TOKEN"]  # from the env file ...
        assert not any(SECRETS["INFLUX_TOKEN"] in arg for arg in service["command"])  # ... never an argument
        listen = service["command"][service["command"].index("--listen") + 1]
        assert listen.startswith("127.0.0.1:")
        ports[name] = listen
    assert services["exporter-pm"]["devices"] == ["/dev/ttyUSB0:/dev/ttyPM"]
    assert services["exporter-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # Prometheus scrapes exactly the exporters (and the workload's 9813)
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["global"]["scrape_interval"] == "1s"
    targets = {t for job in scrape["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    assert targets == set(ports.values()) | {"127.0.0.1:9813"}


def test_compose_refuses_to_run_without_the_secrets(tmp_path):
    result = compose_config(tmp_path, (DEPLOY / "compose.env.example").read_text())  # passwords left empty
    assert result.returncode != 0
    assert re.search(r"(INFLUX_ADMIN_PASSWORD|INFLUX_TOKEN|GRAFANA_ADMIN_PASSWORD)", result.stderr), result.stderr
    text = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"\$\{\w*(PASSWORD|TOKEN)\w*:?-", text)  # no default for a secret


def test_prometheus_config_and_recording_rules():
    promtool = require_binary("promtool")
    check = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "alerts.yml" in check.stdout  # the alerting rules are loaded with the recording rules
    for tests in ("rules_test.yml", "alerts_test.yml"):  # alerts: meter gone, spool filling, exporter down, ticks
        test = subprocess.run([promtool, "test", "rules", str(DEPLOY / "prometheus" / tests)],
                              capture_output=True, text=True)
        assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_systemd_units_verify_and_restart_on_failure(tmp_path):
    analyze = require_binary("systemd-analyze")
    venv = ROOT / ".venv"
    units = sorted(DEPLOY.glob("systemd/*.service"))
    assert [u.name for u in units] == ["mltelemetry-exporter-gpu.service", "mltelemetry-exporter-host.service",
                                       "mltelemetry-exporter-pm.service"]
    dropin = (DEPLOY / "systemd" / "influxdb.conf").read_text()
    assert "LoadCredential=influx-token:/etc/mltelemetry/influx-token" in dropin
    assert "Environment=MLTELEMETRY_INFLUX_TOKEN_FILE=%d/influx-token" in dropin  # a path, never the token
    for unit in units:
        text = unit.read_text()
        assert "Restart=on-failure" in text and "--listen 127.0.0.1:" in text
        assert "influx-token" not in text and "INFLUX_TOKEN=" not in text  # alone, a unit needs no InfluxDB token
        # systemd-analyze checks the unit against this machine's systemd; the command must exist: use this venv's
        text = text.replace("/opt/mltelemetry/.venv", str(venv))
        (tmp_path / unit.name).write_text(text)
        # and with the InfluxDB drop-in's [Service] section added, as systemd merges it in
        (tmp_path / unit.name.replace(".service", "-influxdb.service")).write_text(text + "\n" + dropin)
    result = subprocess.run([analyze, "verify", "--man=no", *map(str, sorted(tmp_path.glob("*.service")))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def exec_start(unit: str, state: Path, port: int) -> list[str]:
    """The unit's command line as systemd runs it, with this venv's mltelemetry and a free port."""
    text = (DEPLOY / "systemd" / unit).read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    args = shlex.split(line.removeprefix("ExecStart=").replace("${STATE_DIRECTORY}", str(state)))
    assert args[0] == "/opt/mltelemetry/.venv/bin/mltelemetry"
    return [sys.executable, "-m", "mltelemetry", *(re.sub(r"^127\.0\.0\.1:98\d\d$", f"127.0.0.1:{port}", a)
                                                  for a in args[1:])]


def test_the_host_unit_runs_without_influxdb_and_the_dropin_hands_over_the_token_file(tmp_path):
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # the env file without MLTELEMETRY_INFLUX_*
    process = subprocess.Popen(exec_start("mltelemetry-exporter-host.service", tmp_path, port), env=env,
                               stderr=subprocess.DEVNULL)
    try:
        body = wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text, 30, "/metrics")
        assert "mltelemetry_host_cpu_total_utilization_ratio" in body
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=15)
    # with InfluxDB set and the drop-in's token path, the exporter reads that file: an empty one is a clear error
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "influx-token").write_text("")
    env |= {"MLTELEMETRY_INFLUX_URL": "http://127.0.0.1:9", "MLTELEMETRY_INFLUX_API": "v1",
            "MLTELEMETRY_INFLUX_TOKEN_FILE": str(tmp_path / "credentials" / "influx-token")}
    failed = subprocess.run(exec_start("mltelemetry-exporter-host.service", tmp_path, free_port()), env=env,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith(f"the token file {tmp_path}/credentials/influx-token is empty")
