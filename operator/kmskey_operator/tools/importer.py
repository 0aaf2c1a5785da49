"""`kmskey-operator import`: print KmsKey manifests that adopt existing KMS keys, without writing to KMS.

The key is read with the reconciler's `observe` (DescribeKey, ListTagResources, GetKeyPolicy) and rendered
by `reconcile.export`, the inverse of `diff`, so `kmskey-operator plan` of the printed manifest reports no
changes. Keys that carry the operator's ownership tag already belong to a KmsKey and are not imported
(two resources would fight over one key); keys pending deletion cannot be described by a spec.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kmskey_operator import claims, names
from kmskey_operator.kms.errors import ErrorKind, KmsError
from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.reconcile import export
from kmskey_operator.reconcile.observe import observe
from kmskey_operator.settings import Settings
from kmskey_operator.tools import accounts as tool_accounts
from kmskey_operator.tools.readonly import ReadOnlyGateway


class ImportRefused(Exception):
    """This key is not imported; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Imported:
    key_id: str
    name: str
    body: dict[str, Any]


async def import_key(
    gateway: KmsGateway, region_id: str, key_id: str, *, name: str | None = None, namespace: str | None = None
) -> Imported:
    """Read one key and render the manifest that adopts it; raises ImportRefused or KmsError."""
    try:
        observed = await observe(gateway, region_id, key_id, with_policy=True)
    except KmsError as error:
        if error.kind is ErrorKind.GONE:
            raise ImportRefused(f"KMS key {key_id} does not exist in {region_id}") from None
        raise
    claim = claims.read(observed.tags)
    if claim is not None:
        raise ImportRefused(
            f"KMS key {observed.metadata.key_id} is already claimed by {claim.describe()} "
            f"(tag {names.OWNER_TAG_KEY}); importing it again would let two resources manage one key"
        )
    try:
        spec = export.spec_from_observed(observed, region_id=region_id)
    except export.NotExportable as error:
        raise ImportRefused(str(error)) from None
    real_id = observed.metadata.key_id
    resource_name = name or export.resource_name(real_id)
    return Imported(real_id, resource_name, export.manifest(spec, name=resource_name, namespace=namespace))


async def import_all(
    gateway: KmsGateway, region_id: str, filters: Mapping[str, Sequence[str]], *, namespace: str | None
) -> tuple[list[Imported], list[str]]:
    """Every key ListKeys returns for `filters`, except those refused (returned as notes)."""
    imported: list[Imported] = []
    notes: list[str] = []
    for key_id in await gateway.list_keys(region_id, filters):
        try:
            imported.append(await import_key(gateway, region_id, key_id, namespace=namespace))
        except ImportRefused as refusal:
            notes.append(f"skipped: {refusal}")
    return imported, notes


def parse_filters(items: Sequence[str]) -> dict[str, list[str]]:
    """`["KeyState=Enabled", "KeyState=Disabled", "TagKey=team"]` -> ListKeys filters (values OR-ed)."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise ValueError(f"--filter {item!r}: write KEY=VALUE, for example KeyState=Enabled")
        filters.setdefault(key.strip(), []).append(value)
    return filters


# --- YAML ---------------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (policies), and keys in the order the manifest builds them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(body: Mapping[str, Any]) -> str:
    return yaml.dump(dict(body), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)


# --- command line -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Print KmsKey manifests that adopt existing KMS keys (spec.keyId); never writes."
    parser.add_argument("key_id", nargs="?", metavar="KEY_ID", help="the key to import (or --all)")
    parser.add_argument("--name", help="metadata.name (default: derived from the key ID)")
    parser.add_argument("--namespace", "-n", help="metadata.namespace (default: none, kubectl's current)")
    parser.add_argument("--all", action="store_true", help="import every key ListKeys returns (see --filter)")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --all: a ListKeys filter, e.g. KeyState=Enabled, KeySpec=RSA_2048, TagKey=team "
        "(repeat a KEY to OR its values)",
    )
    parser.add_argument(
        "--output-dir", type=Path, metavar="DIR", help="with --all: write NAME.yaml files here, not stdout"
    )
    tool_accounts.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """`kmskey-operator import`; 0 when every requested manifest was printed or written, else 1."""
    settings = Settings.from_env()
    problem = _usage_problem(args)
    if problem:
        print(f"kmskey-operator import: {problem}", file=sys.stderr)
        return 1
    try:
        found, notes = asyncio.run(_import(settings, args))
    except (ImportRefused, KmsError, ValueError, tool_accounts.ConfigProblem) as error:
        print(f"kmskey-operator import: {error}", file=sys.stderr)
        return 1
    if not args.all:
        sys.stdout.write(to_yaml(found[0].body))
        return 0
    for note in notes:
        print(f"kmskey-operator import: {note}", file=sys.stderr)
    if args.output_dir is not None:
        return _write_files(args.output_dir, found)
    sys.stdout.write("".join(f"---\n{to_yaml(item.body)}" for item in found))
    print(f"kmskey-operator import: {len(found)} manifest(s)", file=sys.stderr)
    return 0


async def _import(settings: Settings, args: argparse.Namespace) -> tuple[list[Imported], list[str]]:
    """The manifests to print: with --provider-config the key is read with that config's credentials, and
    each manifest names the config (and its namespace)."""
    operator_gateway = ReadOnlyGateway(settings)
    gateway: KmsGateway = operator_gateway
    region, namespace = settings.region_id, args.namespace
    ref = tool_accounts.ref_from(args)
    if ref is not None:
        accounts = tool_accounts.ToolAccounts(settings, operator_gateway)
        try:
            target = await accounts.named(ref)
        finally:
            await accounts.aclose()  # the API server was needed for the config only
        gateway, region = target.gateway, target.default_region
        if ref.namespace is not None:
            if namespace and namespace != ref.namespace:
                raise ValueError(
                    f"--namespace {namespace}: a KmsKey may use only its own namespace's KmsProviderConfig "
                    f"({ref.describe()})"
                )
            namespace = ref.namespace
    notes: list[str] = []
    if args.all:
        found, notes = await import_all(gateway, region, parse_filters(args.filter), namespace=namespace)
    else:
        found = [await import_key(gateway, region, args.key_id, name=args.name, namespace=namespace)]
    if ref is not None:
        for item in found:
            item.body["spec"]["providerConfigRef"] = tool_accounts.reference(ref)
    return found, notes


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.all == bool(args.key_id):
        return "give either KEY_ID or --all"
    if args.all and args.name:
        return "--name names one resource; with --all each name is derived from its key ID"
    if not args.all and (args.filter or args.output_dir):
        return "--filter and --output-dir go with --all"
    return None


def _write_files(directory: Path, found: Sequence[Imported]) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    targets = [(directory / f"{item.name}.yaml", item) for item in found]
    existing = [str(path) for path, _ in targets if path.exists()]
    if existing:
        print(f"kmskey-operator import: not overwriting {', '.join(existing)}", file=sys.stderr)
        return 1
    for path, item in targets:
        path.write_text(to_yaml(item.body), encoding="utf-8")
        print(f"{path}  ({item.key_id})")
    return 0
