"""The deployment files, shipped in the package, and ``mltelemetry deploy export DIR`` that writes them out.

What is exported keeps the repository's layout, so the files refer to each other as they do here:

- ``compose.yaml`` (InfluxDB, Prometheus, Grafana and the exporters) and ``deploy/compose.env.example``;
- ``deploy/prometheus/``: Prometheus' configuration, recording rules, alerting rules and their promtool tests;
- ``deploy/systemd/``: units for the exporters on machines monitored without containers;
- ``grafana/``: provisioning, the provisioned dashboards, and the same dashboards in Grafana's import format.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer

from mltelemetry.cliutil import one_line_errors
from mltelemetry.errors import MltelemetryError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

_SKIPPED = ("__init__.py", "__pycache__", "generate.py")


def _walk(folder: Traversable, prefix: str) -> dict[str, Traversable]:
    """Relative path → resource, for every data file under ``folder`` (the Python files left out)."""
    out: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        if entry.name in _SKIPPED or entry.name.endswith(".pyc"):
            continue
        path = f"{prefix}/{entry.name}" if prefix else entry.name
        if entry.is_dir():
            out |= _walk(entry, path)
        else:
            out[path] = entry
    return out


def deployment_files() -> dict[str, Traversable]:
    """Relative path in an exported deployment → the packaged file it is written from."""
    deploy = _walk(files("mltelemetry.deploy"), "deploy")
    compose = deploy.pop("deploy/compose.yaml")  # packaged beside the deploy files, used from the top folder
    return {"compose.yaml": compose, **deploy, **_walk(files("mltelemetry.grafana"), "grafana")}


def export(directory: Path, *, force: bool = False) -> list[Path]:
    """Write every deployment file under ``directory``; refuses to overwrite a file unless ``force``."""
    targets = {directory / relative: source for relative, source in sorted(deployment_files().items())}
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise MltelemetryError(f"{len(existing)} of the files already exist in {directory} (e.g. {existing[0]}): "
                               "nothing written; --force overwrites them")
    for path, source in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
    return list(targets)


@app.command("export")
@one_line_errors
def export_command(
    directory: Annotated[Path, typer.Argument(help="Folder to write the deployment files into.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that are already there.")] = False,
) -> None:
    """Write compose.yaml, Prometheus' configuration, rules and alerts, the systemd units and the Grafana
    dashboards (provisioned and for import) of this version of mltelemetry into DIRECTORY."""
    try:
        written = export(directory, force=force)
    except OSError as e:
        raise MltelemetryError(f"cannot write to {directory}: {e.strerror or e}") from e
    typer.echo(f"wrote {len(written)} files to {directory}: compose.yaml, deploy/ (Prometheus, systemd) and "
               "grafana/ (import/*.json for an existing Grafana)")
