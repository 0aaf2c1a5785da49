"""The state file: keys survive a restart, and the file is never half-written.

Every change rewrites the whole file through a temporary file in the same directory, flushed and fsync'ed,
then renamed over the old one with os.replace, which is atomic on POSIX: a reader (or a crash) sees the old
state or the new one, never a mix. Keys are kept per account (version 2); a version 1 file (one account) is
read as the default account's keys.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .model import Key

FORMAT_VERSION = 2


class StateFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self, default_account_id: str) -> dict[str, list[Key]]:
        """The saved keys of each account, or none if the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        document: dict[str, Any] = json.loads(text)
        version = document.get("version")
        if version == 1:
            return {default_account_id: [Key.from_dict(item) for item in document["keys"]]}
        if version != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unknown state file version {version!r}")
        return {
            str(account): [Key.from_dict(item) for item in keys]
            for account, keys in document["accounts"].items()
        }

    def save(self, accounts: dict[str, list[dict[str, Any]]]) -> None:
        payload = json.dumps({"version": FORMAT_VERSION, "accounts": accounts}, separators=(",", ":"))
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
