"""COSE_Sign1 readings (RFC 9052): structure, headers, deterministic CBOR payloads, signatures.

Byte vectors are written out by hand (annotated) so they can be checked without our code,
and two were cross-checked with an independent COSE implementation (cose-kit 1.7.1 on npm).
"""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from attestation.cose import deterministic_cbor, sig_structure, strict_loads
from attestation.encoding import b64url_encode, canonical_json
from attestation.errors import InvalidReading, InvalidSignature, InvalidThingData
from attestation.readings import parse_cose_reading, parse_reading
from ledger.simulator import SimulatedDevice

ALGS = {"ES256": -7, "ES256K": -47, "EdDSA": -8}

# --- a hand-verifiable vector -------------------------------------------------------------------
# Key: RFC 8032 §7.1 TEST 1 (Ed25519), so anyone can recompute the signature.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n"

PAYLOAD = {"v": 1, "device": "wh1-scale-03", "seq": 42, "prev": None, "ts": "2026-11-21T08:00:00.000Z",
           "kind": "load_cell", "lot": "LOT-2026-0001", "data": {"weight_kg": 1250.5}}
# RFC 8949 §4.2.1: text keys sorted by their encoded bytes, i.e. shorter first, then bytewise:
# v, ts, lot < seq, data < kind < prev, device.
PAYLOAD_CBOR = bytes.fromhex(
    "a8"                                    # map(8)
    "6176" "01"                             # "v": 1
    "627473" "7818" + "2026-11-21T08:00:00.000Z".encode().hex() +  # "ts": text(24), 1-byte length
    "636c6f74" "6d" + b"LOT-2026-0001".hex() +                     # "lot": text(13)
    "63736571" "182a"                       # "seq": 42 (uint8 form, 42 > 23)
    "6464617461" "a1" "69" + b"weight_kg".hex() + "fa449c5000"     # "data": {"weight_kg": 1250.5 as float32}
    "646b696e64" "69" + b"load_cell".hex() +                       # "kind": "load_cell"
    "6470726576" "f6"                       # "prev": null
    "66646576696365" "6c" + b"wh1-scale-03".hex()                  # "device": "wh1-scale-03"
)
PROTECTED_EDDSA = bytes.fromhex("a10127")  # {1: -8}
SIG_STRUCTURE = bytes.fromhex("84" "6a" + b"Signature1".hex() + "43a10127" "40" "5877") + PAYLOAD_CBOR
# Ed25519 is deterministic: this is the RFC 8032 TEST 1 key's signature over SIG_STRUCTURE.
SIGNATURE = bytes.fromhex(
    "22a13b09acbffa10ff00f7ca943eb0671ffc9f9a091c1546a9cbaa8c851660eb"
    "7c60ad96ee66a2fe1973b31b673313d914fe88692a1a4f9bf07df4dd659ca100"
)
COSE_VECTOR = bytes.fromhex("d2" "84" "43a10127" "a0" "5877") + PAYLOAD_CBOR + bytes.fromhex("5840") + SIGNATURE
DIGEST = "6ba7bc6f1dd25fe8cf79b80a3a137afe375f3ad8d352688e96effebba7cdae7c"  # sha256(PAYLOAD_CBOR)

# Signed by cose-kit 1.7.1 (npm, independent CBOR encoder and Sig_structure) with ES256 over
# PAYLOAD_CBOR, kid "wh1-scale-03" as a byte string in the unprotected header.
COSE_KIT_PEM = (
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE61kkh3BXfNWQrLpFq9ufYt9781WI\n"
    "7HgX/3+G63cJWyLjAD0mQi7/JX2IDROGrxFSVSPslJvHd7WeJNBuT0+HUw==\n-----END PUBLIC KEY-----\n"
)
COSE_KIT_ES256 = (
    bytes.fromhex("d28443a10126a1044c" + b"wh1-scale-03".hex() + "5877")
    + PAYLOAD_CBOR
    + bytes.fromhex(
        "5840283f172102e031f8bae51434ceb2cfd79395eb76bf1eae6223557e09c2f0fd903f511ee5f991d8be35de98214b48ea2adf8f"
        "6e281ec7190cdb0dac22123b1bb5"
    )
)


