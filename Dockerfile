# One image, one target per service. CPU build of torch, non-root, no secrets in layers.
#   docker build --target worker -t dvach-bot/worker .
FROM python:3.11-slim-bookworm AS base
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/hf-cache DATA_DIR=/data LOG_FORMAT=json
RUN apt-get update && apt-get install -y --no-install-recommends curl tini && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --home /app app \
 && mkdir -p /app /data /models && chown app:app /data /models
WORKDIR /app
# The CPU wheel of torch (the default index would bring CUDA, several GB).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install . && python -c "import shared.settings, services.gateway.app"
USER app
ENTRYPOINT ["tini", "--"]

FROM base AS gateway
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENV GATEWAY_HOST=0.0.0.0
CMD ["python", "-m", "services.gateway"]

FROM base AS worker
VOLUME ["/models"]
HEALTHCHECK --interval=30s --timeout=15s --start-period=300s --retries=3 \
  CMD celery -A services.inference_worker.app inspect ping -d "worker@$HOSTNAME" --timeout 10 || exit 1
CMD ["python", "-m", "services.inference_worker", "-n", "worker@%h"]

FROM base AS bot
CMD ["python", "-m", "services.bot"]

FROM base AS scraper
CMD ["python", "-m", "services.scraper", "run"]

FROM base AS trainer
VOLUME ["/models"]
CMD ["python", "-m", "services.trainer", "--help"]
