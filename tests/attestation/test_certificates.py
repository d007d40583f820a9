from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attestation.certificates import InvalidCertificate, verify_device_certificate
from ledger.simulator import SimulatedDevice

NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)


def cert(subject: str, public_key, issuer_name: str, issuer_key, *, ca: bool, days: int = 365, start: datetime = NOW - timedelta(days=1)):  # type: ignore[no-untyped-def]
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    return (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer_name))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def pem(c: x509.Certificate) -> str:
    return c.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def pki():  # type: ignore[no-untyped-def]
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = cert("Maker Root CA", root_key.public_key(), "Maker Root CA", root_key, ca=True, days=3650)
    inter = cert("Maker Signer", inter_key.public_key(), "Maker Root CA", root_key, ca=True)
    device = SimulatedDevice("wh1-scale-03", "load_cell")
    leaf = cert("wh1-scale-03", device._key.public_key(), "Maker Signer", inter_key, ca=False)
    return root, inter, leaf, device, root_key


def test_valid_chain(pki) -> None:  # type: ignore[no-untyped-def]
    root, inter, leaf, device, _ = pki
    assert verify_device_certificate(device.public_key_pem, [pem(leaf), pem(inter)], [root], at=NOW) == "CN=wh1-scale-03"
    assert verify_device_certificate(device.public_key_pem, [pem(leaf) + pem(inter) + pem(root)], [root], at=NOW)


def test_refusals(pki) -> None:  # type: ignore[no-untyped-def]
    root, inter, leaf, device, root_key = pki
    other_root_key = ec.generate_private_key(ec.SECP256R1())
    other_root = cert("Other Root", other_root_key.public_key(), "Other Root", other_root_key, ca=True)
    cases = [
        ((device.public_key_pem, [], [root]), "requires a certificate_chain"),
        ((SimulatedDevice("x", "load_cell").public_key_pem, [pem(leaf), pem(inter)], [root]), "not for public_key"),
        ((device.public_key_pem, [pem(leaf), pem(inter)], [other_root]), "does not chain"),
        ((device.public_key_pem, [pem(leaf)], [root]), "does not chain"),
        ((device.public_key_pem, [pem(leaf), pem(inter)], []), "no trusted device CA"),
        ((device.public_key_pem, ["not a pem"], [root]), "must be PEM"),
    ]
    for (key, chain, roots), message in cases:
        with pytest.raises(InvalidCertificate, match=message):
            verify_device_certificate(key, chain, roots, at=NOW)
    with pytest.raises(InvalidCertificate, match="valid from"):
        verify_device_certificate(device.public_key_pem, [pem(leaf), pem(inter)], [root], at=NOW + timedelta(days=400))

    # an end-entity certificate signed by the root cannot act as an issuer
    ee_key = ec.generate_private_key(ec.SECP256R1())
    not_ca = cert("Maker Signer", ee_key.public_key(), "Maker Root CA", root_key, ca=False)
    rogue_leaf = cert("wh1-scale-03", device._key.public_key(), "Maker Signer", ee_key, ca=False)
    with pytest.raises(InvalidCertificate, match="not a CA"):
        verify_device_certificate(device.public_key_pem, [pem(rogue_leaf), pem(not_ca)], [root], at=NOW)
    # a chain whose links are not signed by each other
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    unlinked = cert("wh1-scale-03", device._key.public_key(), "Maker Signer", stranger_key, ca=False)
    with pytest.raises(InvalidCertificate, match="not signed by certificate 1"):
        verify_device_certificate(device.public_key_pem, [pem(unlinked), pem(inter)], [root], at=NOW)
