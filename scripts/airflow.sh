#!/usr/bin/env bash
# Run an `airflow` command in .venv-airflow with the project's settings:
#   bash scripts/airflow.sh standalone        (what `make airflow` runs)
#   bash scripts/airflow.sh dags list
#   bash scripts/airflow.sh dags test cxr_report_daily 2024-01-01
# AIRFLOW_HOME under var/ (SQLite metadata), no example DAGs, the DAGs in dags/, the API server
# on 127.0.0.1 only, and JUPYTER_PATH so papermill finds the `cxr` kernel registered in .venv.
# Any of these can be overridden from the environment; CXR_* settings pass through to the DAGs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AIRFLOW_VENV="${AIRFLOW_VENV:-$ROOT/.venv-airflow}"
[[ "$AIRFLOW_VENV" = /* ]] || AIRFLOW_VENV="$ROOT/$AIRFLOW_VENV"
if [ ! -x "$AIRFLOW_VENV/bin/airflow" ]; then
  echo "airflow: $AIRFLOW_VENV has no Airflow; run \`make airflow-venv\` first" >&2
  exit 2
fi
export PATH="$AIRFLOW_VENV/bin:$PATH"  # standalone starts its components as `airflow ...`
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/var/airflow}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="${AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT:-120}"
export CXR_PROJECT_DIR="${CXR_PROJECT_DIR:-$ROOT}"
# shellcheck source=scripts/jupyter_env.sh
source "$ROOT/scripts/jupyter_env.sh"
mkdir -p "$AIRFLOW_HOME"
# SQLite metadata in AIRFLOW_HOME (Airflow's default); migrate once, and again after an upgrade.
if [ "${1:-}" != "standalone" ] && [ ! -f "$AIRFLOW_HOME/.migrated" ]; then
  "$AIRFLOW_VENV/bin/airflow" db migrate >/dev/null
  touch "$AIRFLOW_HOME/.migrated"
fi
exec "$AIRFLOW_VENV/bin/airflow" "$@"
