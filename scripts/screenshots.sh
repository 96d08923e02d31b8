#!/usr/bin/env bash
# Screenshots of one quickstart batch as a user sees it: the report (900 px and 1500 px), the flow run's Artifacts
# tab and its summary artifact in the Prefect UI, and the MLflow experiment's runs table.
# Usage: bash scripts/screenshots.sh [OUT_DIR]   (default ./screenshots)
# Uses its own state folder and removes it at the end; stops the Prefect server, Ray and MLflow it started.
# Needs Debian's chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-screenshots}")
mkdir -p "$OUT"
export WTB_HOME=$(mktemp -d /tmp/wtb-shots-XXXXXX)
# every tool's temporary files (MLflow's database lock, Chromium's profile) go inside it, so they leave with it
export TMPDIR="$WTB_HOME/tmp"
mkdir -p "$TMPDIR"
unset PREFECT_API_URL
MLFLOW_PID=""
cleanup() {
  if [ -n "$MLFLOW_PID" ]; then  # the server and its job consumers: wait until the whole group has gone
    kill -- -"$MLFLOW_PID" 2>/dev/null || true
    for i in $(seq 80); do kill -0 -- -"$MLFLOW_PID" 2>/dev/null || break; sleep 0.25; done
    kill -9 -- -"$MLFLOW_PID" 2>/dev/null || true
  fi
  .venv/bin/wtb down >/dev/null 2>&1 || true
  .venv/bin/wtb server stop >/dev/null 2>&1 || true
  rm -rf "$WTB_HOME"
}
trap cleanup EXIT
.venv/bin/wtb demo --example examples.quickstart.project 2>&1 | tee "$OUT/demo.log"
REPORT=$(grep -o "$WTB_HOME/reports/[^ ]*\.html" "$OUT/demo.log" | head -1)
cp "$REPORT" "$OUT/report.html"
API=$(.venv/bin/python -c "from wtb_prefect.services.prefect_server import PrefectServer; print(PrefectServer().status().url)")
FLOW_RUN=$(grep -o 'runs/flow-run/[0-9a-f-]*' "$OUT/demo.log" | head -1 | cut -d/ -f3)
PORT=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
setsid .venv/bin/mlflow server --host 127.0.0.1 --port "$PORT" --workers 1 --backend-store-uri "sqlite:///$WTB_HOME/mlflow.db" \
  --default-artifact-root "file://$WTB_HOME/mlartifacts" > "$OUT/mlflow-ui.log" 2>&1 &
MLFLOW_PID=$!
for i in $(seq 240); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done
# Each page is opened in headless Chromium over DevTools and shot once what it shows has loaded.
PREFECT_API_URL=$API .venv/bin/python - "$OUT" "$REPORT" "$API" "$FLOW_RUN" "http://127.0.0.1:$PORT" <<'PY'
import sys, time, uuid
from pathlib import Path
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from tests.support.browser import Browser
from wtb_prefect.integrations.mlflow import experiment_url, tracking_uri

out, report, api, flow_run, mlflow_ui = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ui = api.removesuffix("/api")
with get_client(sync_client=True) as client:
    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run)])))
summary = next(a for a in artifacts if a.key and a.key.endswith("-summary"))
experiment = MlflowClient(tracking_uri()).get_experiment_by_name("quickstart_qa").experiment_id
# the tab's label: the innermost element reading 'Artifacts' (a click on it reaches the tab)
tab = "Array.from(document.querySelectorAll('body *')).find(e => e.children.length === 0 && e.textContent.trim() === 'Artifacts')"
# (file, width, height, address, shown when, then click, then shown when)
shots = [
    ("report-900.png", 900, 1400, report.as_uri(), "document.body.getAttribute('data-page')", None, None),
    ("report.png", 1500, 2200, report.as_uri(), "document.body.getAttribute('data-page')", None, None),
    # the run page opens on its Logs tab whatever the address says: the Artifacts tab is clicked once it is drawn
    ("prefect-artifacts-tab.png", 1400, 1100, f"{ui}/runs/flow-run/{flow_run}?tab=Artifacts", f"Boolean({tab})",
     f"{tab}.click()", f"document.body.innerText.includes({summary.key!r})"),
    ("prefect-summary.png", 1400, 1300, f"{ui}/artifacts/artifact/{summary.id}", "document.querySelectorAll('table').length > 0", None, None),
    ("mlflow-runs.png", 1500, 1000, experiment_url(mlflow_ui, experiment), "document.body.innerText.includes('Run Name')", None, None),
]
with Browser("chromium", 1400, 1000) as browser:
    for name, width, height, url, ready, click, then in shots:
        browser.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        browser.open(url, ready, timeout=180)
        if click:
            browser.evaluate(click)
            deadline = time.monotonic() + 60
            while not browser.evaluate(f"Boolean({then})"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: {then} never held after {click}")
                time.sleep(0.5)
        time.sleep(2)  # charts and fonts settle after the condition holds
        print(browser.screenshot(out / name))
PY
ls -la "$OUT"
