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
uv sync --frozen
