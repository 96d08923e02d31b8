# The two commands of the README: `make demo` (the main job) and `make test`.
.PHONY: setup demo test server-stop

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/wtb demo

test: setup
	.venv/bin/python -m pytest

server-stop:
	.venv/bin/wtb server stop