def rfc8032_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)


def sign1(payload: bytes, *, key: ed25519.Ed25519PrivateKey | None = None, protected: bytes = PROTECTED_EDDSA,
          unprotected: bytes = b"\xa0", tag: bytes = b"\xd2") -> bytes:
    """A COSE_Sign1 built by hand around ``payload`` (bytes), signed with EdDSA."""
    signature = (key or rfc8032_key()).sign(sig_structure(protected, payload))
    return tag + b"\x84" + cbor2.dumps(protected) + unprotected + cbor2.dumps(payload) + cbor2.dumps(signature)


# --- the vectors ----------------------------------------------------------------------------------


def test_hand_built_vector() -> None:
    assert deterministic_cbor(PAYLOAD) == PAYLOAD_CBOR  # our encoder agrees with the hand encoding
    assert sig_structure(PROTECTED_EDDSA, PAYLOAD_CBOR) == SIG_STRUCTURE
    assert rfc8032_key().sign(SIG_STRUCTURE) == SIGNATURE
    pem = rfc8032_key().public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pem.decode() == RFC8032_PEM

    r = parse_cose_reading(COSE_VECTOR)
    assert (r.envelope_kind, r.alg, r.id, r.seq, r.device) == ("cose", "EdDSA", DIGEST, 42, "wh1-scale-03")
    assert r.payload == PAYLOAD and r.payload_bytes == PAYLOAD_CBOR
    assert r.digest == hashlib.sha256(PAYLOAD_CBOR).digest()
    assert r.signed_bytes == SIG_STRUCTURE and r.signature == SIGNATURE
    assert r.raw == {"cose": b64url_encode(COSE_VECTOR)} and r.cose == COSE_VECTOR
    r.verify(RFC8032_PEM)
    # the COSE and the JSON envelope of one payload are different readings: the digests differ
    assert r.digest != hashlib.sha256(canonical_json(PAYLOAD)).digest()


def test_independent_implementation_vector() -> None:
    r = parse_cose_reading(COSE_KIT_ES256)
    assert (r.alg, r.id) == ("ES256", DIGEST)
    r.verify(COSE_KIT_PEM)


# --- valid readings of the three algorithms -----------------------------------------------------


@pytest.mark.parametrize("alg", sorted(ALGS))
def test_simulated_readings_of_each_alg(alg: str) -> None:
    device = SimulatedDevice("wh1-scale-03", "load_cell", alg=alg, lot="LOT-1")
    first = parse_reading(device.reading({"weight_kg": 1.0}))
    data = device.cose_reading({"weight_kg": 1250.5}, unprotected={4: b"wh1-scale-03"})
    assert data[0] == 0xD2
    r = parse_cose_reading(data)
    assert (r.envelope_kind, r.alg, r.seq, r.prev) == ("cose", alg, 2, first.id)  # chains to the JSON reading
    protected = cbor2.dumps({1: ALGS[alg]})
    assert r.signed_bytes == cbor2.dumps(["Signature1", protected, b"", r.payload_bytes])
    assert r.id == hashlib.sha256(r.payload_bytes).hexdigest()
    r.verify(device.public_key_pem)
    # the JSON form round-trips through parse_reading to the same reading
    again = parse_reading(r.raw)
    assert (again.id, again.signed_bytes, again.envelope_kind) == (r.id, r.signed_bytes, "cose")
    again.verify(device.public_key_pem)
    nxt = parse_reading(device.reading({"weight_kg": 2.0}))
    assert nxt.prev == r.id  # and the next JSON reading chains to the COSE one
    with pytest.raises(InvalidSignature) as err:  # another key of the same algorithm
        r.verify(SimulatedDevice("other", "load_cell", alg=alg).public_key_pem)
    assert err.value.field == "cose.signature"


