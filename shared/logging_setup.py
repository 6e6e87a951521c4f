"""Structured logging for every service: one JSON object per line, secrets never printed.

Secrets in settings are `SecretStr`; as a second line of defence the formatter masks anything
that looks like a Telegram bot token or the configured admin token, wherever it appears.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

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


def configure_logging(level: str = "INFO", fmt: str = "json", secrets: list[str] | None = None) -> None:
    """Route every logger (ours, Celery's, aiogram's, uvicorn's) through one formatter on stderr."""
    _extra_secrets[:] = [s for s in (secrets or []) if s]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpx2", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_from_settings(settings) -> None:  # noqa: ANN001 - avoids importing Settings here
    secrets = [s.get_secret_value() for s in (settings.telegram_bot_token, settings.admin_token) if s]
    configure_logging(settings.log_level, settings.log_format, secrets)
