#!/usr/bin/env bash
# Set up the project's environment with uv, installing uv first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "uv not found: installing it with pip (python3 -m pip install --user uv)" >&2
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
fi
export PATH="$HOME/.local/bin:$PATH"
# Compile bytecode at install: with PYTHONDONTWRITEBYTECODE=1 (as in many container
# images) Python never writes .pyc files, so without this every process (the CLI and
# every Ray worker) recompiles prefect, mlflow, langgraph and ray on import (~14 s).
uv sync --frozen --compile-bytecode
# The project's own sources are installed editable (not under site-packages): compile them too.
.venv/bin/python -m compileall -q -j 0 wtb_prefect examples flows deployments blocks >/dev/null
