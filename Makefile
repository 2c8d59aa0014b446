# cxr: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CXR := $(VENV)/bin/cxr
AIRFLOW_VENV ?= .venv-airflow
EXTRAS ?= app,spark,train,dev
export JUPYTER_CONFIG_DIR ?= $(CURDIR)/var/jupyter/config
export JUPYTER_DATA_DIR ?= $(CURDIR)/var/jupyter/data
export JUPYTER_RUNTIME_DIR ?= $(CURDIR)/var/jupyter/runtime
export IPYTHONDIR ?= $(CURDIR)/var/ipython
export JUPYTER_PATH := $(CURDIR)/$(VENV)/share/jupyter

.PHONY: help setup system-deps demo test test-unit lab dashboard services-up services-down airflow clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel
	$(PIP) install -q -e '.[$(EXTRAS)]'
	$(PY) -m ipykernel install --sys-prefix --name cxr --display-name "cxr (Python 3)" > /dev/null
	touch $@

system-deps:  ## Install the Debian packages the services and tests need (root only; skipped otherwise)
	@bash scripts/system_deps.sh

setup: $(VENV)/.installed  ## Create .venv with cxr and its extras, register the `cxr` Jupyter kernel

demo: setup  ## README command 1: run the whole pipeline on the embedded defaults and serve the dashboard
	bash scripts/demo.sh

test: system-deps setup  ## README command 2: install what is missing, start the services, run every test, stop them
	$(CXR) services up
	set -o pipefail; $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; $(CXR) services down; exit $$rc

test-unit: setup  ## Only the unit tests (no servers)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

lab: setup  ## JupyterLab on notebooks/ with the `cxr` kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

dashboard: setup  ## Serve the Voila dashboard on 127.0.0.1:8866
	$(CXR) dashboard

services-up: setup  ## Start MariaDB, the S3 endpoint, SecantusDB and sshd on loopback
	$(CXR) services up

services-down:  ## Stop the local services
	$(CXR) services down

clean:  ## Remove local state (var/) but keep the environments
	rm -rf var/
