# The dashboard image: cxr with the `app` extra only (Voila, ipywidgets, papermill), the notebooks
# and the shipped ONNX model. No torch, no Spark, no Airflow: serving runs on onnxruntime.
#   docker build -t cxr-dashboard .
#   docker run --rm -p 127.0.0.1:8866:8866 -v cxr-data:/data cxr-dashboard
# Configure the stores with CXR_* variables (docker run -e / --env-file; never bake secrets in).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first (a layer that changes only with pyproject.toml), then the code.
COPY pyproject.toml README.md ./
COPY lib ./lib
RUN pip install --no-compile '.[app]' \
 && python -m ipykernel install --sys-prefix --name cxr --display-name "cxr (Python 3)" \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
COPY notebooks ./notebooks
COPY models ./models

# A non-root user owns only the data volume; the code stays read-only to it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin cxr \
 && mkdir -p /data && chown cxr:cxr /data
USER cxr

# Embedded defaults under /data (SQLite, lake directory, in-process warehouse) unless CXR_* say otherwise.
ENV CXR_DATA_DIR=/data \
    CXR_MODELS_DIR=/app/models \
    CXR_DASHBOARD_HOST=0.0.0.0 \
    CXR_DASHBOARD_PORT=8866 \
    JUPYTER_RUNTIME_DIR=/data/jupyter/runtime \
    JUPYTER_CONFIG_DIR=/data/jupyter/config \
    JUPYTER_DATA_DIR=/data/jupyter/data \
    IPYTHONDIR=/data/jupyter/ipython
VOLUME ["/data"]
EXPOSE 8866

# The sign-in page answers without a user and without starting a kernel (everything else needs a sign-in).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/login' % os.environ.get('CXR_DASHBOARD_PORT', '8866'), timeout=4)"

# `cxr db upgrade` is idempotent: it creates the tables on first start (embedded SQLite) and
# is a no-op after. Then `cxr dashboard` runs Voila with the dashboard's own settings
# (kernel culling, websocket size for DICOM uploads, no tracebacks shown). It binds 0.0.0.0 inside
# the container, and every path needs a sign-in: add users first (docker exec ... cxr users add
# NAME --role ..., the password on stdin), or sign people in through an SSO proxy
# (CXR_AUTH_PROVIDER=proxy, CXR_TRUSTED_PROXIES=<the proxy's address>). Serve it over TLS only.
CMD ["sh", "-c", "cxr db upgrade && exec cxr dashboard --notebook /app/notebooks/dashboard.ipynb"]
