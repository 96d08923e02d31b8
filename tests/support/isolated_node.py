"""A Ray cluster of two "machines" on one: a head beside the driver, and a node that shares none of its files.

The node is a second ``ray start --address=<head>`` run inside its own mount
namespace (``unshare -m``; the tests run as root) where empty mounts hide the
repository checkout, the WTB state folder and the driver's temporary folders
(all of ``/tmp``). It runs on its own virtualenv: the same Python, the
project's *locked* dependencies (``uv export --frozen --no-dev``) and the
package installed from a wheel (``uv build --wheel``) -- what a cluster
node's image would hold, and nothing of the checkout.

The virtualenv is cached across sessions under ``~/.cache/wtb-tests/node-venvs``,
keyed by the hash of ``uv.lock`` and of the wheel (hatchling builds
reproducible wheels: unchanged sources give the same hash), so a re-run only
builds the wheel again.

The node announces itself at ``--node-ip-address=127.0.0.2`` (any 127/8
address is this machine's loopback): a driver joining the cluster picks the
raylet of its own IP, the head's, whose sockets it can see, never the node's.

Example:
    ```python
    with IsolatedCluster(resources={"isolated": 2}) as cluster:
        env = cluster.driver_env()        # RAY_ADDRESS and auth mode for a driver subprocess
        cluster.kill_node()               # a machine lost mid-batch
    ```
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("WTB_TEST_NODE_CACHE", Path.home() / ".cache" / "wtb-tests" / "node-venvs"))
NODE_IP = "127.0.0.2"
HEAD_IP = "127.0.0.1"
START_TIMEOUT_S = 300.0  # a raylet starts slowly on a loaded machine


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not os.path.exists(found):
        found = str(Path(sys.executable).with_name("uv"))
    return found


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_wheel(repo: Path = REPO) -> Path:
    """``uv build --wheel`` of the package into a cache folder; the wheel's path."""
    out = CACHE / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink(missing_ok=True)
    _run([_uv(), "build", "--wheel", "--quiet", "--out-dir", str(out), str(repo)], cwd=repo)
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in {out}, found {wheels}")
    return wheels[0]


def node_venv(repo: Path = REPO) -> Path:
    """The node's virtualenv, current with the checkout: its folder.

    Holds the running Python, the project's locked runtime dependencies (no
    dev group, no extras; built once per ``uv.lock`` hash) and the package
    from its wheel (reinstalled when the wheel's hash changes, in seconds),
    byte-compiled: these machines set ``PYTHONDONTWRITEBYTECODE``, and
    without it every Ray worker on the node would compile its imports again.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    with FileLock(CACHE / "build.lock"):
        wheel = build_wheel(repo)
        version = ".".join(map(str, sys.version_info[:3]))
        venv = CACHE / f"lock-{_sha(repo / 'uv.lock')[:16]}-py{version}"
        python = str(venv / "bin" / "python")
        if not (venv / "deps-ready").exists():
            shutil.rmtree(venv, ignore_errors=True)
            requirements = CACHE / f"{venv.name}.requirements.txt"
            exported = _run(
                [_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--quiet"], cwd=repo
            ).stdout
            requirements.write_text(exported)
            base_python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
            _run([_uv(), "venv", "--quiet", "--python", base_python, str(venv)])
            _run(
                [_uv(), "pip", "install", "--quiet", "--compile-bytecode", "--python", python, "-r", str(requirements)],
                env=env,
            )
            (venv / "deps-ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
        stamp = f"{wheel.name} {_sha(wheel)}\n"
        if (venv / "wheel.txt").exists() and (venv / "wheel.txt").read_text() == stamp:
            return venv
        (venv / "wheel.txt").unlink(missing_ok=True)
        _run(
            [_uv(), "pip", "install", "--quiet", "--compile-bytecode", "--no-deps", "--reinstall"]
            + ["--python", python, str(wheel)],
            env=env,
        )
        (venv / "wheel.txt").write_text(stamp)
        return venv


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _kill_tree(pid: int, marker: str | None) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL it and every process naming ``marker``."""
    import psutil

    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not psutil.pid_exists(pid):
                break
            time.sleep(0.1)
    if marker:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(marker in part for part in proc.info["cmdline"] or []):
                    proc.kill()


