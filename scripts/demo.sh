#!/usr/bin/env bash
# `make demo` (after `make setup`): the whole pipeline on the embedded defaults -- SQLite,
# a lake directory and an in-process warehouse under var/ -- with no cloud and no root.
#
#   1. a model in the registry (the shipped one, or trained once on synthetic phantoms)
#   2. synthetic phantom X-rays, PNG and DICOM (fake patient tags, removed at ingest)
#   3. `cxr db upgrade` and `cxr ingest`
#   4. backup, warehouse, mart and the pipeline report, each a papermill run of its notebook
#      with its record in the lake: runs/demo/<date>/<notebook>.ipynb + .html
#   5. the dashboard (Voila), after printing its URL and where the reports are
#
# DEMO_NO_SERVE=1 stops after step 4 (the smoke test). DEMO_PNG / DEMO_DICOM set the numbers
# of phantoms. CXR_* settings apply as everywhere (e.g. CXR_DATA_DIR for another folder).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
CXR="$VENV/bin/cxr"
[ -x "$CXR" ] || { echo "demo: $CXR missing; run \`make setup\` first" >&2; exit 2; }
export JUPYTER_PATH="${JUPYTER_PATH:-$ROOT/$VENV/share/jupyter}"
export JUPYTER_CONFIG_DIR="${JUPYTER_CONFIG_DIR:-$ROOT/var/jupyter/config}"
export JUPYTER_DATA_DIR="${JUPYTER_DATA_DIR:-$ROOT/var/jupyter/data}"
export JUPYTER_RUNTIME_DIR="${JUPYTER_RUNTIME_DIR:-$ROOT/var/jupyter/runtime}"
export IPYTHONDIR="${IPYTHONDIR:-$ROOT/var/ipython}"
DATA_DIR="${CXR_DATA_DIR:-var}"
export CXR_DATA_DIR="$DATA_DIR"
N_PNG="${DEMO_PNG:-16}"
N_DICOM="${DEMO_DICOM:-4}"
DAY="$(date -u +%Y-%m-%d)"
TOMORROW="$(date -u -d tomorrow +%Y-%m-%d)"
START=$SECONDS

step() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - START))"; }

step "1/5 model"
MODELS_DIR="${CXR_MODELS_DIR:-models}"
if compgen -G "$MODELS_DIR/${CXR_MODEL_NAME:-cxr-demo}/*/model.onnx" >/dev/null; then
  echo "using the model in $MODELS_DIR (trained on synthetic phantoms: not for clinical use)"
else
  echo "no model in $MODELS_DIR: training the demo model once on synthetic phantoms (not for clinical use)"
  "$CXR" model train --recipe demo
fi

step "2/5 phantom X-rays: $N_PNG PNG + $N_DICOM DICOM (synthetic, fake patient tags)"
PHANTOMS="$DATA_DIR/demo/phantoms"
"$CXR" phantoms "$N_PNG" "$PHANTOMS/png" --seed 1000
"$CXR" phantoms "$N_DICOM" "$PHANTOMS/dicom" --dicom --seed 2000

step "3/5 DB and ingest"
"$CXR" db upgrade
"$CXR" ingest "$PHANTOMS/png/images" "$PHANTOMS/dicom/images" --run-id "demo-$DAY"

step "4/5 stage notebooks (papermill, records in the lake)"
run_nb() {  # NAME [-p KEY VALUE]...
  local name="$1"; shift
  step "  notebook $name"
  "$CXR" notebook run "$name" --dag-id demo --logical-date "$DAY" --task "$name" -q "$@"
}
# Keep the DB rows (purge false) so the dashboard still shows their history.
run_nb backup -p before "$TOMORROW" -p purge false
run_nb warehouse_etl
run_nb mart_export -p out_dir "$DATA_DIR/mart/demo"
run_nb pipeline_report -p mart_dir "$DATA_DIR/mart"

LAKE="$("$VENV/bin/python" -c 'from cxr.config import get_settings; print(get_settings().resolved_lake_url)')"
HOST="${CXR_DASHBOARD_HOST:-127.0.0.1}"
PORT="${CXR_DASHBOARD_PORT:-8866}"
step "5/5 done in $((SECONDS - START)) s"
cat <<EOF

Reports (executed notebooks, with HTML copies):
  $LAKE/runs/demo/$DAY/
  pipeline report: $LAKE/runs/demo/$DAY/pipeline_report.html
COCO export: $DATA_DIR/mart/demo
Dashboard: http://$HOST:$PORT/  (demo model trained on synthetic phantoms: not for clinical use)
EOF
if [ "${DEMO_NO_SERVE:-0}" = 1 ]; then
  echo "DEMO_NO_SERVE=1: not serving the dashboard (start it with \`make dashboard\`)."
  exit 0
fi
echo "Serving the dashboard; Ctrl-C stops it."
exec "$CXR" dashboard --host "$HOST" --port "$PORT"
