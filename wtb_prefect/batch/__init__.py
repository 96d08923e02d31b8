"""A batch: its plan, the Prefect flows that run it, the regression gate, the observers."""
