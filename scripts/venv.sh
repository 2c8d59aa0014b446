#!/usr/bin/env bash
# The project's virtualenv with cxr (editable) and the extras asked for, plus the `cxr` Jupyter
# kernel. Every make target that needs Python goes through here:
#   bash scripts/venv.sh app,spark                 # make setup / make demo: no torch
#   bash scripts/venv.sh app,spark,train           # make train-env: + torch, torchvision, onnxscript
#   bash scripts/venv.sh app,spark,train,dev       # make test: + pytest, Playwright, moto
# One .venv serves all of them: extras are only ever added. The stamp $VENV/.installed records
# the extras installed and the hash of pyproject.toml they were installed from, so a demo-only
# .venv gets the test extras on the first `make test`, and nothing is reinstalled while both
# still match. VENV (default .venv) and PYTHON (default python3) come from the environment.
# pip's output goes to stdout; scripts/demo.sh sends it to its log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"
KNOWN="app spark train dev"

[ $# -eq 1 ] || { echo "venv: usage: scripts/venv.sh EXTRA[,EXTRA...] (extras: ${KNOWN// /, })" >&2; exit 2; }
want=()
for extra in ${1//,/ }; do
  [[ " $KNOWN " == *" $extra "* ]] || { echo "venv: error: unknown extra '$extra' (extras: ${KNOWN// /, })" >&2; exit 2; }
  want+=("$extra")
done

sorted_csv() { printf '%s\n' "$@" | sed '/^$/d' | sort -u | paste -sd, -; }
hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have=""
stamp_hash=""
if [ -f "$STAMP" ]; then
  have="$(sed -n 's/^extras=//p' "$STAMP")"
  stamp_hash="$(sed -n 's/^pyproject=//p' "$STAMP")"
fi
extras="$(sorted_csv "${want[@]}" ${have//,/ })"
if [ -x "$VENV/bin/python" ] && [ "$stamp_hash" = "$hash" ] && [ "$extras" = "$have" ]; then
  echo "venv: $VENV is up to date (extras: $have)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "venv: error: $PYTHON cannot create a virtualenv (Debian: apt-get install python3-venv)" >&2
    exit 2
  fi
  echo "venv: creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"  # a half-done install must not look complete
echo "venv: installing cxr[$extras] into $VENV"
"$VENV/bin/python" -m pip install -q -U pip wheel
"$VENV/bin/python" -m pip install -q -e ".[$extras]"
if [[ ",$extras," == *",app,"* ]]; then
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name cxr --display-name "cxr (Python 3)" >/dev/null
fi
printf 'extras=%s\npyproject=%s\n' "$extras" "$hash" > "$STAMP"
echo "venv: $VENV ready (extras: $extras)"
