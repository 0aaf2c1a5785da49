"""Logging set-up: text or JSON lines, with a last-line filter that blanks credential values."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Mapping

import kopf

from kmskey_operator.settings import Settings

_SECRET_VARIABLES = ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")
_CONTEXT_FIELDS = ("resource", "key_id", "action")


class RedactSecrets(logging.Filter):
    """Replace any known secret value that reaches a log line; a belt to the design's braces.

    It is applied to the finished line (message, context fields and traceback), and also blanks the
    secrets' base64 forms, as found in a Kubernetes Secret or an Authorization header.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        env = os.environ if env is None else env
        secrets = [env[v] for v in _SECRET_VARIABLES if len(env.get(v, "")) >= 8]
        forms = {form for s in secrets for form in (s, base64.b64encode(s.encode()).decode())}
        longest_first = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in longest_first)) if forms else None

    def redact(self, text: str) -> str:
        return self._pattern.sub("[REDACTED]", text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is not None:
            message = record.getMessage()
            if self._pattern.search(message):
                record.msg = self._pattern.sub("[REDACTED]", message)
                record.args = None
        return True


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose every finished line passes through `RedactSecrets.redact`."""

    def __init__(self, redactor: RedactSecrets) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


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
    redactor = RedactSecrets()
    handler = _RedactingHandler(redactor)
    handler.setFormatter(
        JsonFormatter()
        if settings.log_format == "json"
        else TextFormatter("[%(asctime)s] %(name)-24.24s [%(levelname)-7s] %(message)s")
    )
    handler.addFilter(redactor)
    # The level is also the handler's: a logger that must see more (kopf's peering lines, which the
    # active-replica metric follows) does not print more.
    handler.setLevel(settings.log_level)
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
