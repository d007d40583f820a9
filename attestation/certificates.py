"""X.509 provisioning: a device key that must come with a certificate chaining to a trusted CA.

A warehouse may require that every device key it registers was provisioned by a known
manufacturer or provisioning CA (Microchip's ATECC608 Trust&GO and Infineon's OPTIGA Trust M
ship such certificates). :func:`verify_device_certificate` checks, without any I/O:

1. the leaf certificate's public key is exactly the key being registered;
2. each certificate is signed by the next one in the chain, the last by a trusted root;
3. every issuer is a CA (basicConstraints cA=true) and every certificate, roots included,
   is valid at the given time.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestation.errors import AttestationError

__all__ = ["InvalidCertificate", "load_certificates", "verify_device_certificate"]

MAX_CHAIN = 8


class InvalidCertificate(AttestationError):
    code = "invalid_certificate"


def load_certificates(pem: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (empty list if none)."""
    try:
        return x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidCertificate(f"certificate_chain must be PEM certificates ({exc})", field="certificate_chain") from None


def _spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _valid_at(cert: x509.Certificate, at: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise InvalidCertificate(
            f"{what} ({cert.subject.rfc4514_string()}) is valid from {cert.not_valid_before_utc.isoformat()} "
            f"to {cert.not_valid_after_utc.isoformat()}, not at {at.isoformat()}",
            field="certificate_chain",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
        return True
    except Exception:  # InvalidSignature, a key type that cannot sign, unsupported algorithms
        return False


def verify_device_certificate(public_key_pem: str, chain_pems: list[str], roots: list[x509.Certificate], *, at: datetime) -> str:
    """Check the chain for ``public_key_pem``; return the leaf's subject. Raises :class:`InvalidCertificate`."""
    if not roots:
        raise InvalidCertificate("no trusted device CA is configured", field="certificate_chain")
    chain = [cert for pem in chain_pems for cert in load_certificates(pem)]
    if not chain:
        raise InvalidCertificate("this warehouse requires a certificate_chain (device certificate first) for every device key",
                                 field="certificate_chain")
    if len(chain) > MAX_CHAIN:
        raise InvalidCertificate(f"certificate_chain may hold at most {MAX_CHAIN} certificates", field="certificate_chain")
    key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    if _spki(chain[0].public_key()) != _spki(key):
        raise InvalidCertificate("the first certificate of certificate_chain is not for public_key", field="certificate_chain")
    for i, cert in enumerate(chain):
        _valid_at(cert, at, "the device certificate" if i == 0 else f"intermediate certificate {i}")
        if i > 0 and not _is_ca(cert):
            raise InvalidCertificate(f"certificate {i} of the chain is not a CA certificate", field="certificate_chain")
        if i + 1 < len(chain) and not _issued_by(cert, chain[i + 1]):
            raise InvalidCertificate(f"certificate {i} of the chain is not signed by certificate {i + 1}", field="certificate_chain")
    last = chain[-1]
    for root in roots:
        if _spki(root.public_key()) == _spki(last.public_key()) and root.subject == last.subject:
            anchor = root  # the chain ends with the root itself
        elif _issued_by(last, root):
            anchor = root
        else:
            continue
        _valid_at(anchor, at, "the trusted root")
        if not _is_ca(anchor):
            raise InvalidCertificate("the trusted root is not a CA certificate", field="certificate_chain")
        return chain[0].subject.rfc4514_string()
    raise InvalidCertificate("certificate_chain does not chain to a device CA this warehouse trusts", field="certificate_chain")
