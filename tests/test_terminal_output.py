"""A batch as a user runs it: in a 120-column terminal every line fits and no log line shares the
progress bar's line; NO_COLOR turns colours off; piped into a file, no escape code is printed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.integration

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_LOG = re.compile(r"\d\d:\d\d:\d\d\.\d{3} \| (INFO|WARNING|ERROR|DEBUG)")
# a Select Graphic Rendition sequence with a colour in it (foreground, background, 256-colour or RGB)
_COLOUR = re.compile(r"\x1b\[(?:[0-9]*;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9]*)*m")
_DEMO = ["demo", "--example", "examples.quickstart.project"]
_WTB = str(Path(sys.executable).with_name("wtb"))


@pytest.fixture
def home() -> Iterator[Path]:
    """A state folder whose path is as short as a user's ``~/.wtb``.

    Paths and addresses are printed whole (never broken, so they stay
    copyable): how wide their lines are depends on the home's path, and
    pytest's ``tmp_path`` alone is half a line long.
    """
    path = Path(tempfile.mkdtemp(prefix="wtb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "WTB_HOME": str(home), "COLUMNS": "120", "LINES": "40"}
    env.pop("PREFECT_API_URL", None)
    env.update(extra)
    if "NO_COLOR" not in extra:
        env.pop("NO_COLOR", None)
    return env


def _stop_services(env: dict[str, str]) -> None:
    for args in (["down"], ["server", "stop"]):
        subprocess.run([_WTB, *args], env=env, capture_output=True, timeout=300)


def _screen_lines(output: str) -> list[str]:
    """The lines a terminal shows: each carriage return or cursor move starts the line again."""
    return [_ANSI.sub("", part) for line in output.split("\n") for part in re.split(r"\r|\x1b\[[0-9]*[AGK]", line)]


def test_demo_in_a_120_column_terminal_fits_keeps_logs_off_the_progress_bar_and_honours_no_color(
    home, prefect_api: str, ray_cluster: dict
):
    # joins the session's services, as a run after `wtb up` does (the piped test below starts its own)
    env = _env(home, TERM="xterm-256color", NO_COLOR="1", PREFECT_API_URL=prefect_api)
    child = pexpect.spawn(
        _WTB, _DEMO, env=env, dimensions=(40, 120), timeout=900, encoding="utf-8", codec_errors="replace"
    )
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close()
    output = child.before or ""
    assert child.exitstatus == 0, output[-3000:]
    lines = _screen_lines(output)
    too_wide = [line for line in lines if len(line.rstrip()) > 120]
    assert not too_wide, too_wide[:3]
    mixed = [line for line in lines if _LOG.search(line) and ("━" in line or "executions" in line.split("|")[0])]
    assert not mixed, mixed[:3]
    assert any("executions" in line and "━" in line for line in lines)  # the bar was drawn
    assert re.search(r"(Pick |Keep |No variant|Too few cases)", output)  # the one-glance answer is printed
    coloured = [line for line in output.split("\n") if _COLOUR.search(line)]
    assert not coloured, [repr(line[:200]) for line in coloured[:3]]


def test_demo_piped_into_a_file_prints_no_escape_code(home):
    env = _env(home, TERM="xterm-256color")
    try:
        done = subprocess.run([_WTB, *_DEMO], env=env, capture_output=True, text=True, timeout=900)
    finally:
        _stop_services(env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert re.search(r"(Pick |Keep |No variant|Too few cases)", done.stdout)
    for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
        escaped = [line for line in text.split("\n") if "\x1b" in line]
        assert not escaped, (name, [repr(line[-200:]) for line in escaped[:3]])
    too_wide = [line for line in done.stdout.split("\n") if len(line) > 120]
    assert not too_wide, too_wide[:3]


def test_help_prints_no_escape_code_when_output_is_not_a_terminal():
    from typer.testing import CliRunner

    from wtb_prefect.cli import app

    result = CliRunner().invoke(app, ["--help"], env={"NO_COLOR": "1", "COLUMNS": "120"})
    assert result.exit_code == 0 and "\x1b[" not in result.output
