"""``python -m wtb_prefect.cli``: the ``wtb`` command."""

from wtb_prefect.cli import app

app()
