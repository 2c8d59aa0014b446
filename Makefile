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

.PHONY: help setup system-deps demo test test-unit lab dashboard services-up services-down airflow airflow-venv clean

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

# Servers already up before `make test` (a developer's `cxr services up`) stay up; the ones it
# starts are stopped again whatever pytest's outcome (pytest exit 5, no tests collected, fails).
test: system-deps setup airflow-venv  ## README command 2: install what is missing, start the services, run every test, stop them
	@if $(CXR) services status --check > /dev/null 2>&1; then keep=1; else keep=0; fi; \
	stop() { [ $$keep = 1 ] || $(CXR) services down; }; \
	$(CXR) services up || { rc=$$?; stop; exit $$rc; }; \
	rc=0; $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) || rc=$$?; \
	stop; exit $$rc

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

$(AIRFLOW_VENV)/.installed: env/airflow-requirements.txt env/airflow-constraints.txt
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q -U pip wheel
	$(AIRFLOW_VENV)/bin/pip install -q -r env/airflow-requirements.txt -c env/airflow-constraints.txt
	touch $@

airflow-venv: $(AIRFLOW_VENV)/.installed  ## Create .venv-airflow (Airflow 3 + papermill, SSH, Amazon providers; ~850 MB)

airflow: setup airflow-venv  ## Airflow standalone on 127.0.0.1:8080 running the cxr DAGs (state in var/airflow)
	AIRFLOW_VENV=$(AIRFLOW_VENV) bash scripts/airflow.sh standalone

clean:  ## Remove local state (var/) but keep the environments
	rm -rf var/
