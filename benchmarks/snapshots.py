"""File snapshot cost: wtb_prefect's DVC snapshots vs `dvc add` by hand and `cp -r`.

Measures, in one run, medians of several repetitions of:

* a snapshot of an unchanged 1,000-file tracked folder (target: <= 0.2 s);
* a snapshot after one changed file, for several sizes of that file and for a
  folder three times larger (target: cost grows with changed bytes, not with
  folder size);
* the baselines on the same folder: `dvc add data` in a DVC repository by
  hand (the CLI a user would run) and `cp -r data copy`.

Run: .venv/bin/python benchmarks/snapshots.py [--files 1000] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from wtb_prefect.config import FileTrackingConfig
from wtb_prefect.integrations.files import FileTracker

DVC = str(Path(sys.executable).with_name("dvc"))


def make_folder(root: Path, nfiles: int, size: int = 4096) -> None:
    for i in range(nfiles):
        sub = root / "data" / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def median_s(fn: Callable[[], object], reps: int, before: Callable[[int], object] | None = None) -> float:
    times = []
    for rep in range(reps):
        if before is not None:
            before(rep)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tracker_for(root: Path, state: Path) -> tuple[FileTracker, Path]:
    cfg = FileTrackingConfig(enabled=True, tracked_paths=["data"])
    tracker = FileTracker("bench", root, cfg, state)
    ws = tracker.workspace("bench-exec")
    tracker.snapshot("bench-exec", kind="seed")  # first snapshot stores everything
    return tracker, ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dvc-reps", type=int, default=3, help="repetitions of the (slow) `dvc add` baseline")
    args = parser.parse_args()
    n, reps, dvc_reps = args.files, args.reps, args.dvc_reps
    tmp = Path(tempfile.mkdtemp(prefix="wtb-snap-bench-"))
    rows: list[tuple[str, float, str]] = []
    try:
        # ─── wtb snapshots ───
        root = tmp / "project"
        make_folder(root, n)
        t0 = time.perf_counter()
        tracker, ws = tracker_for(root, tmp / "state")
        first = time.perf_counter() - t0
        eid = "bench-exec"
        unchanged = median_s(lambda: tracker.snapshot(eid), reps)
        rows.append((f"wtb snapshot, unchanged {n}-file folder", unchanged, "target <= 0.2 s"))

        target = ws / "data" / "d00" / "f00000.bin"

        def change(size: int) -> Callable[[int], object]:
            return lambda rep: target.write_bytes(os.urandom(size))

        changed = {}
        for size in (4096, 1 << 20, 16 << 20):
            changed[size] = median_s(lambda: tracker.snapshot(eid), reps, before=change(size))
            rows.append((f"wtb snapshot, one changed file of {size // 1024} KiB", changed[size], ""))

        big_root = tmp / "project-big"
        make_folder(big_root, 3 * n)
        big_tracker, big_ws = tracker_for(big_root, tmp / "state-big")
        big_target = big_ws / "data" / "d00" / "f00000.bin"
        big_unchanged = median_s(lambda: big_tracker.snapshot(eid), reps)
        big_changed = median_s(
            lambda: big_tracker.snapshot(eid), reps, before=lambda rep: big_target.write_bytes(os.urandom(4096))
        )
        rows.append((f"wtb snapshot, unchanged {3 * n}-file folder", big_unchanged, ""))
        rows.append((f"wtb snapshot, one changed 4 KiB file in {3 * n}-file folder", big_changed, ""))

        # ─── baselines: dvc add by hand, cp -r ───
        manual = tmp / "manual"
        shutil.copytree(root / "data", manual / "data")
        subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=manual, check=True)
        subprocess.run([DVC, "add", "-q", "data"], cwd=manual, check=True)
        dvc_unchanged = median_s(lambda: subprocess.run([DVC, "add", "-q", "data"], cwd=manual, check=True), dvc_reps)
        manual_target = manual / "data" / "d00" / "f00000.bin"

        def manual_change(rep: int) -> None:
            manual_target.unlink()  # dvc add links files from its cache: replace, do not write through
            manual_target.write_bytes(os.urandom(4096))

        dvc_changed = median_s(
            lambda: subprocess.run([DVC, "add", "-q", "data"], cwd=manual, check=True), dvc_reps, before=manual_change
        )
        rows.append((f"`dvc add data` by hand, unchanged {n}-file folder", dvc_unchanged, "baseline"))
        rows.append(("`dvc add data` by hand, one changed 4 KiB file", dvc_changed, "baseline"))
        # DVC's add without the CLI's process start: its machinery alone, in this process
        from dvc.repo import Repo

        def api_add() -> None:
            with Repo(str(manual)) as repo:
                repo.add(str(manual / "data"))

        api_add()  # imports and warm-up
        api_unchanged = median_s(api_add, reps)
        api_changed = median_s(api_add, reps, before=manual_change)
        rows.append((f"dvc Python API Repo.add, unchanged {n}-file folder", api_unchanged, "baseline"))
        rows.append(("dvc Python API Repo.add, one changed 4 KiB file", api_changed, "baseline"))
        copies = tmp / "copies"
        copies.mkdir()
        cp = median_s(
            lambda: subprocess.run(
                ["cp", "-r", str(root / "data"), str(copies / f"c{time.monotonic_ns()}")], check=True
            ),
            reps,
        )
        rows.append((f"`cp -r data` ({n} files)", cp, "baseline"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(
        f"\nfile snapshot cost, medians of {reps} repetitions ({dvc_reps} for `dvc add`) ({n} files of 4 KiB; first snapshot incl. DVC repo "
        f"creation {first:.2f} s)\n"
    )
    print(f"{'measurement':<{width}}  {'median':>9}")
    for name, secs, note in rows:
        print(f"{name:<{width}}  {secs * 1000:7.1f} ms  {note}")
    print("\nratios (same run):")
    print(f"  unchanged snapshot / `dvc add` unchanged      = {unchanged / dvc_unchanged:.3f}")
    print(f"  unchanged snapshot / `cp -r`                  = {unchanged / cp:.3f}")
    print(f"  one changed 4 KiB file / `dvc add` changed    = {changed[4096] / dvc_changed:.3f}")
    print(f"  one changed 4 KiB file / `cp -r`              = {changed[4096] / cp:.3f}")
    print(f"  unchanged snapshot / Repo.add unchanged       = {unchanged / api_unchanged:.3f}")
    print(f"  one changed 4 KiB file / Repo.add changed     = {changed[4096] / api_changed:.3f}")
    print(f"  16 MiB changed / 4 KiB changed (bytes x4096)  = {changed[16 << 20] / changed[4096]:.2f}")
    print(f"  {3 * n} files / {n} files, one changed file    = {big_changed / changed[4096]:.2f}")
    print(f"\ntarget unchanged <= 0.2 s: {'met' if unchanged <= 0.2 else 'NOT met'} ({unchanged * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
