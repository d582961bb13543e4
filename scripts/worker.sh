#!/usr/bin/env bash
# Start a Prefect process worker on the `zeitflow-process` pool, in the repository root (where the
# deployments' config_file paths resolve). Start one per machine, or several, to run more flow runs at once.
#
#   PREFECT_API_URL=http://127.0.0.1:4200/api scripts/worker.sh [--limit 2] [--name worker-a]
#
# Settings (environment): PREFECT_API_URL (default http://127.0.0.1:4200/api), PREFECT_API_AUTH_STRING when
# the server has PREFECT_SERVER_API_AUTH_STRING, ZEITFLOW_WORK_POOL (default zeitflow-process), PREFECT_BIN.
# Flow runs inherit this environment: set ZEITFLOW_STORAGE_ROOT (s3://... when workers run on several
# machines), ZEITFLOW_METADATA_URL and AWS_* here, not in prefect.yaml. Extra arguments go to
# `prefect worker start` (--limit N, --name NAME, --prefetch-seconds S, ...). Stop it with Ctrl-C (SIGINT).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:4200/api}"
export DO_NOT_TRACK=1 GX_ANALYTICS_ENABLED=false
POOL="${ZEITFLOW_WORK_POOL:-zeitflow-process}"

PREFECT="${PREFECT_BIN:-}"
if [[ -z "$PREFECT" ]]; then
  if [[ -x "$REPO/.venv/bin/prefect" ]]; then PREFECT="$REPO/.venv/bin/prefect"; else PREFECT="$(command -v prefect)"; fi
fi

exec "$PREFECT" worker start --pool "$POOL" --type process "$@"