class IsolatedCluster:
    """A Ray head on this machine and one node that cannot see its files; a context manager.

    Args:
        resources: the node's custom resources (e.g. ``{"isolated": 2}``); the
            head has none, so a task requesting one runs on the node.
        node_cpus / head_cpus: CPUs each raylet offers.
        dashboard: start the head's dashboard (``ray job submit`` needs it).
        hidden: folders the node must not see, besides the checkout and ``/tmp``
            (e.g. a state folder outside ``/tmp``).
    """

    def __init__(
        self,
        resources: dict[str, float] | None = None,
        *,
        node_cpus: int = 2,
        head_cpus: int = 2,
        dashboard: bool = False,
        hidden: list[Path] | None = None,
        repo: Path = REPO,
    ) -> None:
        self.resources = dict(resources or {"isolated": 2})
        self.node_cpus = node_cpus
        self.head_cpus = head_cpus
        self.dashboard = dashboard
        self.repo = repo
        self.hidden = [Path(p) for p in (hidden or [])]
        self.port = 0
        self.dashboard_port = 0
        self.agent_port = 0
        self.work = Path(tempfile.mkdtemp(prefix="wtbiso-"))  # short: Ray's socket paths have a length limit
        self.head_temp = str(self.work / "h")
        self.node_temp = f"/tmp/wtbiso-node-{self.work.name}"  # inside the node's own /tmp
        self.head: subprocess.Popen | None = None
        self.node: subprocess.Popen | None = None
        self.venv: Path | None = None

    # ─── addresses and environments ───

    @property
    def address(self) -> str:
        """The GCS address a driver joins (``RayConfig.address``)."""
        return f"{HEAD_IP}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The head's dashboard URL (for ``ray job submit --address``)."""
        return f"http://{HEAD_IP}:{self.dashboard_port}"

    def ray_env(self) -> dict[str, str]:
        """Variables every process of this cluster (and its drivers) shares."""
        return {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            # the raylet's default wait for its agents is too short on a loaded machine
            "RAY_agent_register_timeout_ms": "300000",
            # The head's GCS declares a node dead after this many failed health checks in a
            # row, one a second: a killed node's checks fail at once (nothing listens), so it
            # is noticed in a few seconds instead of Ray's default of several times longer.
            # A live but slow node is not declared dead by it: each check keeps Ray's default
            # time to be answered, so only three such waits in a row without an answer would do it.
            "RAY_health_check_initial_delay_ms": "1000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "RAY_health_check_timeout_ms": "10000",
        }

    def driver_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a driver process that joins this cluster."""
        env = dict(os.environ if base is None else base)
        env.update(self.ray_env())
        env["RAY_ADDRESS"] = self.address
        return env

    def hidden_paths(self) -> list[str]:
        """Every folder the node sees as an empty read-only mount (the checkout, the state folder, ...)."""
        paths = [str(self.repo.resolve())]
        home = os.environ.get("WTB_HOME")
        if home:
            paths.append(str(Path(home).resolve()))
        paths += [str(p.resolve()) for p in self.hidden]
        return list(dict.fromkeys(paths))

    # ─── start / stop ───

    def __enter__(self) -> IsolatedCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> IsolatedCluster:
        """Start the head, build (or reuse) the node's venv meanwhile, then the node; wait until both are in the cluster."""
        self._launch_head()
        self.venv = node_venv(self.repo)  # built while the head starts
        self._wait_head()
        self.start_node()
        return self

    def _launch_head(self) -> None:
        self.port = _free_port()
        ray = Path(sys.executable).with_name("ray")
        command = [
            str(ray),
            "start",
            "--head",
            "--block",
            f"--port={self.port}",
            f"--node-ip-address={HEAD_IP}",
            f"--num-cpus={self.head_cpus}",
            "--disable-usage-stats",
            f"--temp-dir={self.head_temp}",
        ]
        if self.dashboard:
            self.dashboard_port = _free_port()
            self.agent_port = _free_port()
            command += [
                "--include-dashboard=true",
                f"--dashboard-host={HEAD_IP}",
                f"--dashboard-port={self.dashboard_port}",
                # a port of its own: the node's agent, on the same network, takes Ray's default one
                f"--dashboard-agent-listen-port={self.agent_port}",
            ]
        else:
            command += ["--include-dashboard=false"]
        env = {**os.environ, **self.ray_env()}
        env.pop("RAY_ADDRESS", None)
        log = open(self.work / "head.log", "ab")
        self.head = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def _wait_head(self) -> None:
        self._wait(lambda: _answers(HEAD_IP, self.port) and "Ray runtime started" in self.head_log(), self.head, "head")
        if self.dashboard:
            self._wait(lambda: _answers(HEAD_IP, self.dashboard_port), self.head, "head's dashboard")
            # `ray job submit` goes through the head's job agent, which registers with the GCS
            # right after its HTTP server listens, seconds after the dashboard answers; a job
            # submitted before that waits only a few seconds for it, then fails with "No
            # available agent to submit job".
            self._wait(lambda: _answers(HEAD_IP, self.agent_port), self.head, "head's job agent (dashboard agent)")

    def node_command(self) -> list[str]:
        """The shell command run in the node's mount namespace: hide the driver's files, then ``ray start``."""
        assert self.venv is not None
        mounts = ["mount -t tmpfs -o size=8g tmpfs /tmp"]  # the driver's temp folders (and the node's own, fresh)
        for path in self.hidden_paths():
            # empty and read-only: the node can neither read the driver's files nor
            # quietly write where the driver would look for them
            mounts.append(f"mkdir -p {shlex.quote(path)} && mount -t tmpfs -o ro,size=1m tmpfs {shlex.quote(path)}")
        ray_start = [
            str(self.venv / "bin" / "ray"),
            "start",
            f"--address={self.address}",
            f"--node-ip-address={NODE_IP}",
            f"--num-cpus={self.node_cpus}",
            f"--resources={json.dumps(self.resources)}",
            f"--temp-dir={self.node_temp}",
            "--disable-usage-stats",
            "--block",
        ]
        script = " && ".join([*mounts, "cd /", "exec " + shlex.join(ray_start)])
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]

    def node_env(self) -> dict[str, str]:
        """The node's environment: nothing of the driver's (no PYTHONPATH, WTB_HOME, VIRTUAL_ENV, ...)."""
        assert self.venv is not None
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.ray_env(),
        }
        # the machine's own network set-up (certificates, proxies, package indexes), which a
        # node's image would carry too; nothing that points into the driver's files
        for key, value in os.environ.items():
            upper = key.upper()
            if upper.startswith(("PIP_", "UV_")) or "PROXY" in upper or "CERT" in upper or "CA_BUNDLE" in upper:
                env[key] = value
        return env

    def start_node(self) -> None:
        """Start (or start again) the isolated node and wait until it has joined the cluster."""
        log_path = self.work / "node.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")
        self.node = subprocess.Popen(
            self.node_command(),
            env=self.node_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        # `ray start` prints this once its raylet has registered with the head's GCS
        self._wait(lambda: "Ray runtime started" in self.node_log()[offset:], self.node, "isolated node")

    def _wait(self, ready: Any, process: subprocess.Popen | None, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"the {what} did not start. head log:\n{self.head_log()[-3000:]}\nnode log:\n{self.node_log()[-3000:]}"
        )

    def head_log(self) -> str:
        return (self.work / "head.log").read_text(errors="replace") if (self.work / "head.log").exists() else ""

    def node_log(self) -> str:
        return (self.work / "node.log").read_text(errors="replace") if (self.work / "node.log").exists() else ""

    def node_file(self, relative: str) -> Path:
        """A path inside the node's private ``/tmp`` (its Ray logs), seen through the node's mount namespace."""
        assert self.node is not None
        return Path(f"/proc/{self.node.pid}/root") / self.node_temp.lstrip("/") / relative

    def kill_node(self) -> None:
        """SIGKILL the node's raylet and workers at once, as when its machine is lost."""
        if self.node is None:
            return
        import psutil

        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(self.node_temp in part for part in proc.info["cmdline"] or []):
                    proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.node.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.node.wait(10)

    def stop(self) -> None:
        """Stop the node, then the head, and every process either started; remove the head's temp folder."""
        if self.node is not None:
            _kill_tree(self.node.pid, self.node_temp)
            self.node = None
        if self.head is not None:
            _kill_tree(self.head.pid, self.head_temp)
            self.head = None
        shutil.rmtree(self.work, ignore_errors=True)
