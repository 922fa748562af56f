"""`mltelemetry deploy export`: the deployment files reach a lab from the installed package, and they work there."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from test_compose import SECRETS, filled_env, mounts

from conftest import require_binary
from mltelemetry import __version__

ROOT = Path(__file__).resolve().parents[2]


def repository_files() -> dict[str, Path]:
    """What an export must hold: the deployment files of this checkout (no Python, the compose link resolved)."""
    found = {"compose.yaml": ROOT / "compose.yaml"}
    for folder in ("deploy", "grafana"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and not path.is_symlink() and path.suffix not in (".py", ".pyc"):
                found[str(path.relative_to(ROOT))] = path
    return found


def export(directory: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run in a folder without the source tree, so the installed package (or PYTHONPATH's) is what runs."""
    return subprocess.run([sys.executable, "-m", "mltelemetry", "deploy", "export", str(directory), *extra],
                          capture_output=True, text=True, timeout=120, env=env, cwd=directory.parent)


def test_export_writes_every_deployment_file_and_they_work_from_there(tmp_path):
    lab = tmp_path / "lab"
    result = export(lab)
    assert result.returncode == 0, result.stderr
    written = {str(p.relative_to(lab)): p for p in lab.rglob("*") if p.is_file()}
    expected = repository_files()
    assert set(written) == set(expected)
    assert {"deploy/prometheus/alerts.yml", "deploy/systemd/influxdb.conf", "grafana/import/campaign.json"} <= set(
        written)
    for name, path in written.items():
        assert path.read_bytes() == expected[name].read_bytes(), name
    # the exported compose file validates where it was written, mounting the exported folders
    (lab / ".env").write_text(filled_env())
    config = subprocess.run([require_binary("docker-compose"), "--project-directory", str(lab), "-f",
                             str(lab / "compose.yaml"), "config"], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin"})
    assert config.returncode == 0, config.stderr
    services = yaml.safe_load(config.stdout)["services"]
    assert mounts(services["grafana"])["/etc/grafana/dashboards"] == str(lab / "grafana" / "dashboards")
    assert mounts(services["prometheus"])["/etc/prometheus"] == str(lab / "deploy" / "prometheus")
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    promtool = require_binary("promtool")
    check = subprocess.run([promtool, "check", "config", str(lab / "deploy" / "prometheus" / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run([promtool, "test", "rules", str(lab / "deploy/prometheus/rules_test.yml"),
                            str(lab / "deploy/prometheus/alerts_test.yml")], capture_output=True, text=True)
    assert tests.returncode == 0 and tests.stdout.count("SUCCESS") == 2, tests.stdout + tests.stderr


def test_export_does_not_overwrite_unless_forced(tmp_path):
    assert export(tmp_path).returncode == 0
    mine = tmp_path / "deploy" / "prometheus" / "prometheus.yml"
    mine.write_text("# the lab's own edits\n")
    refused = export(tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: {len(repository_files())} of the files already exist in ")
    assert refused.stderr.rstrip().endswith("nothing written; --force overwrites them")
    assert mine.read_text() == "# the lab's own edits\n"  # nothing written
    assert export(tmp_path, "--force").returncode == 0
    assert mine.read_bytes() == (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_bytes()
    usage = export(tmp_path, "--no-such-option")
    assert usage.returncode == 2


def test_the_wheel_ships_the_deployment_files_license_and_one_version(tmp_path):
    """Built from the tracked files as a release would be, then used from the unpacked wheel alone."""
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, tracked.stdout.split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    [wheel] = (tmp_path / "dist").glob("mltelemetry-*.whl")
    assert wheel.name == f"mltelemetry-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.message_from_bytes(archive.read(f"mltelemetry-{__version__}.dist-info/METADATA"))
        packaged_compose = archive.read("mltelemetry/deploy/compose.yaml")
        archive.extractall(tmp_path / "site")
    assert metadata["Version"] == __version__ and metadata["License-Expression"] == "Apache-2.0"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert f"mltelemetry-{__version__}.dist-info/licenses/LICENSE" in names and "mltelemetry/py.typed" in names
    assert {"mltelemetry/deploy/prometheus/alerts.yml", "mltelemetry/deploy/systemd/influxdb.conf",
            "mltelemetry/grafana/import/sut-power.json",
            "mltelemetry/grafana/provisioning/datasources/mltelemetry.yaml"} <= names
    assert packaged_compose == (ROOT / "compose.yaml").read_bytes()  # the link, shipped as the file it names
    # the unpacked wheel, not this checkout, writes the deployment
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run([sys.executable, "-c", "import mltelemetry; print(mltelemetry.__file__)"], env=env,
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert where.stdout.startswith(str(tmp_path / "site"))
    result = export(tmp_path / "lab", env=env)
    assert result.returncode == 0, result.stderr
    assert len([p for p in (tmp_path / "lab").rglob("*") if p.is_file()]) == len(repository_files())
