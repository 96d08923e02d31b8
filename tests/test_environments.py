"""uv environments at workflow, node and variant granularity; nodes run inside them on Ray.

Node functions live at the top of this module with only light imports: Ray
workers import it (by reference) to run them, also inside the uv envs.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from typing_extensions import TypedDict

PROBED = ("rank_bm25", "inflection")
BM25 = {"dependencies": ["rank-bm25>=0.2"], "env_vars": {"WTB_TEST_ENV_TAG": "bm25"}}
PLAIN = {"dependencies": ["inflection>=0.5"], "env_vars": {"WTB_TEST_ENV_TAG": "plain"}}
MISSING = "this-package-does-not-exist-wtb==1.0"


class ProbeState(TypedDict, total=False):
    query: str
    found: dict
    env_tag: str | None
    prefix: str


def probe(state: ProbeState) -> dict:
    """Report where each of PROBED imports from here (None: not importable), and this worker's env."""
    import importlib

    found = {}
    for module in PROBED:
        try:
            found[module] = importlib.import_module(module).__file__
        except ImportError:
            found[module] = None
    return {"found": found, "env_tag": os.environ.get("WTB_TEST_ENV_TAG"), "prefix": sys.prefix}


def probe_graph():
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(ProbeState)
    graph.add_node("retriever", probe)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", END)
    return graph.compile()


def _project(name: str, executor: str = "ray", **environment):
    from wtb_prefect import EnvironmentConfig, ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

    return WorkflowProject(
        name=name,
        graph_factory=probe_graph,
        environment=EnvironmentConfig(**environment),
        execution=ExecutionConfig(
            batch_executor=executor,
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB"),
            ray_config=RayConfig(max_retries=0),
        ),
    )


def _under(path: str | None, folder: str | Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(Path(folder).resolve())


# ─── Resolution (pure) ───


def test_granularity_decides_which_environments_apply():
    from wtb_prefect import EnvSpec
    from wtb_prefect.define.resolution import parse_variant_choice, resolve_environment

    default, node, variant, registered, workflow = (EnvSpec(dependencies=[d]) for d in "abcde")
    config = {
        "default_env": default,
        "node_environments": {"retriever": node},
        "variant_environments": {"retriever:cfg": variant, "_workflow:wf2": workflow},
    }

    def resolved(granularity: str, choice: dict, **extra) -> EnvSpec | None:
        project = _project(f"res_{granularity}", granularity=granularity, **config, **extra)
        project.register_variant("retriever", "cfg", probe)
        project.register_variant("retriever", "reg", probe, environment=registered)
        project.register_workflow_variant("wf2", probe_graph)
        return resolve_environment(project, parse_variant_choice(project, choice), "retriever")

    # workflow: one env for all nodes (the workflow variant's, if it has one)
    assert resolved("workflow", {"retriever": "cfg"}) is default
    assert resolved("workflow", {"_workflow": "wf2"}) is workflow
    # node: node_environments win over the workflow default
    assert resolved("node", {"retriever": "cfg"}) is node
    assert resolved("node", {"_workflow": "wf2"}) is node
    # variant: variant > node > workflow variant > default
    assert resolved("variant", {"retriever": "cfg"}) is variant
    assert resolved("variant", {"retriever": "reg"}) is registered
    assert resolved("variant", {}) is node
    assert resolved("variant", {"retriever": "cfg"}, use_current_env=True) is None


def test_an_environment_the_granularity_ignores_is_named_in_a_warning_once():
    from wtb_prefect import EnvSpec
    from wtb_prefect.define.resolution import ignored_environments, parse_variant_choice
    from wtb_prefect.run.compile import _warn_ignored_environments

    declared = {
        "node_environments": {"retriever": EnvSpec(dependencies=["a"])},
        "variant_environments": {"retriever:cfg": EnvSpec(dependencies=["b"])},
    }
    for granularity, expected in (
        ("workflow", ["variant_environments['retriever:cfg']", "node_environments['retriever']"]),
        ("node", ["variant_environments['retriever:cfg']"]),
        ("variant", []),
    ):
        project = _project(f"ign_{granularity}", granularity=granularity, **declared)
        project.register_variant("retriever", "cfg", probe)
        project.register_variant("retriever", "reg", probe, environment=EnvSpec(dependencies=["c"]))
        cfg = parse_variant_choice(project, {"retriever": "cfg"})
        ignored = ignored_environments(project, cfg, "retriever")
        assert [i.split(" (")[0] for i in ignored] == expected, granularity
        reg = ignored_environments(project, parse_variant_choice(project, {"retriever": "reg"}), "retriever")
        assert any("register_variant('retriever', 'reg')" in i for i in reg) == (granularity != "variant")
        default = ignored_environments(project, parse_variant_choice(project, {}), "retriever")
        assert [i.split(" (")[0] for i in default] == expected[1:]

    project = _project("ign_warn", granularity="node", **declared)
    project.register_variant("retriever", "cfg", probe)
    choice = parse_variant_choice(project, {"retriever": "cfg"})
    # a handler of its own: Prefect's logging set-up may replace the root logger's handlers (caplog's among them)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    compile_logger = logging.getLogger("wtb_prefect.run.compile")
    compile_logger.addHandler(handler)
    try:
        _warn_ignored_environments(project, choice, "retriever")
        _warn_ignored_environments(project, choice, "retriever")  # the second batch of a session: no repeat
    finally:
        compile_logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records]
    assert len(warnings) == 1, warnings
    assert "variant_environments['retriever:cfg']" in warnings[0] and "granularity is 'node'" in warnings[0]
    assert "Fix:" in warnings[0]


