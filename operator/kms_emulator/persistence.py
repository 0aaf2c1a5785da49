"""The state file: keys survive a restart, and the file is never half-written.

Every change rewrites the whole file through a temporary file in the same directory, flushed and fsync'ed,
then renamed over the old one with os.replace, which is atomic on POSIX: a reader (or a crash) sees the old
state or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .model import Key

FORMAT_VERSION = 1


class StateFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[Key]:
        """The saved keys, or none if the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        document: dict[str, Any] = json.loads(text)
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unknown state file version {document.get('version')!r}")
        return [Key.from_dict(item) for item in document["keys"]]

    def save(self, keys: list[dict[str, Any]]) -> None:
        payload = json.dumps({"version": FORMAT_VERSION, "keys": keys}, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
