"""Structured logging for every service: one JSON object per line, secrets never printed.

Secrets in settings are `SecretStr`; as a second line of defence the formatter masks anything
that looks like a Telegram bot token or is one of the service's secret settings, wherever it appears.

Our loggers log at LOG_LEVEL. Third-party libraries log at WARNING unless LOG_LEVEL=DEBUG: their
INFO lines are chatter (initdb's whole output, Alembic's plugins, Celery's and uvicorn's start-up
lines, a line per Telegram update), their warnings and errors are kept. The gateway's access log
is ours, without the health and metrics polls (GET /healthz, /readyz, /metrics).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from shared.settings import ServiceSettings

_TELEGRAM_TOKEN = re.compile(r"\b\d{5,12}:[A-Za-z0-9_-]{30,}\b")
_extra_secrets: list[str] = []

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged as a field.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    text = _TELEGRAM_TOKEN.sub("<redacted-token>", text)
    for secret in _extra_secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


# Loggers of this project (modules run with -m log as __main__); uvicorn.access is the gateway's request log.
OWN_LOGGERS = ("services", "shared", "stack", "progress", "bench", "tools", "__main__", "uvicorn.access")
POLLED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class DropPolls(logging.Filter):
    """Drops uvicorn's access-log lines of health and metrics polls (a line a second otherwise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access: (client, method, path with query, http version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            return args[2].split("?", 1)[0] not in POLLED_PATHS
        return True


def configure_logging(level: str = "INFO", fmt: str = "json", secrets: list[str] | None = None) -> None:
    """Route every logger (ours, Celery's, aiogram's, uvicorn's) through one formatter on stderr."""
    _extra_secrets[:] = [s for s in (secrets or []) if s]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        level_no = logging.INFO
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_no if level_no <= logging.DEBUG else max(level_no, logging.WARNING))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level_no)
    for noisy in ("httpx", "httpx2", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level_no > logging.DEBUG else level_no)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, DropPolls) for f in access.filters):
        access.addFilter(DropPolls())


def configure_from_settings(settings: ServiceSettings) -> None:
    """Logging as a service's settings say, with its secrets masked."""
    configure_logging(settings.log_level, settings.log_format, settings.secrets())
