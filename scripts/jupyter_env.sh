# Sourced by scripts/demo.sh and scripts/airflow.sh (with ROOT set): Jupyter's and IPython's state
# under var/ rather than the home directory, and JUPYTER_PATH at the `cxr` kernel registered in
# .venv (papermill and Voila find it there). Values already in the environment win.
export JUPYTER_PATH="${JUPYTER_PATH:-$ROOT/${VENV:-.venv}/share/jupyter}"
export JUPYTER_CONFIG_DIR="${JUPYTER_CONFIG_DIR:-$ROOT/var/jupyter/config}"
export JUPYTER_DATA_DIR="${JUPYTER_DATA_DIR:-$ROOT/var/jupyter/data}"
export JUPYTER_RUNTIME_DIR="${JUPYTER_RUNTIME_DIR:-$ROOT/var/jupyter/runtime}"
export IPYTHONDIR="${IPYTHONDIR:-$ROOT/var/ipython}"
