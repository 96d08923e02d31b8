#!/usr/bin/env bash
# Screenshot the Prefect UI page of a wtb batch flow run (its node task runs) with headless Chromium.
#
#   scripts/screenshot.sh [FLOW_RUN_ID] [OUT.png]
#
# FLOW_RUN_ID defaults to the newest completed `wtb-batch-test` flow run; OUT to
# screenshots/batch-flow-run.png (screenshots/ is not committed). The Prefect API
# is $PREFECT_API_URL, else the embedded server of `wtb server status`.
# Installs Chromium with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ -z "${PREFECT_API_URL:-}" ]; then
  PREFECT_API_URL=$($PY -c "
from wtb_prefect.services.prefect_server import PrefectServer
info = PrefectServer().status()
print(info.url if info else '')")
  [ -n "$PREFECT_API_URL" ] || { echo "no Prefect API: start one with 'wtb server start' or set PREFECT_API_URL" >&2; exit 2; }
  export PREFECT_API_URL
fi

FLOW_RUN_ID=${1:-$($PY - <<'PYEOF'
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=["wtb-batch-test"])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))),
        sort=FlowRunSort.START_TIME_DESC,
        limit=1,
    )
print(runs[0].id if runs else "")
PYEOF
)}
[ -n "$FLOW_RUN_ID" ] || { echo "no completed wtb-batch-test flow run on $PREFECT_API_URL: run a batch first" >&2; exit 2; }

OUT=${2:-screenshots/batch-flow-run.png}
mkdir -p "$(dirname "$OUT")"
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
URL="${PREFECT_API_URL%/api}/runs/flow-run/${FLOW_RUN_ID}"  # the run graph shows every node task run
echo "screenshot of $URL" >&2
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$PROFILE" --hide-scrollbars --window-size=1600,1000 \
  --virtual-time-budget=15000 --screenshot="$(realpath -m "$OUT")" "$URL" 2>/dev/null
echo "$OUT"