def test_json_reading_records_its_kind() -> None:
    device = SimulatedDevice("wh1-scale-03", "load_cell")
    env = device.reading({"weight_kg": 1.0})
    r = parse_reading(env)
    assert (r.envelope_kind, r.raw, r.cose) == ("json", env, None)
    assert r.signed_bytes == r.payload_bytes == canonical_json(env["payload"])


# --- tampering ----------------------------------------------------------------------------------


def test_tampered_payload_fails_the_signature() -> None:
    forged = PAYLOAD_CBOR.replace(bytes.fromhex("63736571182a"), bytes.fromhex("63736571182b"))  # seq 42 -> 43
    assert forged != PAYLOAD_CBOR
    data = COSE_VECTOR.replace(PAYLOAD_CBOR, forged)
    r = parse_cose_reading(data)  # still well-formed and deterministic
    assert r.seq == 43
    with pytest.raises(InvalidSignature):
        r.verify(RFC8032_PEM)


@pytest.mark.parametrize(
    "protected",
    [
        "a2012704420001",  # {1: -8, 4: h'0001'}: a kid added after signing
        "a1013807",  # {1: -8} with -8 in a non-shortest form: same map, other signed bytes
    ],
)
def test_tampered_protected_header_fails_the_signature(protected: str) -> None:
    data = COSE_VECTOR.replace(b"\x43\xa1\x01\x27", cbor2.dumps(bytes.fromhex(protected)), 1)
    r = parse_cose_reading(data)
    assert r.alg == "EdDSA"
    with pytest.raises(InvalidSignature):
        r.verify(RFC8032_PEM)


def test_unprotected_header_is_not_signed() -> None:
    data = COSE_VECTOR.replace(b"\xa0\x58\x77", bytes.fromhex("a1044c") + b"wh1-scale-03" + b"\x58\x77", 1)
    r = parse_cose_reading(data)
    r.verify(RFC8032_PEM)
    assert r.id == DIGEST and r.cose == data


# --- deterministic payload encoding -------------------------------------------------------------


