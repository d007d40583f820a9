"""attestation.valuation: price points (format, signatures, freshness), loan terms, and the arithmetic."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestation.encoding import b64url_encode, canonical_json
from attestation.documents import document_hash
from attestation.valuation import (
    InvalidPricePoint,
    InvalidTerms,
    PriceFromFuture,
    PriceSignatureInvalid,
    PriceStale,
    check_fresh,
    convert_quantity,
    parse_price_point,
    parse_terms,
    value_lot,
    verify_price_point,
)

TERMS = {"loan_value": "20000.00", "currency": "CNY", "commodity": "steel_hrc", "haircut": "0.70",
         "warning_ltv": "0.80", "disposal_ltv": "0.90", "min_quantity": 6000, "cure_period_s": 86400}  # fmt: skip
ED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
P256_KEY = ec.derive_private_key(0xFEED, ec.SECP256R1())


def pem(key) -> str:  # type: ignore[no-untyped-def]
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signed(payload: dict, key=ED_KEY, alg: str = "EdDSA") -> dict:  # type: ignore[no-untyped-def]
    message = canonical_json(payload)
    if alg == "EdDSA":
        sig = key.sign(message)
    else:
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return {"payload": payload, "alg": alg, "sig": b64url_encode(sig)}


def payload(**over: object) -> dict:
    return {"feed": "mysteel-hrc", "commodity": "steel_hrc", "price": "3650.00", "currency": "CNY", "unit": "t",
            "ts": "2026-11-22T08:00:00Z", **over}  # fmt: skip


def test_value_ltv_and_levels_in_exact_decimals() -> None:
    terms = parse_terms(TERMS)
    ok = value_lot(quantity=10_000, unit="kg", price=Decimal("3650.00"), price_unit="t", currency="CNY", terms=terms)
    assert ok.market_value == Decimal("36500") and ok.collateral_value == Decimal("25550")
    assert ok.ltv is not None and abs(ok.ltv - Decimal(20000) / Decimal(25550)) < Decimal("1e-27") and ok.level == "ok"
    assert ok.as_dict()["ltv"] == "0.782779" and ok.as_dict()["collateral_value"] == "25550.00"
    warning = value_lot(quantity=10_000, unit="kg", price=Decimal("3500"), price_unit="t", currency="CNY", terms=terms)
    assert warning.level == "warning" and warning.as_dict()["ltv"] == "0.816327"
    disposal = value_lot(quantity=10_000, unit="kg", price=Decimal("3100"), price_unit="t", currency="CNY", terms=terms)
    assert disposal.level == "disposal"
    # exactly on the warning line is not above it: 16000 / (1 t × 25000 × 0.80) = 0.8
    line_terms = parse_terms({**TERMS, "loan_value": "16000", "haircut": "0.80"})
    on_line = value_lot(quantity=1, unit="t", price=Decimal("25000"), price_unit="t", currency="CNY", terms=line_terms)
    assert on_line.ltv == Decimal("0.8") and on_line.level == "ok"
    above = value_lot(quantity=1, unit="t", price=Decimal("24999.99"), price_unit="t", currency="CNY", terms=line_terms)
    assert above.level == "warning"
    # cash paid in to cure a call reduces the outstanding loan
    paid = value_lot(quantity=10_000, unit="kg", price=Decimal("3500"), price_unit="t", currency="CNY", terms=terms,
                     paid_in=Decimal("2000"))  # fmt: skip
    assert paid.outstanding == Decimal("18000") and paid.level == "ok"
    # nothing left to value while money is owed: disposal
    assert value_lot(quantity=0, unit="kg", price=Decimal(1), price_unit="t", currency="CNY", terms=terms).level == "disposal"
    with pytest.raises(ValueError, match="USD"):
        value_lot(quantity=1, unit="t", price=Decimal(1), price_unit="t", currency="USD", terms=terms)


def test_kg_and_tonnes_convert_exactly() -> None:
    """Fraud case 13 (kg vs t): a lot counted in t and a price per kg give the same value as the reverse."""
    assert convert_quantity(10_000, "kg", "t") == Decimal(10)
    assert convert_quantity(3, "t", "kg") == Decimal(3000)
    terms = parse_terms(TERMS)
    per_t = value_lot(quantity=10, unit="t", price=Decimal("3650"), price_unit="t", currency="CNY", terms=terms)
    per_kg = value_lot(quantity=10_000, unit="kg", price=Decimal("3.65"), price_unit="kg", currency="CNY", terms=terms)
    assert per_t.market_value == per_kg.market_value == Decimal(36500)
    with pytest.raises(ValueError, match="unit"):
        convert_quantity(1, "lb", "kg")


def test_terms_are_validated_field_by_field() -> None:
    terms = parse_terms(TERMS)
    assert terms.document() == TERMS and terms.cure_period_s == 86400
    bad = {
        "loan_value": 20000.0,  # a JSON number: refused (no float rounding)
        "haircut": "1.5",
        "warning_ltv": "0.95",  # not below the disposal line
        "cure_period_s": 60,  # shorter than the contract's minimum
        "min_quantity": -1,
        "currency": "cny",
    }
    for field, value in bad.items():
        with pytest.raises(InvalidTerms) as exc:
            parse_terms({**TERMS, field: value})
        assert exc.value.code == "invalid_terms" and exc.value.field == f"terms.{field}", field
    with pytest.raises(InvalidTerms, match="missing"):
        parse_terms({k: v for k, v in TERMS.items() if k != "haircut"})
    with pytest.raises(InvalidTerms, match="unknown"):
        parse_terms({**TERMS, "interest": "0.05"})
    # the on-chain terms hash is keccak-256 of the RFC 8785 bytes: key order does not matter
    assert document_hash(TERMS) == document_hash(dict(reversed(list(TERMS.items()))))
    assert document_hash(TERMS) != document_hash({**TERMS, "haircut": "0.7"})


@pytest.mark.parametrize("alg,key", [("EdDSA", ED_KEY), ("ES256", P256_KEY)])
def test_price_point_signature_checked_with_the_feed_key(alg: str, key) -> None:  # type: ignore[no-untyped-def]
    point = parse_price_point(signed(payload(), key, alg))
    assert (point.feed, point.commodity, point.price, point.unit) == ("mysteel-hrc", "steel_hrc", Decimal("3650.00"), "t")
    assert point.id == __import__("hashlib").sha256(canonical_json(payload())).hexdigest()
    verify_price_point(point, alg=alg, public_key_pem=pem(key))
    other = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32) if alg == "EdDSA" else ec.derive_private_key(7, ec.SECP256R1())
    with pytest.raises(PriceSignatureInvalid) as wrong:
        verify_price_point(point, alg=alg, public_key_pem=pem(other))
    assert wrong.value.code == "price_signature_invalid"
    tampered = signed(payload(), key, alg)
    tampered["payload"]["price"] = "9999.00"  # a better price after signing
    with pytest.raises(PriceSignatureInvalid):
        verify_price_point(parse_price_point(tampered), alg=alg, public_key_pem=pem(key))


def test_unsigned_and_malformed_price_points_refused() -> None:
    with pytest.raises(PriceSignatureInvalid) as unsigned:
        parse_price_point({"payload": payload()})
    assert unsigned.value.code == "price_signature_invalid"
    with pytest.raises(PriceSignatureInvalid):
        verify_price_point(parse_price_point(signed(payload())), alg="ES256", public_key_pem=pem(P256_KEY))
    for field, value in {"price": 3650.0, "unit": "lb", "currency": "yuan", "ts": "2026-11-22 08:00", "commodity": "Steel"}.items():
        with pytest.raises(InvalidPricePoint) as exc:
            parse_price_point(signed(payload(**{field: value})))
        assert exc.value.field == f"payload.{field}", field
    with pytest.raises(InvalidPricePoint, match="greater than zero"):
        parse_price_point(signed(payload(price="0")))
    with pytest.raises(InvalidPricePoint, match="unknown"):
        parse_price_point(signed({**payload(), "v": 1}))


def test_freshness() -> None:
    ts = datetime(2026, 11, 22, 8, tzinfo=timezone.utc)
    check_fresh(ts, now=ts + timedelta(hours=23), max_age_s=86400, max_future_skew_s=300)
    with pytest.raises(PriceStale) as stale:
        check_fresh(ts, now=ts + timedelta(days=1, seconds=1), max_age_s=86400, max_future_skew_s=300)
    assert stale.value.code == "price_stale"
    with pytest.raises(PriceFromFuture):
        check_fresh(ts, now=ts - timedelta(minutes=6), max_age_s=86400, max_future_skew_s=300)
