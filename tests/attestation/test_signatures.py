from __future__ import annotations

import pytest

from attestation.devices import key_fingerprint, pop_message, verify_pop
from attestation.encoding import b64url_decode, b64url_encode, canonical_json
from attestation.errors import InvalidKey, InvalidReading, InvalidSignature, UnsupportedAlgorithm
from attestation.signatures import verify_signature
from ledger.simulator import SimulatedDevice

ALGS = ["ES256", "ES256K", "EdDSA"]


@pytest.mark.parametrize("alg", ALGS)
def test_sign_and_verify(alg: str) -> None:
    device = SimulatedDevice("d-1", "heartbeat", alg=alg)
    sig = device.sign(b"hello")
    verify_signature(alg, device.public_key_pem, b"hello", sig)
    with pytest.raises(InvalidSignature):
        verify_signature(alg, device.public_key_pem, b"hellO", sig)
    with pytest.raises(InvalidSignature):
        verify_signature(alg, device.public_key_pem, b"hello", sig[:-1])


def test_es256k_high_s_accepted() -> None:
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    device = SimulatedDevice("d-1", "heartbeat", alg="ES256K")
    sig = device.sign(b"m")
    r, s = sig[:32], int.from_bytes(sig[32:], "big")
    verify_signature("ES256K", device.public_key_pem, b"m", r + (n - s).to_bytes(32, "big"))


@pytest.mark.parametrize("alg,other", [("ES256", "ES256K"), ("ES256K", "EdDSA"), ("EdDSA", "ES256")])
def test_key_of_wrong_curve_is_refused(alg: str, other: str) -> None:
    device = SimulatedDevice("d-1", "heartbeat", alg=other)
    with pytest.raises(InvalidKey):
        verify_signature(alg, device.public_key_pem, b"x", b"\x00" * 64)


def test_unknown_alg_and_bad_pem() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        verify_signature("RS256", "x", b"x", b"\x00" * 64)
    with pytest.raises(InvalidKey):
        verify_signature("ES256", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", b"x", b"\x00" * 64)


#: Ed25519 points of small order (the identity, and one of order 8): no private key, and
#: "signatures" under them that anyone can make.
SMALL_ORDER = [bytes([1]) + bytes(31), bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")]
BASE_POINT = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")


def _ed25519_pem(raw: bytes) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize("point", SMALL_ORDER, ids=["identity", "order-8"])
def test_small_order_ed25519_keys_are_refused_by_name(point: bytes) -> None:
    """A registrant cannot enrol a key whose signatures anyone can forge (fraud case 9: readings
    the device did not make). Under the identity point, R = B and S = 1 "sign" every message:
    OpenSSL's Ed25519 accepts that, so the key is refused before any signature is looked at."""
    pem = _ed25519_pem(point)
    forged = BASE_POINT + (1).to_bytes(32, "little")
    with pytest.raises(InvalidKey, match="small order"):
        verify_signature("EdDSA", pem, b"any reading at all", forged)
    with pytest.raises(InvalidKey, match="small order"):
        verify_pop("wh1-rfid-01", "EdDSA", pem, b64url_encode(forged))


def test_ed25519_rfc8032_vector() -> None:
    """RFC 8032 §7.1, test 2 (one-byte message)."""
    public = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    signature = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )
    verify_signature("EdDSA", _ed25519_pem(public), bytes([0x72]), signature)
    with pytest.raises(InvalidSignature):
        verify_signature("EdDSA", _ed25519_pem(public), bytes([0x73]), signature)


def test_pop_message_is_spec_jcs() -> None:
    assert pop_message("d", "PEM") == b'{"device":"d","public_key":"PEM","purpose":"pledgeledger/register"}'


@pytest.mark.parametrize("alg", ALGS)
def test_proof_of_possession(alg: str) -> None:
    device = SimulatedDevice("wh1-scale-03", "load_cell", alg=alg)
    body = device.registration()
    assert verify_pop(body["id"], alg, body["public_key"], body["pop"]) == key_fingerprint(body["public_key"])
    other = SimulatedDevice("wh1-scale-03", "load_cell", alg=alg)
    with pytest.raises(InvalidSignature):  # a pop by another key: the registrant does not hold this key
        verify_pop(body["id"], alg, other.public_key_pem, body["pop"])
    with pytest.raises(InvalidSignature):  # a pop for another device id
        verify_pop("wh1-scale-04", alg, body["public_key"], body["pop"])
    with pytest.raises(InvalidReading):
        verify_pop("bad id!", alg, body["public_key"], body["pop"])


def test_base64url_strict() -> None:
    assert b64url_decode(b64url_encode(b"\xff\xfe")) == b"\xff\xfe"
    for bad in ["//8=", "__8=", "a b", "Zm9v=", "Zm9"]:
        with pytest.raises(ValueError):
            b64url_decode(bad)


# RFC 8785 Appendix B number vectors (IEEE-754 hex -> canonical text)
@pytest.mark.parametrize(
    "value,text",
    [(0.0, "0"), (-0.0, "0"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
     (9007199254740991.0, "9007199254740991"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
     (0.000001, "0.000001"), (1e-7, "1e-7"), (333333333.3333333, "333333333.3333333")],
)
def test_jcs_numbers(value: float, text: str) -> None:
    assert canonical_json(value) == text.encode()


def test_jcs_object_ordering_and_strings() -> None:
    # RFC 8785 §3.2.3: keys sorted by UTF-16 code units
    obj = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
           "1": "One", "\U0001F600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}
    keys = [k for k in __import__("json").loads(canonical_json(obj))]
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\ufb33"]
    assert canonical_json({"b": [1, "x\u2028"], "a": None}) == '{"a":null,"b":[1,"x\u2028"]}'.encode()
