"""The command line through real processes and ptys: the installed command's usage errors, runtime errors in one
line and exit 1, shell completion (the in-memory rest: tests/unit/test_cli.py)."""

import os
import subprocess
import sys

from test_cli import one_error_line, store_path  # noqa: F401 (store_path: a fixture of test_cli.py)
from typer.testing import CliRunner

from mltelemetry.cli import app


def test_usage_errors_through_the_installed_command_too(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mltelemetry", "--log-level", "foo", "store", "info", "x.db"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["error: Invalid value for '--log-level': 'foo' is not one of 'debug', 'info', "
                                        "'warning', 'error'. (see: mltelemetry --help)"]


def test_a_runtime_error_is_one_line_and_exit_1(store_path, tmp_path):  # noqa: F811 (the fixture imported above)
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(store_path), "--report", "/proc/x"])
    assert result.exit_code == 1 and "--report /proc/x: cannot write there" in one_error_line(result)
    (tmp_path / "file").write_text("not a folder")
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(store_path),
                                 "--report", str(tmp_path / "file" / "report")])
    assert result.exit_code == 1 and "cannot write there (Not a directory)" in one_error_line(result)
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "missing.db")])
    assert result.exit_code == 1 and one_error_line(result) == f"error: no store at {tmp_path / 'missing.db'}"
    result = runner.invoke(app, ["store", "info", str(tmp_path / "file")])
    assert result.exit_code == 1 and "is not a readable mltelemetry store" in one_error_line(result)
    result = runner.invoke(app, ["analyze", "--campaign", "nope", "--source", str(store_path)])
    assert result.exit_code == 1 and "campaigns there: c" in one_error_line(result)
    result = runner.invoke(app, ["pm", "emulate", "--link", str(tmp_path / "no" / "such" / "link")])
    assert result.exit_code == 1 and "No such file or directory" in one_error_line(result)
    assert str(tmp_path / "no" / "such" / "link") in result.stderr  # the path given, not only the pty's


def test_shell_completion_offers_commands_and_choices(tmp_path):
    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_MLTELEMETRY_COMPLETE": "complete_bash"}
        done = subprocess.run([sys.executable, "-m", "mltelemetry"], env=env, capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("mltelemetry anal", 1) == ["analyze"]
    # (the options of analyze and demo, imported lazily: tests/test_lean_imports.py)
    assert complete("mltelemetry campaign run --order ", 4) == ["blocked", "interleaved", "random"]
    assert complete("mltelemetry exporter pm --driver ", 4) == ["wt300", "mcp39f511", "ptd"]
    assert "--install-completion" in CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output

