"""`wtb up` keeps a Prefect server and a Ray head running; runs join them; `wtb down` stops both.

Runs the real CLI in subprocesses on a state folder of its own (not the test
session's services), with no PREFECT_API_URL or RAY_ADDRESS to follow.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
WTB = str(Path(sys.executable).with_name("wtb"))
REPO = Path(__file__).resolve().parents[1]


def _wtb(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [WTB, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _final_state(stdout: str) -> dict:
    """The final state `wtb run` prints as JSON (the first top-level object after the node table)."""
    start = stdout.index("\n{") + 1
    return json.loads(stdout[start : stdout.index("\n}", start) + 2])


def _services_of(folder: Path, env: dict[str, str]) -> set[str]:
    """The kinds `wtb status` lists for the state folder ``folder``."""
    status = _wtb(["status"], env)
    assert status.returncode == 0, status.stderr
    rows = [line.split() for line in status.stdout.splitlines() if line.startswith("│")]
    return {row[1] for row in rows if str(folder) in " ".join(row)}


def test_runs_join_the_services_wtb_up_started_and_wtb_down_stops_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "RAY_ADDRESS", "RAY_AUTH"))}
    env.update(WTB_HOME=str(tmp_path / "home"), WTB_MLFLOW_ENABLED="false", COLUMNS="200")
    assert _services_of(tmp_path / "home", env) == set()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    up = _wtb(["up", "--port", str(port)], env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        server = json.loads((tmp_path / "home/prefect/server.json").read_text())
        head = json.loads((tmp_path / "home/ray/head.json").read_text())

        assert _services_of(tmp_path / "home", env) == {"prefect-server", "ray-head"}

        runs = []
        for query in ("first", "second"):
            run = _wtb(["run", "tests.graphs.where_it_ran:build_project", "--case", json.dumps({"query": query})], env)
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            runs.append(run)
        states = [_final_state(r.stdout) for r in runs]
        # the same Ray cluster (the head's GCS), as two jobs of it
        assert {s["gcs_address"].rsplit(":", 1)[1] for s in states} == {str(head["port"])}, states
        assert states[0]["node_id"] == states[1]["node_id"] and states[0]["job_id"] != states[1]["job_id"]
        # the same Prefect server: each run links its flow run on the server `wtb up` started
        for run in runs:
            link = re.search(r"Flow run: (http://\S+)/runs/flow-run/", run.stdout)
            assert link and link.group(1) == server["url"].removesuffix("/api"), run.stdout[-1500:]

        # a run joins the head before its project is loaded; a YAML project whose nodes live in its own
        # folder (put on sys.path only as it loads) still runs there: the workers get that folder too
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "far_nodes.py").write_text((REPO / "tests/graphs/where_it_ran.py").read_text())
        (elsewhere / "project.yaml").write_text(
            "name: where_far\nworkflow:\n  module: far_nodes\n  factory: where_graph\n"
            "execution:\n  default_node_resources: {num_cpus: 0.25, memory: 64MB}\n"
        )
        far = _wtb(["run", str(elsewhere / "project.yaml"), "--case", json.dumps({"query": "far"})], env)
        assert far.returncode == 0, far.stdout[-3000:] + far.stderr[-3000:]
        assert _final_state(far.stdout)["gcs_address"].rsplit(":", 1)[1] == str(head["port"])
    finally:
        down = _wtb(["down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Prefect server: stopped" in down.stdout and "Ray head: stopped" in down.stdout, down.stdout
    assert _services_of(tmp_path / "home", env) == set()


def _processes_of(home: Path, marker: str) -> list[int]:
    """Pids of processes whose command line has ``marker`` and whose WTB_HOME is ``home``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []) and proc.environ().get("WTB_HOME") == str(home):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_two_wtb_up_at_once_start_one_server_and_one_head(tmp_path: Path) -> None:
    """Two processes bringing up a new state folder's services at the same moment (two first
    batches at once) share one Prefect server and one Ray head instead of racing for them."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "RAY_ADDRESS", "RAY_AUTH"))}
    env.update(WTB_HOME=str(home), WTB_MLFLOW_ENABLED="false", COLUMNS="200")
    ups = [
        subprocess.Popen([WTB, "up"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    try:
        outputs = [up.communicate(timeout=600)[0] for up in ups]
        assert [up.returncode for up in ups] == [0, 0], "\n".join(o[-2000:] for o in outputs)
        server = json.loads((home / "prefect/server.json").read_text())
        head = json.loads((home / "ray/head.json").read_text())
        assert _processes_of(home, "wtb_prefect.services._server_main") == [server["pid"]]
        assert _processes_of(home, "--head --block") == [head["pid"]]
        assert _services_of(home, env) == {"prefect-server", "ray-head"}
    finally:
        down = _wtb(["down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _processes_of(home, "wtb_prefect.services._server_main") and not _processes_of(home, "--head --block")
