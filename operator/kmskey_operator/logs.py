"""Logging set-up: text or JSON lines, with a last-line filter that blanks credential values."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Mapping

import kopf

from kmskey_operator import redact
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
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in [env[v] for v in _SECRET_VARIABLES if len(env.get(v, "")) >= 8]:
            self.add(secret)
        for secret in redact.follow(self.add):
            self.add(secret)

    def add(self, secret: str) -> None:
        """Blank this value (and its base64 form) too: credentials read at run time, e.g. from a Secret."""
        if len(secret) < redact.MIN_LENGTH:
            return
        forms = {secret, base64.b64encode(secret.encode()).decode()}
        if forms <= self._forms:
            return
        self._forms |= forms
        longest_first = sorted(self._forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in longest_first))

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
        entry.update(context(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in context(record).items())
        return f"{line} {fields}" if fields else line


def context(record: logging.LogRecord) -> dict[str, str]:
    """The record's resource, key ID and action; kopf's per-object lines name their object in `k8s_ref`."""
    found = {f: str(getattr(record, f)) for f in _CONTEXT_FIELDS if getattr(record, f, None)}
    ref = getattr(record, "k8s_ref", None)
    if "resource" not in found and isinstance(ref, dict) and ref.get("name"):
        found["resource"] = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else str(ref["name"])
    return dict(sorted(found.items(), key=lambda item: _CONTEXT_FIELDS.index(item[0])))


class KopfLevels(logging.Filter):
    """Re-level kopf's and aiohttp's routine lines so that INFO reads as what changed, not what ran.

    - every admission review's "... succeeded.", and every watch event's (the kopf layer's `watch`
      handler, handlers.py, runs for each event of each KmsKey), and aiohttp's access lines (probes,
      admission): DEBUG;
    - a handler that "failed temporarily" is retried; the cause is already a Warning Event, a condition
      and a metric: WARNING, not kopf's ERROR;
    - the webhook "failed permanently" is how kopf reports every admission refusal (the handler raises
      kopf.AdmissionError): a user's invalid edit, answered as designed and counted in
      kmskey_admission_requests_total{result="denied"}: INFO, not kopf's ERROR.
    A re-levelled line below `threshold` is dropped, as the handler's own level would have.
    """

    _ROUTINE = re.compile(r"^((Timer|Webhook|Daemon) '[^']*'|Handler 'watch') succeeded\.$")
    _REFUSAL = re.compile(r"^Webhook '[^']*' failed permanently: ")

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        level = record.levelno
        if record.name == "aiohttp.access":
            level = logging.DEBUG
        elif record.name == "kopf.objects":
            message = str(record.msg)
            if self._ROUTINE.match(message):
                level = logging.DEBUG
            elif record.levelno == logging.ERROR and " failed temporarily" in message:
                level = logging.WARNING
            elif record.levelno == logging.ERROR and self._REFUSAL.match(message):
                level = logging.INFO
        if level == record.levelno:
            return True
        if level < self.threshold:
            return False
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return True


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
    handler.addFilter(KopfLevels(logging.getLevelName(settings.log_level)))
    handler.addFilter(redactor)
    # The level is also the handler's: a logger that must see more (kopf's peering lines, which the
    # active-replica metric follows) does not print more.
    handler.setLevel(settings.log_level)
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
