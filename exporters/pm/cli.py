"""Placeholder: the power-meter exporter and emulator commands (being written)."""
import typer

app = typer.Typer(no_args_is_help=True)


def pm_exporter_command(driver: str = "wt300", port: str = "") -> None:
    """Publish a power meter's readings."""
    raise NotImplementedError
