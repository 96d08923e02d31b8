"""Deployable Prefect flows of wtb_prefect (entrypoints of ``prefect.yaml``)."""
