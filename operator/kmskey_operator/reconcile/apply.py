"""Run planned KMS calls in order, stopping at the first failure."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.kms.types import KmsCall

logger = logging.getLogger(__name__)


async def apply(gateway: KmsGateway, region_id: str, calls: Sequence[KmsCall], *, resource: str) -> int:
    """Execute `calls`; returns how many succeeded. A KmsError propagates after logging."""
    done = 0
    for call in calls:
        key_id = call.params.get("KeyId") or next(iter(call.params.get("ResourceId") or []), "")
        logger.info(
            "KMS write %s", call.action, extra={"resource": resource, "key_id": key_id, "action": call.action}
        )
        await gateway.call(region_id, call)
        done += 1
    return done
