"""Read a key as KMS has it: DescribeKey, its tags, and its policy when the spec manages one."""

from __future__ import annotations

from kmskey_operator.kms.gateway import KmsGateway
from kmskey_operator.kms.types import ObservedKey


async def observe(gateway: KmsGateway, region_id: str, key_id: str, *, with_policy: bool) -> ObservedKey:
    """At most three reads: DescribeKey, ListTagResources, and GetKeyPolicy if `with_policy`.

    Raises KmsError (kind GONE when the key does not exist). The tags (the claim among them) are always
    read; the policy is not read for a key pending deletion: nothing will be written to it.
    """
    metadata = await gateway.describe_key(region_id, key_id)
    tags = await gateway.list_key_tags(region_id, metadata.key_id or key_id)
    if metadata.key_state == "PendingDeletion":
        return ObservedKey(metadata=metadata, tags=tags, policy=None)
    policy = await gateway.get_key_policy(region_id, key_id) if with_policy else None
    return ObservedKey(metadata=metadata, tags=tags, policy=policy)