def test_env_key_follows_what_decides_the_env_contents(tmp_path):
    from wtb_prefect import EnvSpec
    from wtb_prefect.run.environments import EnvironmentManager

    manager = EnvironmentManager(tmp_path / "envs")
    key = manager.key_of(EnvSpec(dependencies=["a", "b>=1"]))
    assert manager.key_of(EnvSpec(dependencies=["b>=1", "a"], env_vars={"X": "1"})) == key
    assert manager.key_of(EnvSpec(dependencies=["a", "b>=2"])) != key
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("inflection\n")
    with_file = manager.key_of(EnvSpec(requirements_file=str(requirements)))
    requirements.write_text("inflection==0.5.1\n")
    assert manager.key_of(EnvSpec(requirements_file=str(requirements))) != with_file


# ─── Bad input, before any work ───


def test_python_version_ray_cannot_run_is_rejected_before_the_batch():
    from wtb_prefect import EnvSpec
    from wtb_prefect.batch.plan import prepare_batch
    from wtb_prefect.run.environments import PythonVersionError, check_python_version

    running = platform.python_version()
    minor = ".".join(running.split(".")[:2])
    assert check_python_version(EnvSpec(python_version=minor)) == running
    assert check_python_version(EnvSpec()) == running
    other = "3.12" if minor != "3.12" else "3.11"
    project = _project("env_py", default_env=EnvSpec(python_version=other, dependencies=["inflection"]))
    with pytest.raises(PythonVersionError) as info:
        prepare_batch(project, None, [{"query": "q"}])
    message = str(info.value)
    assert f"python_version={other!r}" in message
    assert running in message and "Interpreters uv finds:" in message and "Fix:" in message


def test_missing_requirements_file_is_rejected_before_the_batch(tmp_path):
    from wtb_prefect import EnvSpec
    from wtb_prefect.batch.plan import prepare_batch
    from wtb_prefect.run.environments import EnvironmentBuildError

    missing = tmp_path / "nope.txt"
    project = _project(
        "env_req", granularity="node", node_environments={"retriever": EnvSpec(requirements_file=str(missing))}
    )
    with pytest.raises(EnvironmentBuildError, match="requirements_file") as info:
        prepare_batch(project, None, [{"query": "q"}])
    assert str(missing) in str(info.value) and "env_req/retriever" in str(info.value)


