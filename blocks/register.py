"""Register the block types of wtb_prefect and create their default documents.

    PREFECT_API_URL=http://127.0.0.1:4200/api python blocks/register.py

The same as ``prefect block register -m wtb_prefect.integrations.blocks`` followed by saving:

- ``wtb-ray-cluster/local``: join a running Ray cluster or start a local one;
- ``wtb-mlflow-tracking/local``: MLflow in SQLite under the state folder (``WTB_HOME``);
- ``wtb-checkpoint-database/local``: SQLite checkpoints under the state folder;
- ``wtb-project/quickstart``: the quick-start project with the three above, so a
  deployment can be run with ``--param project=wtb-project/quickstart``.

Existing documents are overwritten. ``--project REF`` and ``--name NAME`` save
another project reference instead of the quick-start one.
"""

from __future__ import annotations

import argparse

from wtb_prefect.integrations.blocks import CheckpointDatabase, MLflowTracking, RayCluster, WTBProject
from wtb_prefect.settings import get_settings

BLOCK_TYPES = (RayCluster, MLflowTracking, CheckpointDatabase, WTBProject)


def main() -> None:
    """Register the types, then save the default documents."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="examples.quickstart.project:build_project")
    parser.add_argument("--name", default="quickstart", help="Name of the wtb-project document.")
    args = parser.parse_args()

    for block_type in BLOCK_TYPES:
        block_type.register_type_and_schema()
        print(f"registered block type {block_type.get_block_type_slug()}")

    state = get_settings().state_dir
    ray = RayCluster(address="auto")
    mlflow = MLflowTracking(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    checkpoints = CheckpointDatabase(storage="sqlite")
    for block in (ray, mlflow, checkpoints):
        block.save("local", overwrite=True)
        print(f"saved {block.get_block_type_slug()}/local")
    project = WTBProject(reference=args.project, ray_cluster=ray, mlflow=mlflow, checkpoints=checkpoints)
    project.save(args.name, overwrite=True)
    print(f"saved wtb-project/{args.name} -> {args.project}")


if __name__ == "__main__":
    main()
