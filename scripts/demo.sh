#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded defaults -- SQLite, a lake directory and an
# in-process warehouse under var/ -- with no cloud account and no torch.
#
#   - the Debian packages the demo needs (scripts/system_deps.sh demo): installed as root;
#     without root, one line says what to install and how, and the demo exits 2 before anything long
#   - .venv with the app and spark extras only (scripts/venv.sh): ONNX Runtime serves the model
#   - a model in the registry (the shipped ONNX one; trained once, with the train extras, if missing)
#   - synthetic phantom X-rays, PNG and DICOM (fake patient tags, removed at ingest)
#   - `cxr db upgrade`, a demo user (role admin) whose password is printed once, and `cxr ingest`
#   - backup, warehouse, mart and the pipeline report, each a papermill run of its notebook
#     with its record in the lake: runs/demo/<date>/<notebook>.ipynb + .html
#   - the dashboard (Voila): its URL is printed once it answers
#
# The terminal gets one line per step with its time; everything the tools print goes to
# $CXR_DATA_DIR/demo.log (var/demo.log). A failing step prints its error line and exits non-zero.
# DEMO_NO_SERVE=1 stops before serving (the smoke test). DEMO_PNG / DEMO_DICOM set the numbers
# of phantoms. CXR_* settings apply as everywhere (e.g. CXR_DATA_DIR for another folder).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export VENV="${VENV:-.venv}"
CXR="$VENV/bin/cxr"
DATA_DIR="${CXR_DATA_DIR:-var}"
export CXR_DATA_DIR="$DATA_DIR"
# shellcheck source=scripts/jupyter_env.sh
source "$ROOT/scripts/jupyter_env.sh"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"  # local[2] only: no lookup of the host's address
N_PNG="${DEMO_PNG:-16}"
N_DICOM="${DEMO_DICOM:-4}"
for n in "$N_PNG" "$N_DICOM"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "demo: error: DEMO_PNG and DEMO_DICOM must be whole numbers, got '$n'" >&2; exit 2; }
done
DAY="$(date -u +%Y-%m-%d)"
TOMORROW="$(date -u -d tomorrow +%Y-%m-%d)"
HOST="${CXR_DASHBOARD_HOST:-127.0.0.1}"
PORT="${CXR_DASHBOARD_PORT:-8866}"

START=$EPOCHREALTIME
LOG="$DATA_DIR/demo.log"