def test_environment_needs_ray_executor():
    from wtb_prefect import EnvSpec
    from wtb_prefect.batch.plan import prepare_batch
    from wtb_prefect.errors import ConfigError

    project = _project("env_seq", executor="sequential", default_env=EnvSpec(env_vars={"A": "1"}))
    with pytest.raises(ConfigError, match="batch_executor"):
        prepare_batch(project, None, [{"query": "q"}])


@pytest.mark.integration
@pytest.mark.network
def test_bad_dependency_fails_fast_with_uvs_message_and_no_flow_run(prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from wtb_prefect import EnvSpec, WTBTestBench
    from wtb_prefect.run.environments import EnvironmentBuildError, get_environment_manager
    from wtb_prefect.services.prefect_server import use_prefect_api

    spec = EnvSpec(dependencies=[MISSING])
    project = _project("env_bad", granularity="variant", variant_environments={"retriever:broken": spec})
    project.register_variant("retriever", "broken", probe)
    bench = WTBTestBench()
    bench.register_project(project)
    manager = get_environment_manager()
    for _ in range(2):  # the failed build is not taken for a built env the second time
        with pytest.raises(EnvironmentBuildError) as info:
            bench.run_batch_test(
                project="env_bad", variant_matrix=[{"retriever": "broken"}], test_cases=[{"query": "q"}]
            )
        # uv wraps its message at COLUMNS (80 on an xdist worker): compare the words, not the lines
        assert "not found in the package registry" in " ".join(info.value.uv_output.split())
        assert MISSING.split("==")[0] in str(info.value) and "env_bad/retriever:broken" in str(info.value)
        assert not (manager.root / manager.key_of(spec)).exists()  # nothing half-built left
    with use_prefect_api(prefect_api), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="env_bad-")))
        assert str(client.api_url).rstrip("/") == prefect_api.rstrip("/")  # the session's server, not a temporary one
    assert runs == []


# ─── Nodes inside their environments on Ray ───


@pytest.mark.integration
@pytest.mark.network
def test_variants_import_only_their_own_env_and_a_second_run_reuses_it(bench):
    from wtb_prefect import EnvSpec
    from wtb_prefect.run.environments import get_environment_manager

    project = _project("env_iso", granularity="variant", variant_environments={"retriever:bm25": EnvSpec(**BM25)})
    project.register_variant("retriever", "bm25", probe)
    project.register_variant("retriever", "plain", probe, environment=EnvSpec(**PLAIN))
    bench.register_project(project)
    manager = get_environment_manager()
    bm25_key, plain_key = manager.key_of(EnvSpec(**BM25)), manager.key_of(EnvSpec(**PLAIN))
    builds = manager.build_count
    matrix = [{"retriever": "bm25"}, {"retriever": "plain"}, {}]

    batch = bench.run_batch_test(project="env_iso", variant_matrix=matrix, test_cases=[{"query": "q"}])

    assert manager.build_count == builds + 2
    bm25, plain, default = (batch.get(label, "0") for label in ("retriever=bm25", "retriever=plain", "default"))
    for result in (bm25, plain, default):
        assert result.status == "completed", result.error
    bm25_dir, plain_dir = manager.root / bm25_key, manager.root / plain_key
    # each variant imports what its own env adds, and not what the other env adds
    assert _under(bm25.final_state["found"]["rank_bm25"], bm25_dir)
    assert bm25.final_state["found"]["inflection"] is None
    assert _under(plain.final_state["found"]["inflection"], plain_dir)
    assert not _under(plain.final_state["found"]["rank_bm25"], manager.root)  # the driver's copy, if any
    assert default.final_state["found"]["inflection"] is None
    assert not _under(default.final_state["found"]["rank_bm25"], manager.root)
    # the worker's interpreter is the env's, and env_vars reach only that node
    assert Path(bm25.final_state["prefix"]) == bm25_dir and Path(plain.final_state["prefix"]) == plain_dir
    assert Path(default.final_state["prefix"]) == Path(sys.prefix)
    assert (bm25.final_state["env_tag"], plain.final_state["env_tag"], default.final_state["env_tag"]) == (
        "bm25",
        "plain",
        None,
    )
    # the lock is part of each result's provenance and of the env's audit
    audit = manager.audit()
    env = bm25.provenance["nodes"]["retriever"]["environment"]
    assert env["key"] == bm25_key and env["lock_hash"] == audit[bm25_key]["lock_hash"]
    assert any(line.startswith("rank-bm25==") for line in env["lock"])
    assert default.provenance["nodes"]["retriever"]["environment"] is None
    assert "env_iso/retriever:bm25" in audit[bm25_key]["used_by"]
    assert "env_iso/retriever:plain" in audit[plain_key]["used_by"]

    # a second run with the unchanged spec reuses the env: no build, same files
    pyvenv = (bm25_dir / "pyvenv.cfg").stat().st_mtime_ns
    again = bench.run_batch_test(project="env_iso", variant_matrix=[{"retriever": "bm25"}], test_cases=[{"query": "q"}])
    assert manager.build_count == builds + 2
    assert (bm25_dir / "pyvenv.cfg").stat().st_mtime_ns == pyvenv
    assert manager.audit(bm25_key)[bm25_key]["built_at"] == audit[bm25_key]["built_at"]
    assert again.get("retriever=bm25", "0").final_state == bm25.final_state


