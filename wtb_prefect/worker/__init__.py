"""What runs inside a Ray worker: the node call, its trace span, its workspace, its metrics.

Kept light on purpose (enforced by import-linter): a new worker imports this to
unpickle a node body, and importing Prefect or MLflow there costs seconds.
"""
