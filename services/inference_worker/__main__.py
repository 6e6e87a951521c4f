"""`python -m services.inference_worker`: a Celery worker on both queues, interactive first.

One prefork child per process by default (one model copy); scale with more processes or pods.
Extra arguments pass through to `celery worker` (e.g. `--concurrency 2 -n w2@%h`).
"""

from __future__ import annotations

import os
import sys

from shared.celery_app import QUEUES


def main() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from services.inference_worker.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir()  # before prometheus_client is imported by anything else
    from services.inference_worker.app import app

    argv = ["worker", "--pool", "prefork", "--concurrency", os.environ.get("WORKER_CONCURRENCY", "1"),
            "--queues", ",".join(QUEUES), "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    app.worker_main(argv + sys.argv[1:])


if __name__ == "__main__":
    main()
