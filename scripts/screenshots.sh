#!/usr/bin/env bash
# Screenshots of the report, the Prefect summary artifact and the MLflow compare view of one quickstart batch.
# Usage: bash scripts/screenshots.sh [OUT_DIR]   (default ./screenshots; uses its own state folder, stops what it starts)
# Needs Debian's chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-screenshots}")
mkdir -p "$OUT"
export WTB_HOME=$(mktemp -d /tmp/wtb-shots-XXXXXX)
unset PREFECT_API_URL
CHROME="chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-sync --disable-background-networking"
.venv/bin/wtb demo --example examples.quickstart.project 2>&1 | tee "$OUT/demo.log"
REPORT=$(grep -o "$WTB_HOME/reports/[^ ]*\.html" "$OUT/demo.log" | head -1)
API=$(.venv/bin/python -c "from wtb_prefect.services.prefect_server import PrefectServer; print(PrefectServer().status().url)")
UI=${API%/api}
BATCH=$(basename "$REPORT" .html); BATCH=${BATCH##*-batch-}
FLOW_RUN=$(grep -o 'runs/flow-run/[0-9a-f-]*' "$OUT/demo.log" | head -1 | cut -d/ -f3)
# 1. the report (top of the page, then the regression filter)
$CHROME --user-data-dir=$(mktemp -d) --window-size=1500,2200 --screenshot=$OUT/report.png "file://$REPORT" 2>/dev/null
$CHROME --user-data-dir=$(mktemp -d) --window-size=1500,1600 --screenshot=$OUT/report-regressions.png "file://$REPORT#filter=regressions" 2>/dev/null
# 2. the Prefect summary artifact (markdown) of the batch
ARTIFACT_ID=$(PREFECT_API_URL=$API .venv/bin/python - "$FLOW_RUN" <<'PY'
import sys, uuid
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
with get_client(sync_client=True) as c:
    arts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(sys.argv[1])])))
print(next(a.id for a in arts if a.key and a.key.endswith("-summary")))
PY
)
$CHROME --user-data-dir=$(mktemp -d) --window-size=1500,1300 --virtual-time-budget=20000 --screenshot=$OUT/prefect-summary.png "$UI/artifacts/artifact/$ARTIFACT_ID" 2>/dev/null
$CHROME --user-data-dir=$(mktemp -d) --window-size=1500,1100 --virtual-time-budget=20000 --screenshot=$OUT/prefect-vs-baseline.png "$UI/runs/flow-run/$FLOW_RUN?tab=Artifacts" 2>/dev/null
.venv/bin/wtb server stop
# 3. the MLflow compare view of the batch's child runs (mlflow ui started here, stopped at the end)
.venv/bin/mlflow ui --workers 1 --port 5018 --backend-store-uri "sqlite:///$WTB_HOME/mlflow.db" --default-artifact-root "file://$WTB_HOME/mlartifacts" > $OUT/mlflow-ui.log 2>&1 &
MLFLOW_PID=$!
trap 'kill $MLFLOW_PID 2>/dev/null || true' EXIT
for i in $(seq 120); do curl -sf http://127.0.0.1:5018/health >/dev/null && break; sleep 5; done
read EXP RUNS < <(.venv/bin/python - "$BATCH" <<'PY'
import json, os, sys
from mlflow import MlflowClient
c = MlflowClient(f"sqlite:///{os.environ['WTB_HOME']}/mlflow.db")
e = c.get_experiment_by_name("quickstart_qa")
runs = c.search_runs([e.experiment_id], f"tags.`wtb.batch_id` = '{sys.argv[1]}' and tags.`wtb.kind` = 'variant'")
print(e.experiment_id, json.dumps([r.info.run_id for r in runs], separators=(",", ":")))
PY
)
ENC=$(.venv/bin/python -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))" "$RUNS")
$CHROME --user-data-dir=$(mktemp -d) --window-size=1500,1400 --virtual-time-budget=20000 --screenshot=$OUT/mlflow-experiment.png "http://127.0.0.1:5018/#/experiments/$EXP" 2>/dev/null
$CHROME --user-data-dir=$(mktemp -d) --window-size=1500,1400 --virtual-time-budget=20000 --screenshot=$OUT/mlflow-compare.png "http://127.0.0.1:5018/#/compare-runs?runs=$ENC&experiments=%5B%22$EXP%22%5D" 2>/dev/null
ls -la $OUT
