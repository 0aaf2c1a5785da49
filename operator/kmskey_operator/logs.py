"""Logging set-up: text or JSON lines, with a last-line filter that blanks credential values."""

from __future__ import annotations

import json
import logging
import os
import re

import kopf

from kmskey_operator.settings import Settings

_SECRET_VARIABLES = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")
_CONTEXT_FIELDS = ("resource", "key_id", "action")


class RedactSecrets(logging.Filter):
    """Replace any known secret value that reaches a log record; a belt to the design's braces."""

    def __init__(self) -> None:
        super().__init__()
        secrets = [os.environ[v] for v in _SECRET_VARIABLES if len(os.environ.get(v, "")) >= 8]
        self._pattern = re.compile("|".join(re.escape(s) for s in secrets)) if secrets else None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is not None:
            message = record.getMessage()
            if self._pattern.search(message):
                record.msg = self._pattern.sub("[REDACTED]", message)
                record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{f}={getattr(record, f)}" for f in _CONTEXT_FIELDS if getattr(record, f, None))
        return f"{line} {context}" if context else line


def configure(settings: Settings) -> None:
    kopf.configure(verbose=settings.log_level == "DEBUG")
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if settings.log_format == "json"
        else TextFormatter("[%(asctime)s] %(name)-24.24s [%(levelname)-7s] %(message)s")
    )
    handler.addFilter(RedactSecrets())
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
