"""A batch in a 120-column terminal, as a user runs it: every line fits, no log line on the progress bar's line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.integration

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_LOG = re.compile(r"\d\d:\d\d:\d\d\.\d{3} \| (INFO|WARNING|ERROR|DEBUG)")


def test_quickstart_demo_fits_120_columns_and_keeps_logs_off_the_progress_bar(tmp_path):
    wtb = str(Path(sys.executable).with_name("wtb"))
    env = {**os.environ, "WTB_HOME": str(tmp_path / "home"), "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("PREFECT_API_URL", None)
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(
        wtb,
        ["demo", "--example", "examples.quickstart.project"],
        env=env,
        dimensions=(40, 120),
        timeout=900,
        encoding="utf-8",
        codec_errors="replace",
    )
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close()
        for args in (["down"], ["server", "stop"]):
            subprocess.run([wtb, *args], env=env, capture_output=True, timeout=300)
    output = child.before or ""
    assert child.exitstatus == 0, output[-3000:]
    # what the terminal shows: each carriage return or cursor move starts the line again
    lines = [_ANSI.sub("", part) for line in output.split("\n") for part in re.split(r"\r|\x1b\[[0-9]*[AGK]", line)]
    too_wide = [line for line in lines if len(line.rstrip()) > 120]
    assert not too_wide, too_wide[:3]
    mixed = [line for line in lines if _LOG.search(line) and ("━" in line or "executions" in line.split("|")[0])]
    assert not mixed, mixed[:3]
    assert re.search(r"(Pick |Keep |No variant|Too few cases)", output)  # the one-glance answer is printed


def test_no_escape_codes_when_output_is_not_a_terminal():
    from typer.testing import CliRunner

    from wtb_prefect.cli import app

    result = CliRunner().invoke(app, ["--help"], env={"NO_COLOR": "1", "COLUMNS": "120"})
    assert result.exit_code == 0 and "\x1b[" not in result.output