def _reencoded(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A map of hand-encoded key/value byte pairs, in the order given."""
    return bytes([0xA0 + len(pairs)]) + b"".join(k + v for k, v in pairs)


def _pairs() -> list[tuple[bytes, bytes]]:
    order = ("v", "ts", "lot", "seq", "data", "kind", "prev", "device")
    return [(cbor2.dumps(k), cbor2.dumps(PAYLOAD[k], canonical=True)) for k in order]


def test_pairs_helper_rebuilds_the_vector() -> None:
    assert _reencoded(_pairs()) == PAYLOAD_CBOR


def _swap(pairs: list[tuple[bytes, bytes]], key: str, value: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, value if k == cbor2.dumps(key) else v) for k, v in pairs]


def _data(map_head: str, weight: str) -> bytes:
    """``{"weight_kg": <weight>}`` with a hand-written map head and float."""
    return bytes.fromhex(map_head + "69") + b"weight_kg" + bytes.fromhex(weight)


NON_DETERMINISTIC = {
    "unsorted keys (device first)": lambda p: _reencoded([p[-1]] + p[:-1]),
    "keys in string order, as JCS sorts them": lambda p: _reencoded([p[i] for i in (4, 7, 5, 2, 6, 3, 1, 0)]),
    "seq 42 as uint16": lambda p: _reencoded(_swap(p, "seq", bytes.fromhex("19002a"))),
    "v 1 as uint8": lambda p: _reencoded(_swap(p, "v", bytes.fromhex("1801"))),
    "text length in a longer form": lambda p: _reencoded(_swap(p, "kind", bytes.fromhex("7809") + b"load_cell")),
    "1250.5 as float64": lambda p: _reencoded(_swap(p, "data", _data("a1", "fb40938a0000000000"))),
    "1251.0 as float32 (float16 keeps it)": lambda p: _reencoded(_swap(p, "data", _data("a1", "fa449c6000"))),
    "map length in a longer form": lambda p: b"\xb8\x08" + _reencoded(p)[1:],
    "nested map in a longer form": lambda p: _reencoded(_swap(p, "data", _data("b801", "fa449c5000"))),
}
UNDECODABLE = {
    "indefinite-length map": lambda p: b"\xbf" + _reencoded(p)[1:] + b"\xff",
    "indefinite-length text": lambda p: _reencoded(_swap(p, "kind", b"\x7f\x64load\x65_cell\xff")),
    "duplicate key": lambda p: bytes([0xA9]) + b"".join(k + v for k, v in p) + p[0][0] + p[0][1],
    "trailing byte": lambda p: _reencoded(p) + b"\x00",
    "truncated": lambda p: _reencoded(p)[:-1],
}


@pytest.mark.parametrize("name", sorted(NON_DETERMINISTIC))
def test_non_deterministic_payload_is_refused(name: str) -> None:
    payload = NON_DETERMINISTIC[name](_pairs())
    assert payload != PAYLOAD_CBOR and cbor2.loads(payload)["seq"] == 42
    with pytest.raises(InvalidReading, match="deterministic CBOR") as err:
        parse_cose_reading(sign1(payload))
    assert err.value.field == "cose.payload"


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_undecodable_payload_is_refused(name: str) -> None:
    with pytest.raises(InvalidReading) as err:
        parse_cose_reading(sign1(UNDECODABLE[name](_pairs())))
    assert err.value.field == "cose.payload" and err.value.message


# cbor2 canonical=True against RFC 8949 Appendix A (the types payloads use) and §4.2.1
RFC8949_VECTORS = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"), (1000, "1903e8"),
    (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"), (-1, "20"), (-10, "29"), (-100, "3863"),
    (-1000, "3903e7"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.1, "fb3ff199999999999a"), (1.5, "f93e00"),
    (65504.0, "f97bff"), (100000.0, "fa47c35000"), (3.4028234663852886e38, "fa7f7fffff"), (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"), (-4.0, "f9c400"), (-4.1, "fbc010666666666666"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"),
    ([], "80"), ([1, [2, 3], [4, 5]], "8301820203820405"), ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    # §4.2.1 key order: by encoded bytes, so a shorter text key first whatever its letters
    ({"aa": 1, "b": 2, "a": 3}, "a3616103616202626161" "01"),
    ({"y" * 24: 0, "z" * 23: 0}, "a2" "77" + "7a" * 23 + "00" "7818" + "79" * 24 + "00"),
]


@pytest.mark.parametrize("value,encoded", RFC8949_VECTORS, ids=[e for _, e in RFC8949_VECTORS])
def test_cbor2_canonical_matches_rfc8949(value: object, encoded: str) -> None:
    assert deterministic_cbor(value).hex() == encoded
    assert strict_loads(bytes.fromhex(encoded), field="x") == value


def test_cbor2_canonical_orders_mixed_key_types_length_first() -> None:
    """Where cbor2 differs from RFC 8949: it sorts keys length-first (RFC 7049 canonical), so
    "a" (6161) precedes 1000 (1903e8), whereas bytewise order puts 0x19 first. Payload maps have
    text keys only (others are refused), and for those both orders agree."""
    assert deterministic_cbor({1000: 0, "a": 0}).hex() == "a2616100" "1903e800"
    with pytest.raises(InvalidReading) as err:
        parse_cose_reading(sign1(bytes.fromhex("a1") + bytes.fromhex("1903e8") + b"\x00"))
    assert err.value.field == "payload"


def test_cbor2_loads_ignores_trailing_bytes_but_strict_loads_does_not() -> None:
    assert cbor2.loads(b"\x01\x02") == 1
    with pytest.raises(InvalidReading, match="after its CBOR item"):
        strict_loads(b"\x01\x02", field="x")
    with pytest.raises(InvalidReading) as err:
        parse_cose_reading(COSE_VECTOR + b"\x00")
    assert err.value.field == "cose"


# --- the envelope -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        COSE_VECTOR[1:],  # untagged COSE_Sign1
        b"\xd1" + COSE_VECTOR[1:],  # tag 17: COSE_Mac0
        b"\xd8\x62" + COSE_VECTOR[1:],  # tag 98: COSE_Sign
        b"\xd8\x12" + COSE_VECTOR[1:],  # tag 18 in a two-byte form
        b"\xd9\xd9\xf7" + COSE_VECTOR,  # self-described CBOR prefix
        b"\xd2\x83" + COSE_VECTOR[2:-66],  # three elements
        b"\xd2\xa0",  # a map, not an array
        b"\xd2\x84\xa1\x01\x27\xa0" + COSE_VECTOR[6:],  # protected as a map, not a byte string
        b"{\"payload\": 1}",
    ],
)
def test_wrong_tag_or_shape(data: bytes) -> None:
    with pytest.raises(InvalidReading) as err:
        parse_cose_reading(data)
    assert err.value.field in ("cose", "cose.protected")


@pytest.mark.parametrize(
    "protected,unprotected,field",
    [
        ("a1013822", "a0", "cose.protected.alg"),  # -35 ES384
        ("a1013900ff", "a0", "cose.protected.alg"),  # -256 RS256-ish: not ours
        ("a101654553323536", "a0", "cose.protected.alg"),  # "ES256" as text
        ("a1012e", "a0", "cose.protected.alg"),  # -15
        ("a1f527", "a0", "cose.protected"),  # label true (== 1 in Python), not 1
        ("a1f93c0027", "a0", "cose.protected"),  # label 1.0, not 1
        ("a0", "a1f527", "cose.unprotected"),  # unprotected label true
        ("", "a10127", "cose.protected.alg"),  # alg only unprotected
        ("a0", "a0", "cose.protected.alg"),  # empty map
        ("a2012702810f", "a0", "cose.protected.crit"),  # crit present
        ("a10127", "a10127", "cose.unprotected"),  # a label in both buckets
        ("a2012701f4", "a0", "cose.protected"),  # duplicate label
        ("8101", "a0", "cose.protected"),  # not a map
        ("a10127ff", "a0", "cose.protected"),  # trailing garbage
    ],
)
def test_bad_headers(protected: str, unprotected: str, field: str) -> None:
    data = sign1(PAYLOAD_CBOR, protected=bytes.fromhex(protected), unprotected=bytes.fromhex(unprotected))
    with pytest.raises(InvalidReading) as err:
        parse_cose_reading(data)
    assert err.value.field == field, err.value.message


def test_detached_payload_and_bad_signature_type() -> None:
    with pytest.raises(InvalidReading) as err:
        parse_cose_reading(b"\xd2\x84\x43\xa1\x01\x27\xa0\xf6\x58\x40" + SIGNATURE)
    assert err.value.field == "cose.payload"
    with pytest.raises(InvalidReading) as err:
        parse_cose_reading(COSE_VECTOR[:-66] + b"\xf6")
    assert err.value.field == "cose.signature"
    r = parse_cose_reading(COSE_VECTOR[:-66] + cbor2.dumps(SIGNATURE[:63]))
    with pytest.raises(InvalidSignature, match="64 bytes") as err2:
        r.verify(RFC8032_PEM)
    assert err2.value.field == "cose.signature"


def test_wrong_key_type_for_the_alg() -> None:
    r = parse_cose_reading(COSE_VECTOR)
    with pytest.raises(Exception) as err:
        r.verify(COSE_KIT_PEM)  # a P-256 key for an EdDSA reading
    assert getattr(err.value, "code", None) == "invalid_public_key"


# --- payload validation: the same rules as JSON payloads ---------------------------------------


@pytest.mark.parametrize(
    "change,field",
    [
        ({"v": 2}, "payload.v"),
        ({"device": "bad id"}, "payload.device"),
        ({"seq": -1}, "payload.seq"),
        ({"seq": 2**53}, "payload.seq"),
        ({"seq": 1.5}, "payload.seq"),
        ({"seq": True}, "payload.seq"),
        ({"prev": "ABC"}, "payload.prev"),
        ({"prev": b"\x00" * 32}, "payload.prev"),
        ({"ts": "2026-11-21T08:00:00+08:00"}, "payload.ts"),
        ({"lot": ""}, "payload.lot"),
        ({"kind": "teleporter"}, "payload.kind"),
        ({"data": {"weight_t": 1.2}}, "payload.data.weight_kg"),
        ({"data": {"weight_kg": -1}}, "payload.data.weight_kg"),
        ({"data": {"weight_kg": "12"}}, "payload.data.weight_kg"),
        ({"data": {"weight_kg": b"\x01"}}, "payload.data.weight_kg"),  # a byte string: JSON has none
        ({"data": {"weight_kg": float("nan")}}, "payload.data.weight_kg"),
        ({"data": {"weight_kg": 1.0, "note": cbor2.CBORTag(1, 0)}}, "payload.data.note"),  # a tag (epoch time)
        ({"data": {"weight_kg": 1.0, "big": 2**70}}, "payload"),  # bignum (tag 2): beyond JSON's integers
        ({"data": {"weight_kg": 1.0, "x": cbor2.undefined}}, "payload.data.x"),
        ({"data": {"weight_kg": 1.0, "x": cbor2.CBORSimpleValue(99)}}, "payload.data.x"),
        ({"extra": 1}, "payload"),
    ],
)
def test_payload_errors_are_named(change: dict, field: str) -> None:
    payload = {**PAYLOAD, **change}
    with pytest.raises((InvalidReading, InvalidThingData)) as err:
        parse_cose_reading(sign1(deterministic_cbor(payload)))
    assert err.value.field == field, err.value.message


def test_payload_must_be_a_map_with_text_keys_and_every_field() -> None:
    for payload, field in [
        ([1, 2], "payload"),
        ({**PAYLOAD, 1: 1}, "payload"),
        ({k: v for k, v in PAYLOAD.items() if k != "lot"}, "payload.lot"),
    ]:
        with pytest.raises(InvalidReading) as err:
            parse_cose_reading(sign1(deterministic_cbor(payload)))
        assert err.value.field == field


def test_same_rules_as_json() -> None:
    """lot and prev may be null; other thing models and optional fields work the same."""
    payload = {**PAYLOAD, "lot": None, "kind": "rfid_inventory", "data": {"count": 3, "tags": ["a", "b"]}}
    r = parse_cose_reading(sign1(deterministic_cbor(payload)))
    assert r.lot is None and r.payload["data"]["tags"] == ["a", "b"]
    r.verify(RFC8032_PEM)


# --- the JSON form {"cose": ...} ----------------------------------------------------------------


def test_json_form() -> None:
    r = parse_reading({"cose": b64url_encode(COSE_VECTOR)})
    assert (r.envelope_kind, r.id, r.cose) == ("cose", DIGEST, COSE_VECTOR)
    for bad, field in [
        ({"cose": b64url_encode(COSE_VECTOR) + "="}, "cose"),
        ({"cose": "*" + b64url_encode(COSE_VECTOR)}, "cose"),
        ({"cose": 7}, "cose"),
        ({"cose": b64url_encode(COSE_VECTOR), "alg": "EdDSA"}, "reading"),
        ({"cose": b64url_encode(COSE_VECTOR[1:])}, "cose"),
    ]:
        with pytest.raises(InvalidReading) as err:
            parse_reading(bad)
        assert err.value.field == field