_SUBPROCESS = """
import json, sys
from wtb_prefect import EnvSpec
from wtb_prefect.run.environments import get_environment_manager

root, requirements, cleanup = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
manager = get_environment_manager(root)
kept = manager.ensure(EnvSpec(requirements_file=requirements), used_by="sub/kept", cleanup_on_exit=cleanup)
out = {"kept": kept.path, "lock": list(kept.lock)}
if cleanup:
    temp = manager.ensure(EnvSpec(dependencies=["tinydb"]), used_by="sub/temp", cleanup_on_exit=True)
    out["temp"] = temp.path
out["builds"] = manager.build_count
print(json.dumps(out))
"""


@pytest.mark.integration
@pytest.mark.network
def test_other_process_reuses_env_and_cleanup_on_exit_deletes_only_what_it_built(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("inflection>=0.5\n")
    root = tmp_path / "envs"

    def run(cleanup: bool) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS, str(root), str(requirements), "1" if cleanup else "0"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run(cleanup=False)
    assert first["builds"] == 1 and any(line.startswith("inflection==") for line in first["lock"])
    second = run(cleanup=True)
    assert second["builds"] == 1  # only the temp env: the requirements env was reused
    assert second["kept"] == first["kept"] and Path(first["kept"]).is_dir()  # reused, so not deleted
    assert not Path(second["temp"]).exists()  # built with cleanup_on_exit: deleted at exit


@pytest.mark.integration
@pytest.mark.network
def test_env_version_of_a_driver_package_wins_and_is_audited(tmp_path):
    """An env may pin another version of a package the driver has (dependency-version testing)."""
    from importlib.metadata import version

    from wtb_prefect import EnvSpec
    from wtb_prefect.run.environments import EnvironmentManager

    driver = version("six")
    pinned = "1.16.0" if driver != "1.16.0" else "1.15.0"
    manager = EnvironmentManager(tmp_path / "envs")
    env = manager.ensure(EnvSpec(dependencies=[f"six=={pinned}"]), used_by="shadow/node")
    assert manager.audit()[env.key]["shadows"] == {"six": [pinned, driver]}
    probe_code = "import six, ray; print(six.__version__, six.__file__)"
    out = subprocess.run([env.python, "-c", probe_code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == pinned and _under(out[1], env.path)
