# One Dockerfile, one target per service, on two stages of dependencies:
#   slim: gateway, bot, scraper (the crawl)   - no torch, transformers, onnxruntime
#   ml:   worker, trainer                     - the CPU build of torch and the inference engines
#   docker build --target gateway -t dvach-bot/gateway .    (targets: gateway worker bot scraper trainer)
# docker compose builds them all (docker-compose.yml); docs/deploy.md has the rest.
#
# - the base image pinned by digest (a tag moves; update both together, docs/deploy.md "Images");
# - dependencies only from the hashed locks in requirements/ (python -m tools.lock writes them
#   from pyproject.toml's extras): pip --require-hashes --no-deps installs exactly those files;
#   torch alone comes from the PyTorch CPU index (PyPI's is the CUDA build, several GB);
# - a non-root user (uid 10001), the code read-only under /app;
# - writable state only on volumes: /data (DATA_DIR: caches, converted models) and /models
#   (MODEL_STORE_DIR and the Hugging Face cache, shared by the trainer and the workers);
# - no secrets in any layer: tokens and passwords come from the environment at run time
#   (.env for compose, a Secret in Kubernetes); .dockerignore keeps .env out of the context.

# python:3.11-slim-bookworm (the multi-platform index digest).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    MODEL_STORE_DIR=/models/store \
    DEMO_MODEL_DIR=/data/demo-model \
    HF_HOME=/models/hf-cache \
    HF_HUB_DISABLE_PROGRESS_BARS=1 \
    LOG_FORMAT=json
# tini reaps zombies and forwards SIGTERM (Celery's warm shutdown) to the service.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
 && mkdir -p /app /data /models/store /models/hf-cache \
 && chown -R app:app /data /models
WORKDIR /app

# --- slim: gateway, bot, scraper ----------------------------------------------------------------
FROM base AS slim
# Dependencies first (this layer changes only with the lock).
COPY requirements/slim.txt /tmp/requirements/
RUN pip install --no-deps --require-hashes -r /tmp/requirements/slim.txt \
 && pip check \
 && rm -rf /tmp/requirements
# The code (runs from /app through PYTHONPATH; nothing of it is writable by the app user).
COPY alembic.ini ./
COPY migrations ./migrations
COPY shared ./shared
COPY services ./services
# The entry modules of this image import (some REDIS_URL must be set to build a Celery app;
# nothing connects, and the value stays in this RUN only).
RUN REDIS_URL=redis://build-check.invalid:6379/0 python -c "import shared.settings, shared.db, services.gateway.app, services.bot.main, services.scraper.cli, alembic.config" \
 && python -m compileall -q /app/shared /app/services /app/migrations
USER 10001:10001
ENTRYPOINT ["tini", "--"]

# --- ml: worker, trainer ------------------------------------------------------------------------
FROM base AS ml
COPY requirements/torch-cpu.txt requirements/ml.txt /tmp/requirements/
RUN pip install --no-deps --require-hashes --index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements/torch-cpu.txt \
 && pip install --no-deps --require-hashes -r /tmp/requirements/ml.txt \
 && pip check \
 && rm -rf /tmp/requirements
COPY alembic.ini ./
COPY migrations ./migrations
COPY shared ./shared
COPY services ./services
RUN REDIS_URL=redis://build-check.invalid:6379/0 python -c "import shared.settings, services.inference_worker.app, services.inference_worker.tasks, services.inference_worker.prepare, services.trainer.cli, services.scraper.cli, torch, transformers, onnxruntime, ctranslate2" \
 && python -m compileall -q /app/shared /app/services /app/migrations
USER 10001:10001
ENTRYPOINT ["tini", "--"]

FROM slim AS gateway
ENV GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8000
EXPOSE 8000
# Liveness of the process (the same endpoint the Kubernetes liveness probe uses).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT','8000'), timeout=2)"]
CMD ["python", "-m", "services.gateway"]

FROM ml AS worker
EXPOSE 9101
VOLUME ["/data", "/models"]
# Healthy once the model is loaded: /metrics (served by the worker's main process) shows
# dvach_worker_model_info{...} 1.0. The same check is the Kubernetes startup/readiness probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; t=urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('WORKER_METRICS_PORT','9101'), timeout=3).read().decode(); sys.exit(0 if any(l.startswith('dvach_worker_model_info{') and l.rstrip().endswith(' 1.0') for l in t.splitlines()) else 1)"]
# SIGTERM = Celery's warm shutdown: the job in hand finishes, nothing new is taken.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.inference_worker", "-n", "worker@%h"]

FROM slim AS bot
EXPOSE 9103 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('BOT_METRICS_PORT','9103'), timeout=3)"]
CMD ["python", "-m", "services.bot"]

FROM slim AS scraper
EXPOSE 9102
VOLUME ["/data"]
CMD ["python", "-m", "services.scraper", "run"]

# Also runs the scraper's `score` and `export` (they need the ML stack): same code, same settings.
FROM ml AS trainer
VOLUME ["/data", "/models"]
CMD ["python", "-m", "services.trainer", "--help"]