elapsed() {  # seconds since $1 (an $EPOCHREALTIME), one decimal
  local a="${1//[.,]/}" b="${EPOCHREALTIME//[.,]/}"
  local tenths=$(( (10#$b - 10#$a) / 100000 ))
  printf '%d.%d' $(( tenths / 10 )) $(( tenths % 10 ))
}

# step LABEL CMD...: run CMD with its output in the log; one terminal line with the outcome and time.
step() {
  local label="$1"; shift
  local t0=$EPOCHREALTIME offset rc=0
  offset=$(stat -c %s "$LOG")
  printf '%-58s ' "$label"
  printf '\n== %s: %s\n' "$label" "$*" >> "$LOG"
  "$@" >> "$LOG" 2>&1 < /dev/null || rc=$?
  if [ $rc -eq 0 ]; then
    printf 'ok %6s s\n' "$(elapsed "$t0")"
    return 0
  fi
  printf 'FAILED after %s s\n' "$(elapsed "$t0")"
  fail_line "$offset"
  echo "demo: the full output is in $LOG" >&2
  exit $rc
}

# The step's own error line: cxr's, apt's or pip's message if there is one, else its last line.
fail_line() {
  local out
  out="$(tail -c +"$(( $1 + 1 ))" "$LOG")"
  local line
  line="$(grep -E '^(cxr: error:|[a-z-]+: error:|ERROR:|E: )' <<< "$out" | tail -n 1 || true)"
  [ -n "$line" ] || line="$(grep -v '^[[:space:]]*$' <<< "$out" | tail -n 1 || true)"
  echo "${line:-demo: the step failed without a message}" >&2
}

# Debian packages first: without root this is the one line the user sees (exit 2), before any long step.
missing="$(bash scripts/system_deps.sh demo --print)"
if [ -n "$missing" ] && [ "$(id -u)" != 0 ]; then
  bash scripts/system_deps.sh demo  # prints the one line (what to install and how) and exits 2
  exit 2
fi
# IPython warns "not a writable location" when its folder's parent is missing: make them all now.
mkdir -p "$DATA_DIR" "$JUPYTER_CONFIG_DIR" "$JUPYTER_DATA_DIR" "$JUPYTER_RUNTIME_DIR" "$IPYTHONDIR"
: > "$LOG"
echo "cxr demo: one line per step; the tools' own output goes to $LOG"
if [ -n "$missing" ]; then
  step "Debian packages: installing $(echo $missing)" bash scripts/system_deps.sh demo
else
  step "Debian packages: all present" true
fi

MODELS_DIR="${CXR_MODELS_DIR:-models}"
if compgen -G "$MODELS_DIR/${CXR_MODEL_NAME:-cxr-demo}/*/model.onnx" > /dev/null; then
  step "Python environment $VENV (extras app, spark)" bash scripts/venv.sh app,spark
  step "model: ONNX in $MODELS_DIR (synthetic phantoms only)" true
else  # no shipped model: training needs torch, so this .venv gets the training extras (~5.5 GB)
  step "Python environment $VENV (extras app, spark, train)" bash scripts/venv.sh app,spark,train
  step "model: training the demo model once (about 10 min)" "$CXR" model train --recipe demo
fi

PHANTOMS="$DATA_DIR/demo/phantoms"
step "phantoms: $N_PNG PNG + $N_DICOM DICOM (synthetic, fake patient tags)" \
  bash -c '"$1" phantoms "$2" "$3/png" --seed 1000 && "$1" phantoms "$4" "$3/dicom" --dicom --seed 2000' \
  _ "$CXR" "$N_PNG" "$PHANTOMS" "$N_DICOM"
step "database: migrations" "$CXR" db upgrade
# The demo user: a random password, piped to `cxr users add` (never an argument, never in the log),
# printed once at the end. A later `make demo` keeps the user and its password.
DEMO_USER="${DEMO_USER:-demo}"
DEMO_PASSWORD=""
if "$CXR" users list 2>> "$LOG" | awk 'NR > 1 {print $1}' | grep -qx "$DEMO_USER"; then
  step "users: $DEMO_USER exists (its password was shown when it was made)" true
else
  DEMO_PASSWORD="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))')"
  export DEMO_PW_ONCE="$DEMO_PASSWORD"  # in the environment, so the step's logged command line lacks it
  step "users: $DEMO_USER (role admin) for the dashboard" \
    bash -c 'printf "%s\n" "$DEMO_PW_ONCE" | "$1" users add "$2" --role admin' _ "$CXR" "$DEMO_USER"
  unset DEMO_PW_ONCE
fi
step "ingest: de-identify, detect, store" \
  "$CXR" ingest "$PHANTOMS/png/images" "$PHANTOMS/dicom/images" --run-id "demo-$DAY"

run_nb() {  # LABEL NAME [-p KEY VALUE]...
  local label="$1" name="$2"; shift 2
  step "$label" "$CXR" notebook run "$name" --dag-id demo --logical-date "$DAY" --task "$name" -q "$@"
}
# Keep the DB rows (purge false) so the dashboard still shows their history.
run_nb "backup: DB history to parquet (Spark)" backup -p before "$TOMORROW" -p purge false
run_nb "warehouse: one document per image" warehouse_etl
run_nb "mart: COCO export" mart_export -p out_dir "$DATA_DIR/mart/demo"
run_nb "pipeline report" pipeline_report -p mart_dir "$DATA_DIR/mart"

LAKE="$("$VENV/bin/python" -c 'from cxr.config import get_settings; print(get_settings().resolved_lake_url)' 2>> "$LOG")"
cat <<EOF

Pipeline done in $(elapsed "$START") s.
Reports (executed notebooks, with HTML copies):
  $LAKE/runs/demo/$DAY/
  pipeline report: $LAKE/runs/demo/$DAY/pipeline_report.html
COCO export: $DATA_DIR/mart/demo
Log of every step: $LOG
EOF
if [ -n "$DEMO_PASSWORD" ]; then
  echo "Dashboard sign-in: user $DEMO_USER, password $DEMO_PASSWORD (shown this once; change it with"
  echo "  \`$CXR users passwd $DEMO_USER\`; add people with \`$CXR users add NAME --role uploader|radiologist|admin\`)"
else
  echo "Dashboard sign-in: user $DEMO_USER (password shown when it was made; reset: \`$CXR users passwd $DEMO_USER\`)"
fi
if [ "${DEMO_NO_SERVE:-0}" = 1 ]; then
  echo "Dashboard: http://$HOST:$PORT/  (demo model trained on synthetic phantoms: not for clinical use)"
  echo "DEMO_NO_SERVE=1: not serving the dashboard (start it with \`make dashboard\`)."
  exit 0
fi

# Serve: the URL is printed once the dashboard answers; Voila's own log goes to the log file.
printf '\n== dashboard: %s dashboard --host %s --port %s\n' "$CXR" "$HOST" "$PORT" >> "$LOG"
# Its own process group (setsid), so that stopping it also stops Voila and the kernels under it.
setsid "$CXR" dashboard --host "$HOST" --port "$PORT" >> "$LOG" 2>&1 < /dev/null &
pid=$!
stop_dashboard() { kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; }
trap stop_dashboard INT TERM
ready=0
for _ in $(seq 1 240); do
  kill -0 "$pid" 2>/dev/null || break
  if "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
       "http://$HOST:$PORT/login" 2>/dev/null; then ready=1; break; fi  # the sign-in page: no kernel
  sleep 0.5
done
if [ $ready = 0 ]; then
  stop_dashboard
  wait "$pid" 2>/dev/null || true
  fail_line "$(grep -b -F '== dashboard:' "$LOG" | tail -n 1 | cut -d: -f1)"
  echo "demo: error: the dashboard did not start on $HOST:$PORT; the full output is in $LOG" >&2
  exit 1
fi
echo "Dashboard: http://$HOST:$PORT/  (demo model trained on synthetic phantoms: not for clinical use)"
echo "Serving the dashboard ($(elapsed "$START") s after the start of make demo); Ctrl-C stops it."
rc=0
wait "$pid" || rc=$?
if [ $rc -gt 128 ]; then  # interrupted: let the dashboard (Voila and its kernels) finish stopping
  wait "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.25; done
  echo "Dashboard stopped."
  exit 0
fi
[ $rc -eq 0 ] || { echo "demo: the dashboard stopped with code $rc; see $LOG" >&2; exit $rc; }
