# cxr: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CXR := $(VENV)/bin/cxr
AIRFLOW_VENV ?= .venv-airflow
# Extras of pyproject.toml per target; one .venv holds them all (scripts/venv.sh only adds extras).
DEMO_EXTRAS := app,spark
TRAIN_EXTRAS := app,spark,train
TEST_EXTRAS := app,spark,train,dev
EXTRAS ?= $(DEMO_EXTRAS)
export JUPYTER_CONFIG_DIR ?= $(CURDIR)/var/jupyter/config
export JUPYTER_DATA_DIR ?= $(CURDIR)/var/jupyter/data
export JUPYTER_RUNTIME_DIR ?= $(CURDIR)/var/jupyter/runtime
export IPYTHONDIR ?= $(CURDIR)/var/ipython
export JUPYTER_PATH := $(CURDIR)/$(VENV)/share/jupyter

.PHONY: help setup train-env test-env system-deps demo test test-unit lab dashboard services-up services-down airflow airflow-venv clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

export VENV PYTHON

setup:  ## Create .venv with cxr, the app and spark extras (no torch) and the `cxr` Jupyter kernel
	@bash scripts/venv.sh $(EXTRAS)

train-env:  ## Add the training extras to .venv (torch, torchvision, pycocotools: about 5.5 GB)
	@bash scripts/venv.sh $(TRAIN_EXTRAS)

test-env:  ## Add the training and test extras to .venv (what `make test` uses)
	@bash scripts/venv.sh $(TEST_EXTRAS)

system-deps:  ## Install the Debian packages `make test` needs (root only; says what is missing otherwise)
	@bash scripts/system_deps.sh test > /dev/null

demo:  ## README command 1: install what the demo needs, run the whole pipeline on the embedded defaults, serve the dashboard
	@bash scripts/demo.sh

# Servers already up before `make test` (a developer's `cxr services up`) stay up; the ones it
# starts are stopped again whatever pytest's outcome (pytest exit 5, no tests collected, fails).
test: system-deps test-env airflow-venv  ## README command 2: install what is missing, start the services, run every test, stop them
	@if $(CXR) services status --check > /dev/null 2>&1; then keep=1; else keep=0; fi; \
	stop() { [ $$keep = 1 ] || $(CXR) services down; }; \
	$(CXR) services up || { rc=$$?; stop; exit $$rc; }; \
	rc=0; $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) || rc=$$?; \
	stop; exit $$rc

test-unit: test-env  ## Only the unit tests (no servers)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

lab: setup  ## JupyterLab on notebooks/ with the `cxr` kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

dashboard: setup  ## Serve the Voila dashboard on 127.0.0.1:8866
	$(CXR) dashboard

services-up: test-env  ## Start MariaDB, the S3 endpoint, SecantusDB and sshd on loopback
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
