#!/usr/bin/env bash
# Start the Prefect server (API + UI) on PostgreSQL for Zeitflow deployments (architecture §6).
#
#   ZEITFLOW_PREFECT_DB_URL=postgresql://prefect:PASSWORD@db-host:5432/prefect scripts/prefect-server.sh
#
# Settings (environment):
#   PREFECT_SERVER_DATABASE_CONNECTION_URL  the server's database, used as is (postgresql+asyncpg://...);
#   ZEITFLOW_PREFECT_DB_URL                 otherwise: any postgres:// or postgresql[+driver]:// URL, turned
#                                           into postgresql+asyncpg://. Neither set: SQLite under PREFECT_HOME
#                                           (a warning; fine for a laptop, not for several workers).
#   PREFECT_SERVER_API_HOST                 bind address, default 127.0.0.1 (this machine only);
#   PREFECT_SERVER_API_PORT                 default 4200;
#   PREFECT_HOME                            default <repo>/.prefect/server;
#   PREFECT_BIN                             the prefect executable, default <repo>/.venv/bin/prefect or PATH.
# Analytics are off (PREFECT_SERVER_ANALYTICS_ENABLED=false, DO_NOT_TRACK=1).
#
# Exposing the server (another host than 127.0.0.1/localhost/::1): the API has no authentication by
# default, and anyone who reaches it can run code on every worker. Before binding to 0.0.0.0:
#   * set PREFECT_SERVER_API_AUTH_STRING='user:long-random-password' here (the server and UI then ask for
#     it; this script refuses a non-loopback bind without it unless ZEITFLOW_ALLOW_UNAUTHENTICATED=1);
#   * give every client and worker the same value as PREFECT_API_AUTH_STRING (prefect CLI, workers,
#     deployments/trigger.py, curl -u);
#   * put TLS in front (a reverse proxy such as nginx or Caddy terminating HTTPS), since basic auth over
#     plain HTTP is readable on the wire, and set PREFECT_UI_API_URL=https://your-host/api for the UI.
# Keep these values in a secret store or an env file readable by the service user only, never in git.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_HOME="${PREFECT_HOME:-$REPO/.prefect/server}"
HOST="${PREFECT_SERVER_API_HOST:-127.0.0.1}"
PORT="${PREFECT_SERVER_API_PORT:-4200}"

if [[ -z "${PREFECT_SERVER_DATABASE_CONNECTION_URL:-}" && -n "${ZEITFLOW_PREFECT_DB_URL:-}" ]]; then
  # postgres://, postgresql:// or postgresql+psycopg:// -> postgresql+asyncpg:// (the server's async driver)
  PREFECT_SERVER_DATABASE_CONNECTION_URL="$(printf '%s' "$ZEITFLOW_PREFECT_DB_URL" \
    | sed -E 's#^postgres(ql)?(\+[A-Za-z0-9_]+)?://#postgresql+asyncpg://#')"
  export PREFECT_SERVER_DATABASE_CONNECTION_URL
fi
if [[ -z "${PREFECT_SERVER_DATABASE_CONNECTION_URL:-}" ]]; then
  echo "warning: no PREFECT_SERVER_DATABASE_CONNECTION_URL or ZEITFLOW_PREFECT_DB_URL: using SQLite in" \
       "$PREFECT_HOME (set a PostgreSQL URL for workers on several machines)" >&2
elif [[ "$PREFECT_SERVER_DATABASE_CONNECTION_URL" != postgresql+asyncpg://* ]]; then
  echo "error: PREFECT_SERVER_DATABASE_CONNECTION_URL must start with postgresql+asyncpg://" >&2
  exit 2
fi

case "$HOST" in
  127.0.0.1|localhost|::1) ;;
  *)
    if [[ -z "${PREFECT_SERVER_API_AUTH_STRING:-}" && "${ZEITFLOW_ALLOW_UNAUTHENTICATED:-0}" != 1 ]]; then
      echo "error: binding to $HOST exposes the API; set PREFECT_SERVER_API_AUTH_STRING (and TLS in front)," \
           "or ZEITFLOW_ALLOW_UNAUTHENTICATED=1 on a trusted network" >&2
      exit 2
    fi
    ;;
esac

PREFECT="${PREFECT_BIN:-}"
if [[ -z "$PREFECT" ]]; then
  if [[ -x "$REPO/.venv/bin/prefect" ]]; then PREFECT="$REPO/.venv/bin/prefect"; else PREFECT="$(command -v prefect)"; fi
fi

mkdir -p "$PREFECT_HOME"
DB_SHOWN="${PREFECT_SERVER_DATABASE_CONNECTION_URL:-sqlite}"
DB_SHOWN="$(printf '%s' "$DB_SHOWN" | sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#')"   # never print a password
echo "Prefect server on http://$HOST:$PORT (API /api, UI /), database $DB_SHOWN, home $PREFECT_HOME" >&2
exec "$PREFECT" server start --host "$HOST" --port "$PORT" --analytics-off "$@"
