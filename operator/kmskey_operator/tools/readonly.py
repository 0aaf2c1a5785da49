"""A KMS gateway that refuses every action that is not a read, before anything leaves the process.

`KmsGateway.call` is the single door to KMS (its typed reads and `create_key` all go through it), so
overriding it is enough: a tool holding this gateway cannot write, whatever code path it takes.
"""

from __future__ import annotations

from typing import Any

from kmskey_operator.kms.gateway import READ_ONLY_ACTIONS, KmsGateway
from kmskey_operator.kms.types import KmsCall


class WriteRefused(RuntimeError):
    """A read-only tool tried a KMS write: a bug in the tool, never a user error."""

    def __init__(self, action: str) -> None:
        super().__init__(
            f"{action} refused: this tool only reads KMS ({', '.join(sorted(READ_ONLY_ACTIONS))})"
        )
        self.action = action


class ReadOnlyGateway(KmsGateway):
    """`KmsGateway` whose `call` lets only `READ_ONLY_ACTIONS` through."""

    async def call(self, region_id: str, call: KmsCall) -> dict[str, Any]:
        if call.action not in READ_ONLY_ACTIONS:
            raise WriteRefused(call.action)
        return await super().call(region_id, call)
