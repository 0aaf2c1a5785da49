"""The extra CA reaches the credentials library's STS calls through SSL_CERT_FILE, adding to the roots."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest

from kmskey_operator.kms import sts

PEM = "-----BEGIN CERTIFICATE-----\nMIIBextra\n-----END CERTIFICATE-----"


def test_the_extra_ca_is_added_to_certifis_roots_in_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    extra = tmp_path / "proxy-ca.pem"
    extra.write_text(PEM)

    written = sts.trust_extra_ca(str(extra), str(tmp_path))

    assert written is not None
    import os

    assert os.environ["SSL_CERT_FILE"] == written
    text = Path(written).read_text()
    assert PEM in text
    assert Path(certifi.where()).read_text().strip()[:200] in text


def test_a_bundle_the_user_set_in_ssl_cert_file_is_kept_and_nothing_changes_without_an_extra_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert sts.trust_extra_ca(None) is None
    mine = tmp_path / "mine.pem"
    mine.write_text(PEM.replace("extra", "mine"))
    monkeypatch.setenv("SSL_CERT_FILE", str(mine))
    extra = tmp_path / "ca.pem"
    extra.write_text(PEM)

    written = sts.trust_extra_ca(str(extra), str(tmp_path))

    assert written is not None
    text = Path(written).read_text()
    assert PEM in text
    assert PEM.replace("extra", "mine") in text
