#!/usr/bin/env bash
# Stage 5 on premises: batch-load the data mart (a COCO dataset) from the warehouse in the
# cloud, through an SSH tunnel to the bastion, as the seed's batch-load script did.
#
#   scripts/batch_load_mart.sh OUT_DIR [-p NAME VALUE ...]
#
#   1. reads the settings (CXR_* environment, .env, or the file named by CXR_ENV_FILE) and
#      stops with `cxr: error: ...` when they are wrong;
#   2. when CXR_SSH_HOST is set, holds the tunnel to the warehouse open for the whole batch
#      (`cxr mart-tunnel`, cxr's one tunnel owner, cxr.stores.warehouse.warehouse_tunnel: the host
#      key is checked against CXR_SSH_KNOWN_HOSTS) and points CXR_WAREHOUSE_URL at its local
#      end, with directConnection=true;
#   3. runs notebooks/mart_export.ipynb with papermill (`cxr notebook run`, which keeps the
#      executed notebook in the lake under runs/batch_load_mart/), told with `-p via_tunnel false`
#      that the URL already goes through the tunnel; -p NAME VALUE pairs are the notebook's
#      parameters (since, until, min_score, classes, model_version, latest, ...);
#   4. closes the tunnel on exit, whether the export worked, failed or was interrupted.
#
# Environment: CXR_PYTHON, the Python with cxr installed (default: .venv/bin/python of this checkout).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${CXR_PYTHON:-$ROOT/.venv/bin/python}"
TUNNEL_WAIT_S="${CXR_TUNNEL_WAIT_S:-60}"

if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: $0 OUT_DIR [-p NAME VALUE ...]" >&2
    exit 2
fi
OUT_DIR="$(realpath -m -- "$1")"
shift

WORK="$(mktemp -d)"
TUNNEL_PID=""
NOTEBOOK_PID=""
TUNNEL_ARGS=()
cleanup() {
    local rc=$?
    if [[ -n "$NOTEBOOK_PID" ]] && kill -0 "$NOTEBOOK_PID" 2>/dev/null; then
        kill -TERM "$NOTEBOOK_PID" 2>/dev/null || true
        wait "$NOTEBOOK_PID" 2>/dev/null || true
    fi
    if [[ -n "$TUNNEL_PID" ]]; then
        kill -TERM "$TUNNEL_PID" 2>/dev/null || true
        wait "$TUNNEL_PID" 2>/dev/null || true
        echo "batch_load_mart: tunnel closed" >&2
    fi
    rm -rf -- "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. settings: validated here, before anything is opened.
SSH_HOST="$("$PY" -c 'from cxr.cli import fail
from cxr.config import load_settings
from cxr.errors import CxrError
try:
    print(load_settings().ssh_host or "")
except CxrError as exc:
    fail(exc)')"

# 2. the tunnel, when there is a bastion.
if [[ -n "$SSH_HOST" ]]; then
    "$PY" -m cxr mart-tunnel --url-file "$WORK/warehouse-url" &
    TUNNEL_PID=$!
    for ((i = 0; i < TUNNEL_WAIT_S * 10; i++)); do
        [[ -s "$WORK/warehouse-url" ]] && break
        if ! kill -0 "$TUNNEL_PID" 2>/dev/null; then
            wait "$TUNNEL_PID" || rc=$?
            TUNNEL_PID=""
            echo "batch_load_mart: the SSH tunnel did not open" >&2
            exit "${rc:-1}"
        fi
        sleep 0.1
    done
    if [[ ! -s "$WORK/warehouse-url" ]]; then
        echo "batch_load_mart: the SSH tunnel did not open within ${TUNNEL_WAIT_S}s" >&2
        exit 1
    fi
    CXR_WAREHOUSE_URL="$(cat "$WORK/warehouse-url")"
    export CXR_WAREHOUSE_URL
    TUNNEL_ARGS=(-p via_tunnel false)  # the URL above already goes through this tunnel
fi

# 3. the export notebook (in the background, so that a signal reaches the traps at once).
"$PY" -m cxr notebook run mart_export --dag-id batch_load_mart --notebooks-dir "$ROOT/notebooks" \
    -p out_dir "$OUT_DIR" "${TUNNEL_ARGS[@]}" "$@" &
NOTEBOOK_PID=$!
wait "$NOTEBOOK_PID"
NOTEBOOK_PID=""
echo "batch_load_mart: COCO dataset in $OUT_DIR" >&2
