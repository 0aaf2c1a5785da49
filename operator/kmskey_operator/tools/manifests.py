"""Read KmsKey manifests the way kubectl does: files, directories, `-` for stdin, multi-document YAML.

Documents of other kinds are skipped with a note (a directory of manifests usually holds more than
KmsKeys); `kind: List` documents, as `kubectl get -o yaml` prints them, are opened up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from kmskey_operator import names

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """A path cannot be read or does not hold YAML; the message names it."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """One KmsKey document; `source` is `path` or `path#N` (the Nth document of a multi-document file)."""

    source: str
    body: Mapping[str, Any]

    @property
    def namespace(self) -> str | None:
        return _metadata(self.body).get("namespace") or None

    @property
    def name(self) -> str | None:
        return _metadata(self.body).get("name") or None


def is_kmskey(document: Mapping[str, Any]) -> bool:
    api_version = str(document.get("apiVersion") or "")
    return document.get("kind") == names.KIND and api_version.split("/", 1)[0] == names.GROUP


def load(paths: Sequence[str], stdin: TextIO) -> tuple[list[Manifest], list[str]]:
    """The KmsKey manifests in `paths` (in order), and notes about documents that were skipped."""
    manifests: list[Manifest] = []
    notes: list[str] = []
    for path in paths:
        for source, text in _read(path, stdin):
            manifests.extend(parse(source, text, notes))
    return manifests, notes


def parse(source: str, text: str, notes: list[str]) -> list[Manifest]:
    """The KmsKey documents of one YAML stream; appends a note for each other document."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise ManifestError(f"{source}: not valid YAML: {error}") from None
    found: list[Manifest] = []
    for index, document in enumerate(_flatten(documents), start=1):
        where = source if len(documents) == 1 and index == 1 else f"{source}#{index}"
        if not isinstance(document, Mapping):
            notes.append(f"{where}: skipped (not a Kubernetes object)")
        elif is_kmskey(document):
            found.append(Manifest(where, document))
        else:
            name = _metadata(document).get("name") or "(unnamed)"
            notes.append(f"{where}: skipped {document.get('kind') or 'object without kind'} {name}")
    return found


def _flatten(documents: Iterable[Any]) -> Iterable[Any]:
    for document in documents:
        if isinstance(document, Mapping) and str(document.get("kind", "")).endswith("List"):
            yield from document.get("items") or []
        else:
            yield document


def _read(path: str, stdin: TextIO) -> list[tuple[str, str]]:
    if path == "-":
        return [("<stdin>", stdin.read())]
    target = Path(path)
    try:
        if target.is_dir():
            files = sorted(p for p in target.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
            return [(str(p), p.read_text(encoding="utf-8")) for p in files]
        return [(path, target.read_text(encoding="utf-8"))]
    except OSError as error:
        raise ManifestError(f"{path}: {error.strerror or error}") from None


def _metadata(body: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = body.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}
