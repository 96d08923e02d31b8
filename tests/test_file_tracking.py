"""File tracking with real DVC: snapshots, byte-exact restore, isolation, pruning, bad input.

The first part drives :class:`FileTracker` directly (real DVC repository and
cache, no services); the second runs projects through WTBTestBench on the
session's real Prefect server and Ray cluster.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from wtb_prefect.config import FileTrackingConfig
from wtb_prefect.errors import ConfigError, WTBError
from wtb_prefect.integrations.files import (
    CheckpointRef,
    FileTracker,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotNotFoundError,
    TrackedPathError,
)


def files_of(base: Path, *tops: str) -> dict[str, bytes]:
    """Every file under ``base/<top>`` as {relative posix path: bytes}."""
    out = {}
    for top in tops:
        for path in sorted((base / top).rglob("*")):
            if path.is_file():
                out[path.relative_to(base).as_posix()] = path.read_bytes()
    return out


@pytest.fixture()
def project_root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "outputs").mkdir()
    (root / "data" / "raw" / "a.csv").write_text("x,y\n1,2\n")
    (root / "data" / "blob.bin").write_bytes(bytes(range(256)) * 40)
    (root / "data" / "debug.log").write_text("ignored\n")
    (root / "src.py").write_text("print('not tracked')\n")
    return root


def make_tracker(root: Path, tmp_path: Path, **overrides) -> FileTracker:
    cfg = FileTrackingConfig(enabled=True, tracked_paths=["./data/", "outputs"], **overrides)
    return FileTracker("proj", root, cfg, tmp_path / "state")


# ─── FileTracker with real DVC ───


def test_workspace_is_seeded_with_tracked_files_only(project_root: Path, tmp_path: Path) -> None:
    tracker = make_tracker(project_root, tmp_path)
    ws = tracker.workspace("e1")
    assert files_of(ws, "data", "outputs") == {
        "data/blob.bin": (project_root / "data" / "blob.bin").read_bytes(),
        "data/raw/a.csv": b"x,y\n1,2\n",
    }
    assert not (ws / "src.py").exists() and (ws / "outputs").is_dir()
    assert (tracker.store.repo_dir / ".dvc" / "config").is_file()  # a real DVC repository (dvc init --no-scm)


def test_write_modify_delete_and_restore_each_snapshot_byte_for_byte(project_root: Path, tmp_path: Path) -> None:
    tracker = make_tracker(project_root, tmp_path)
    ws = tracker.workspace("e1")
    seed = tracker.snapshot("e1", kind="seed")
    states = {seed.snapshot_id: files_of(ws, "data", "outputs")}

    (ws / "outputs" / "deep" / "dir").mkdir(parents=True)  # node 1 writes
    (ws / "outputs" / "deep" / "dir" / "r.bin").write_bytes(os.urandom(5000))
    (ws / "outputs" / "report.txt").write_text("draft\n")
    s1 = tracker.snapshot("e1", node="write")
    states[s1.snapshot_id] = files_of(ws, "data", "outputs")
    assert s1.added == ["outputs/deep/dir/r.bin", "outputs/report.txt"] and not s1.modified and not s1.deleted
    assert s1.bytes_stored == 5006

    (ws / "outputs" / "report.txt").write_text("final\n")  # node 2 modifies, same size
    with open(ws / "data" / "blob.bin", "r+b") as fh:  # in place, one byte
        fh.seek(100)
        fh.write(b"\xff")
    s2 = tracker.snapshot("e1", node="modify")
    states[s2.snapshot_id] = files_of(ws, "data", "outputs")
    assert s2.modified == ["data/blob.bin", "outputs/report.txt"] and s2.files_changed == 2

    (ws / "data" / "raw" / "a.csv").unlink()  # node 3 deletes
    (ws / "outputs" / "deep" / "dir" / "r.bin").unlink()
    (ws / "data" / "debug.log").write_text("still ignored\n")
    s3 = tracker.snapshot("e1", node="delete")
    states[s3.snapshot_id] = files_of(ws, "data", "outputs")
    assert s3.deleted == ["data/raw/a.csv", "outputs/deep/dir/r.bin"] and s3.bytes_stored == 0

    (ws / "outputs" / "late.txt").write_text("created after every snapshot")
    for snap_id in [seed.snapshot_id, s2.snapshot_id, s1.snapshot_id, s3.snapshot_id, seed.snapshot_id]:
        tracker.restore("e1", snap_id)
        expected = {k: v for k, v in states[snap_id].items() if k != "data/debug.log"}
        actual = {k: v for k, v in files_of(ws, "data", "outputs").items() if k != "data/debug.log"}
        assert actual == expected, snap_id
        assert (ws / "data" / "debug.log").read_text() == "still ignored\n"  # ignored files are left alone
    assert not (ws / "outputs" / "deep").exists()  # emptied folders go too
    assert [s.snapshot_id for s in tracker.snapshots("e1")] == [
        seed.snapshot_id,
        s1.snapshot_id,
        s2.snapshot_id,
        s3.snapshot_id,
    ]


def test_unchanged_snapshot_stores_nothing_and_full_strategy_matches(project_root: Path, tmp_path: Path) -> None:
    inc = make_tracker(project_root, tmp_path)
    full = make_tracker(project_root, tmp_path, snapshot_strategy="full")
    a = inc.snapshot("inc")
    b = inc.snapshot("inc")
    assert b.bytes_stored == 0 and b.files_changed == 0 and b.tree_hash == a.tree_hash
    c = full.snapshot("full")  # same content, same DVC directory hash, objects shared
    assert c.tree_hash == a.tree_hash and c.bytes_stored == 0


def test_concurrent_executions_keep_separate_files_and_snapshots(project_root: Path, tmp_path: Path) -> None:
    tracker = make_tracker(project_root, tmp_path)
    errors: list[BaseException] = []

    def run(eid: str) -> None:
        try:
            ws = tracker.workspace(eid)
            for i in range(6):
                (ws / "outputs" / "same.txt").write_text(f"{eid} round {i}\n" * (i + 1))
                tracker.snapshot(eid, node=f"n{i}")
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"c{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    for k in range(4):
        eid = f"c{k}"
        ws = tracker.workspace(eid)
        assert (ws / "outputs" / "same.txt").read_text() == f"{eid} round 5\n" * 6
        snaps = tracker.snapshots(eid)
        assert len(snaps) == 6
        tracker.restore(eid, snaps[2].snapshot_id)
        assert (ws / "outputs" / "same.txt").read_text() == f"{eid} round 2\n" * 3


def test_max_snapshots_prunes_records_and_unreferenced_cache_objects(project_root: Path, tmp_path: Path) -> None:
    tracker = make_tracker(project_root, tmp_path, max_snapshots=2)
    ws = tracker.workspace("p1")
    objects = []
    for i in range(4):
        payload = f"version {i} ".encode() * 100
        (ws / "outputs" / "v.txt").write_bytes(payload)
        snap = tracker.snapshot("p1", node=f"n{i}", parent_checkpoint_id=f"ck{i}", step=i, checkpoint_id=f"ck{i + 1}")
        objects.append(tracker.store.cache_dir / snap.tree_hash[:2] / snap.tree_hash[2:])
    snaps = tracker.snapshots("p1")
    assert [s.node for s in snaps] == ["n2", "n3"]
    assert not objects[0].exists() and not objects[1].exists() and objects[3].exists()
    kept = {p.name for p in tracker.store.cache_dir.rglob("*") if p.is_file()}
    import hashlib

    assert hashlib.md5(b"version 0 " * 100).hexdigest()[2:] not in kept  # its file object went too
    assert hashlib.md5(b"version 3 " * 100).hexdigest()[2:] in kept
    refs = [CheckpointRef(f"ck{i}", f"ck{i - 1}" if i else None, i, 0.0) for i in range(5)]
    with pytest.raises(SnapshotNotFoundError, match="pruned"):
        tracker.rollback("p1", "ck1", refs)
    tracker.rollback("p1", "ck3", refs)
    assert (ws / "outputs" / "v.txt").read_bytes() == b"version 2 " * 100


def test_checkpoint_links_and_rollback_uses_nearest_snapshot(project_root: Path, tmp_path: Path) -> None:
    tracker = make_tracker(project_root, tmp_path)
    ws = tracker.workspace("l1")
    tracker.snapshot("l1", kind="seed", step=-1)
    (ws / "outputs" / "x").write_text("1")
    a = tracker.snapshot("l1", node="a", kind="node", step=1, parent_checkpoint_id="c0", supersede=True)
    (ws / "outputs" / "y").write_text("2")
    b = tracker.snapshot("l1", node="b", kind="node", step=1, parent_checkpoint_id="c0", supersede=True)  # same step
    assert b.added == ["outputs/x", "outputs/y"]  # changes since the checkpoint before, not since ``a``
    assert [s.snapshot_id for s in tracker.snapshots("l1")][-1] == b.snapshot_id
    assert a.snapshot_id not in [s.snapshot_id for s in tracker.snapshots("l1")]  # superseded
    t = b.created_at + 1
    refs = [
        CheckpointRef("cm1", None, -1, t - 9),
        CheckpointRef("c0", "cm1", 0, t - 8),
        CheckpointRef("c1", "c0", 1, t),
        CheckpointRef("c2", "c1", 2, t + 1),
    ]
    tracker.link_checkpoints("l1", refs)
    assert tracker.snapshots("l1")[-1].checkpoint_id == "c1"
    assert tracker.rollback("l1", "c2", refs).snapshot_id == b.snapshot_id  # step 2 wrote nothing
    tracker.rollback("l1", "c0", refs)  # before any node: the seed
    assert files_of(ws, "outputs") == {}
    with pytest.raises(SnapshotNotFoundError, match="no checkpoint 'nope'"):
        tracker.rollback("l1", "nope", refs)


def test_corrupt_or_missing_cache_object_is_a_typed_error_and_changes_nothing(
    project_root: Path, tmp_path: Path
) -> None:
    tracker = make_tracker(project_root, tmp_path)
    ws = tracker.workspace("k1")
    (ws / "outputs" / "o.txt").write_text("original")
    snap = tracker.snapshot("k1")
    (ws / "outputs" / "o.txt").write_text("later")
    import hashlib

    obj = tracker.store.cache_dir / hashlib.md5(b"original").hexdigest()[:2] / hashlib.md5(b"original").hexdigest()[2:]
    os.chmod(obj, 0o644)
    obj.write_text("tampered")
    with pytest.raises(SnapshotCorruptError, match=r"outputs/o.txt: object .* is corrupt") as info:
        tracker.restore("k1", snap.snapshot_id)
    assert isinstance(info.value, WTBError) and str(tracker.store.cache_dir) in str(info.value)
    obj.unlink()
    with pytest.raises(SnapshotCorruptError, match=r"outputs/o.txt: object .* is missing"):
        tracker.restore("k1", snap.snapshot_id)
    assert (ws / "outputs" / "o.txt").read_text() == "later"  # untouched
    with pytest.raises(SnapshotNotFoundError, match="no snapshot 'snap-99999'"):
        tracker.restore("k1", "snap-99999")


def test_failed_snapshot_keeps_the_previous_one(project_root: Path, tmp_path: Path) -> None:
    tracker = make_tracker(project_root, tmp_path)
    ws = tracker.workspace("f1")
    (ws / "outputs" / "good.txt").write_text("good")
    good = tracker.snapshot("f1")
    (ws / "outputs" / "dangling").symlink_to(ws / "outputs" / "missing-target")
    with pytest.raises(SnapshotError, match="Previous snapshots are intact"):
        tracker.snapshot("f1")
    assert [s.snapshot_id for s in tracker.snapshots("f1")] == [good.snapshot_id]
    (ws / "outputs" / "dangling").unlink()
    (ws / "outputs" / "good.txt").write_text("changed")
    tracker.restore("f1", good.snapshot_id)
    assert (ws / "outputs" / "good.txt").read_text() == "good"


@pytest.mark.parametrize(
    ("paths", "match"),
    [
        (["./data/", "./missing/"], r"tracked_paths\[1\].*'./missing/' does not exist.*mkdir -p"),
        (["../outside"], r"tracked_paths\[0\].*outside the project root"),
        (["/etc"], r"tracked_paths\[0\].*'/etc' resolves to /etc, outside the project root"),
    ],
)
def test_bad_tracked_paths_are_typed_errors(project_root: Path, tmp_path: Path, paths: list[str], match: str) -> None:
    (tmp_path / "outside").mkdir()
    cfg = FileTrackingConfig(enabled=True, tracked_paths=paths)
    with pytest.raises(TrackedPathError, match=match) as info:
        FileTracker("proj", project_root, cfg, tmp_path / "state")
    assert isinstance(info.value, ConfigError) and "Fix:" in str(info.value)


def test_workspace_accessor_outside_an_execution_raises() -> None:
    from wtb_prefect.worker.workspace import WorkspaceBound, use_workspace, workspace

    os.environ.pop("WTB_WORKSPACE", None)
    with pytest.raises(LookupError, match="file_tracking.enabled"):
        workspace()
    import pickle

    bound = pickle.loads(pickle.dumps(WorkspaceBound(workspace, "/some/where")))  # as shipped to a Ray worker
    assert bound() == Path("/some/where")
    with pytest.raises(LookupError):
        workspace()  # the binding lasts for the call only
    token = use_workspace("/x")
    try:
        assert workspace() == Path("/x")
    finally:
        from wtb_prefect.worker.workspace import _workspace

        _workspace.reset(token)


# ─── Through WTBTestBench: real Prefect server, Ray workers, DVC ───
# Node functions live at module level so Ray workers import them by reference.

import operator  # noqa: E402
import uuid  # noqa: E402
from typing import Annotated  # noqa: E402

from typing_extensions import TypedDict  # noqa: E402


class FileState(TypedDict):
    tag: str
    log: Annotated[list[str], operator.add]


def node_write(state: FileState) -> dict:
    from wtb_prefect import workspace

    ws = workspace()
    (ws / "outputs" / "a.txt").write_text(f"{state['tag']} a1\n")
    (ws / "outputs" / "nested").mkdir(exist_ok=True)
    (ws / "outputs" / "nested" / "b.bin").write_bytes(state["tag"].encode() * 1000)
    (ws / "data" / "raw" / "new.csv").write_text("n\n1\n")
    return {"log": [f"write@{ws}"]}


def node_modify(state: FileState) -> dict:
    from wtb_prefect import workspace

    ws = workspace()
    (ws / "outputs" / "a.txt").write_text(f"{state['tag']} a2, longer\n")
    with open(ws / "data" / "raw" / "a.csv", "a") as fh:
        fh.write("3,4\n")
    return {"log": ["modify"]}


def node_delete(state: FileState) -> dict:
    from wtb_prefect import workspace

    ws = workspace()
    (ws / "outputs" / "nested" / "b.bin").unlink()
    (ws / "data" / "blob.bin").unlink()
    return {"log": ["delete"]}


def file_graph():
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(FileState)
    g.add_node("write", node_write)
    g.add_node("modify", node_modify)
    g.add_node("delete", node_delete)
    g.add_edge(START, "write")
    g.add_edge("write", "modify")
    g.add_edge("modify", "delete")
    g.add_edge("delete", END)
    return g.compile()


def expected_files(root: Path, tag: str, after: int) -> dict[str, bytes]:
    """The tracked files after ``after`` nodes (0 = as seeded from the project root)."""
    files = files_of(root, "data", "outputs")
    files.pop("data/debug.log")  # ignored by the default patterns
    if after >= 1:
        files["outputs/a.txt"] = f"{tag} a1\n".encode()
        files["outputs/nested/b.bin"] = tag.encode() * 1000
        files["data/raw/new.csv"] = b"n\n1\n"
    if after >= 2:
        files["outputs/a.txt"] = f"{tag} a2, longer\n".encode()
        files["data/raw/a.csv"] += b"3,4\n"
    if after >= 3:
        del files["outputs/nested/b.bin"], files["data/blob.bin"]
    return files


def tracked_project(root: Path, factory=None, **tracking):
    from wtb_prefect import ExecutionConfig, NodeResourceConfig, RayConfig, WorkflowProject

    return WorkflowProject(
        name=f"files_{uuid.uuid4().hex[:6]}",
        graph_factory=factory or file_graph,
        root=root,
        file_tracking=FileTrackingConfig(enabled=True, tracked_paths=["./data/", "./outputs/"], **tracking),
        execution=ExecutionConfig(
            default_node_resources=NodeResourceConfig(num_cpus=0.25, memory="64MB"),
            ray_config=RayConfig(max_retries=0),
        ),
    )


def tracked_now(ws: Path) -> dict[str, bytes]:
    files = files_of(ws, "data", "outputs")
    files.pop("data/debug.log", None)
    return files


def test_bench_rollback_restores_files_of_each_checkpoint(bench, project_root: Path) -> None:
    project = tracked_project(project_root)
    bench.register_project(project)
    result = bench.run(project.name, {"tag": "solo", "log": []})
    assert result.status == "completed", result.error
    eid = result.execution_id
    ws = Path(result.provenance["files"]["workspace"])
    assert result.final_state["log"][0] == f"write@{ws}"  # the Ray worker wrote into the execution's workspace
    assert tracked_now(ws) == expected_files(project_root, "solo", 3)
    assert tracked_now(project_root) == expected_files(project_root, "solo", 0)  # project root untouched

    snaps = bench.get_file_snapshots(eid)
    assert [(s.kind, s.node) for s in snaps] == [
        ("seed", None),
        ("node", "write"),
        ("node", "modify"),
        ("node", "delete"),
    ]
    assert all(s.checkpoint_id for s in snaps[1:])
    assert [s.files_changed for s in snaps[1:]] == [3, 2, 2]
    prov = result.provenance["files"]
    assert [p["id"] for p in prov["snapshots"]] == [s.snapshot_id for s in snaps]
    assert prov["snapshot_hash"] == snaps[-1].tree_hash and prov["snapshot_hash"].endswith(".dir")
    assert bench.get_result(eid).provenance["files"] == prov  # recorded with the execution too

    by_step = {c.step: c.checkpoint_id for c in bench.get_checkpoints(eid) if c.source == "loop"}
    for step in (1, 3, 2, 0, 1):  # back and forth between branches; 0 = before any node ran
        bench.rollback(eid, by_step[step])
        assert tracked_now(ws) == expected_files(project_root, "solo", step), step

    resumed = bench.resume(eid)  # from step 1: modify and delete run again
    assert resumed.status == "completed", resumed.error
    assert tracked_now(ws) == expected_files(project_root, "solo", 3)


def test_bench_concurrent_executions_have_separate_files_and_snapshots(bench, project_root: Path) -> None:
    project = tracked_project(project_root, commit_on="node_complete")
    bench.register_project(project)
    batch = bench.run_batch_test(
        project.name, [{}], [{"tag": "left", "log": []}, {"tag": "right", "log": []}], parallelism=2
    )
    assert [r.status for r in batch] == ["completed", "completed"], [str(r.error) for r in batch]
    hashes = {}
    for r in batch:
        ws = Path(r.provenance["files"]["workspace"])
        tag = r.initial_state["tag"]
        assert tracked_now(ws) == expected_files(project_root, tag, 3)
        snaps = bench.get_file_snapshots(r.execution_id)
        assert len(snaps) == 4 and {s.execution_id for s in snaps} == {r.execution_id}
        hashes[tag] = [s.tree_hash for s in snaps]
    assert hashes["left"][0] == hashes["right"][0]  # same seed
    assert not set(hashes["left"][1:]) & set(hashes["right"][1:])  # every later snapshot differs


def test_bench_bad_tracked_path_fails_before_any_node(bench, project_root: Path) -> None:
    from wtb_prefect import WorkflowProject

    project = WorkflowProject(
        name=f"files_bad_{uuid.uuid4().hex[:6]}",
        graph_factory=file_graph,
        root=project_root,
        file_tracking={"enabled": True, "tracked_paths": ["./nope/"]},
    )
    bench.register_project(project)
    with pytest.raises(TrackedPathError, match="nope"):
        bench.run(project.name, {"tag": "x", "log": []})


def node_left(state: FileState) -> dict:
    from wtb_prefect import workspace

    (workspace() / "outputs" / "left.txt").write_text("L")
    return {"log": ["left"]}


def node_right(state: FileState) -> dict:
    from wtb_prefect import workspace

    (workspace() / "outputs" / "right.txt").write_text("R")
    return {"log": ["right"]}


def node_join(state: FileState) -> dict:
    from wtb_prefect import workspace

    (workspace() / "outputs" / "left.txt").unlink()
    return {"log": ["join"]}


def fan_graph():
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(FileState)
    for name, fn in (("left", node_left), ("right", node_right), ("join", node_join)):
        g.add_node(name, fn)
    g.add_edge(START, "left")
    g.add_edge(START, "right")
    g.add_edge(["left", "right"], "join")
    g.add_edge("join", END)
    return g.compile()


def test_bench_commit_on_checkpoint_one_snapshot_per_superstep_and_manual_mode(bench, project_root: Path) -> None:
    project = tracked_project(project_root, fan_graph)  # commit_on="checkpoint" (the default)
    bench.register_project(project)
    result = bench.run(project.name, {"tag": "fan", "log": []})
    assert result.status == "completed", result.error
    eid = result.execution_id
    snaps = bench.get_file_snapshots(eid)
    # seed, one snapshot for the superstep where left and right ran in parallel, one for join
    assert [s.kind for s in snaps] == ["seed", "node", "node"]
    assert snaps[1].added == ["outputs/left.txt", "outputs/right.txt"] and snaps[2].deleted == ["outputs/left.txt"]
    checkpoints = {c.checkpoint_id: c for c in bench.get_checkpoints(eid)}
    assert [checkpoints[s.checkpoint_id].step for s in snaps[1:]] == [1, 2]
    ws = Path(result.provenance["files"]["workspace"])
    bench.rollback(eid, snaps[1].checkpoint_id)
    assert (ws / "outputs" / "left.txt").read_text() == "L" and (ws / "outputs" / "right.txt").read_text() == "R"

    manual = tracked_project(project_root, commit_on="manual")
    bench.register_project(manual)
    res = bench.run(manual.name, {"tag": "man", "log": []})
    assert res.status == "completed", res.error
    assert bench.get_file_snapshots(res.execution_id) == []  # only when asked
    mws = Path(res.provenance["files"]["workspace"])
    assert tracked_now(mws) == expected_files(project_root, "man", 3) and mws != ws


def test_state_folder_inside_a_tracked_root_is_never_tracked(project_root: Path) -> None:
    cfg = FileTrackingConfig(enabled=True, tracked_paths=["."])
    tracker = FileTracker("proj", project_root, cfg, project_root / ".wtb" / "projects" / "proj")
    ws = tracker.workspace("r1")
    snap = tracker.snapshot("r1")
    assert not (ws / ".wtb").exists()
    assert sorted(snap.added) == ["data/blob.bin", "data/raw/a.csv", "src.py"]  # *.log ignored by default
