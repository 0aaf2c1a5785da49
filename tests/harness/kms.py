"""The official KMS SDK pointed at an emulator the way tests and the demo look at KMS: over the emulator's
protocol (HTTPS unless it serves plain HTTP), trusting the emulator's CA."""

from __future__ import annotations

from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_tea_openapi.utils_models import Config

from kms_emulator.testing import EmulatorHandle


def sdk_client(
    emu: EmulatorHandle, *, access_key_id: str | None = None, access_key_secret: str | None = None
) -> KmsClient:
    """An SDK client for `emu`, signing with its first access key unless another is given."""
    return KmsClient(
        Config(
            access_key_id=access_key_id or emu.access_key_id,
            access_key_secret=access_key_secret or emu.access_key_secret,
            endpoint=emu.endpoint,
            protocol=emu.protocol,
            ca=str(emu.ca_file) if emu.ca_file else None,
            region_id=emu.region_id,
        )
    )
