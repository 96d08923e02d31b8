# The two commands of the README: `make demo` (the main job) and `make test`.
.PHONY: setup demo test test-unit up down status server-stop

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/wtb demo

# Two workers sharing the session's Prefect server and Ray cluster (see tests/conftest.py).
test: setup
	.venv/bin/python -m pytest -n 2 --dist loadgroup

# The fast subset: no Prefect server, no Ray cluster (a unit test that starts one fails).
test-unit: setup
	.venv/bin/python -m pytest -m "not integration"

server-stop:
	.venv/bin/wtb server stop

# Keep the Prefect server and a Ray head running between runs (`wtb up`), stop them, list them.
up: setup
	.venv/bin/wtb up

down:
	.venv/bin/wtb down

status:
	.venv/bin/wtb status
