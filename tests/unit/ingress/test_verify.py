"""Webhook authentication: Tradecloud Basic/Bearer and the Apicbase HMAC (pure)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingress import verify
from services.ingress.verify import (
    ApicbaseSignature,
    AuthenticationRequired,
    SignatureMismatch,
    TradecloudAuth,
    reserialized,
    sign,
)
from tests.support.files import SAMPLES, fixture, fixture_bytes, samples_available

USER, PASSWORD, TOKEN = b"tradecloud", "pässword".encode(), b"tok-123"


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


BOTH = TradecloudAuth(username=USER, password=PASSWORD, token=TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer tok-123",
        "bearer tok-123",
        "BEARER  tok-123 ",
        basic(USER, PASSWORD),
        "basic " + base64.b64encode(USER + b":" + PASSWORD).decode(),
    ],
)
def test_tradecloud_accepts_either_configured_scheme(header: str) -> None:
    BOTH.check(header)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Bearer tok-1234", "wrong bearer token"),
        ("Bearer ", "wrong bearer token"),
        (basic(USER, b"wrong"), "wrong user name or password"),
        (basic(b"someone", PASSWORD), "wrong user name or password"),
        ("Basic not-base64!!", "wrong user name or password"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "wrong user name or password"),
        ("Digest abc", "unsupported authorization scheme: use Basic or Bearer"),
        ("tok-123", "unsupported authorization scheme: use Basic or Bearer"),
    ],
)
def test_tradecloud_refuses_with_401_reasons(header: str | None, reason: str) -> None:
    with pytest.raises(AuthenticationRequired) as caught:
        BOTH.check(header)
    assert str(caught.value) == reason
    assert "Basic" in caught.value.challenge and "Bearer" in caught.value.challenge
    assert "tok-123" not in str(caught.value) and "pässword" not in str(caught.value)


def test_tradecloud_only_accepts_the_configured_scheme() -> None:
    token_only = TradecloudAuth(token=TOKEN)
    token_only.check("Bearer tok-123")
    with pytest.raises(AuthenticationRequired, match="use Bearer"):
        token_only.check(basic(USER, PASSWORD))
    assert token_only.challenge == 'Bearer realm="orderbridge"'
    basic_only = TradecloudAuth(username=USER, password=PASSWORD)
    basic_only.check(basic(USER, PASSWORD))
    with pytest.raises(AuthenticationRequired, match="use Basic"):
        basic_only.check("Bearer tok-123")


def test_tradecloud_without_credentials_is_closed_unless_insecure() -> None:
    with pytest.raises(AuthenticationRequired, match="not configured"):
        TradecloudAuth().check("Bearer anything")
    TradecloudAuth(allow_anonymous=True).check(None)
    # Configured credentials are still checked in the insecure mode.
    with pytest.raises(AuthenticationRequired):
        TradecloudAuth(token=TOKEN, allow_anonymous=True).check(None)


# ---------------------------------------------------------------- Apicbase

VECTORS = fixture("apicbase/signatures.json")
KEY = VECTORS["key"].encode()
COMPACT = fixture_bytes("apicbase/purchase-order.json")
PRETTY = fixture_bytes("apicbase/purchase-order.pretty-utf8.json")


def test_fixture_vectors_are_what_they_claim() -> None:
    assert sign(KEY, COMPACT) == VECTORS["purchase-order.json"]
    assert sign(KEY, PRETTY) == VECTORS["purchase-order.pretty-utf8.json"]
    assert reserialized(PRETTY) == COMPACT  # the compact fixture is json.dumps output
    assert b"\\u00e8" in COMPACT and "è".encode() in PRETTY


@pytest.mark.parametrize(
    ("body", "signature", "form"),
    [
        (COMPACT, VECTORS["purchase-order.json"], "raw"),
        (PRETTY, VECTORS["purchase-order.pretty-utf8.json"], "raw"),
        # Apicbase signs json.dumps of the parsed body; the bytes sent are pretty UTF-8.
        (PRETTY, VECTORS["reserialized pretty (json.dumps(json.loads(pretty)))"], "reserialized"),
        (COMPACT, VECTORS["purchase-order.json"].upper(), "raw"),
        (COMPACT, "  " + VECTORS["purchase-order.json"] + "\t", "raw"),
    ],
)
def test_apicbase_signature_forms(body: bytes, signature: str, form: str) -> None:
    assert ApicbaseSignature.of([KEY]).check(body, signature) == form


def test_apicbase_secret_rotation_accepts_any_configured_secret() -> None:
    signature = VECTORS["purchase-order.json"]
    assert ApicbaseSignature.of([b"new-secret", KEY]).check(COMPACT, signature) == "raw"
    assert ApicbaseSignature.of([KEY, b"new-secret"]).check(COMPACT, signature) == "raw"
    with pytest.raises(SignatureMismatch):
        ApicbaseSignature.of([b"new-secret"]).check(COMPACT, signature)


def test_apicbase_refuses_changed_content_and_bad_headers() -> None:
    checker = ApicbaseSignature.of([KEY])
    good = VECTORS["purchase-order.json"]
    tampered = COMPACT.replace(b'"1383.3678901234567890"', b'"1383.3678901234567891"')
    assert tampered != COMPACT
    with pytest.raises(SignatureMismatch, match="does not match"):
        checker.check(tampered, good)
    with pytest.raises(SignatureMismatch, match="does not match"):
        checker.check(b"not json at all", sign(KEY, b"other"))
    with pytest.raises(SignatureMismatch, match="64 hex digits"):
        checker.check(COMPACT, good[:-1])
    with pytest.raises(SignatureMismatch, match="64 hex digits"):
        checker.check(COMPACT, "sha256=" + good)
    with pytest.raises(AuthenticationRequired, match="missing X-APIC-WEBHOOK-SIGNATURE"):
        checker.check(COMPACT, None)
    with pytest.raises(AuthenticationRequired, match="not configured"):
        ApicbaseSignature.of([]).check(COMPACT, good)
    assert ApicbaseSignature.of([], allow_anonymous=True).check(COMPACT, None) == "unchecked"


def test_apicbase_errors_never_contain_the_expected_signature() -> None:
    expected = sign(KEY, COMPACT)
    with pytest.raises(SignatureMismatch) as caught:
        ApicbaseSignature.of([KEY]).check(COMPACT, "0" * 64)
    assert expected not in str(caught.value)
    assert KEY.decode() not in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(document=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_any_reformatting_of_the_signed_json_is_accepted(document: dict[str, object]) -> None:
    signed = json.dumps(document).encode()
    signature = sign(KEY, signed)
    sent = json.dumps(document, indent=2, ensure_ascii=False).encode()
    assert ApicbaseSignature.of([KEY]).check(sent, signature) in {"raw", "reserialized"}


@pytest.mark.skipif(not samples_available(), reason=f"steering-kit samples not found at {SAMPLES}")
def test_the_vectors_published_with_the_samples() -> None:
    sources = (SAMPLES / "SOURCES.md").read_text()
    key = re.search(r"key = `([^`]+)`", sources)
    digests = re.findall(r"`([0-9a-f]{64})`", sources)
    assert key is not None and len(digests) >= 2
    compact = (SAMPLES / "constructed/apicbase-purchase-order.constructed.json").read_bytes()
    pretty = (
        SAMPLES / "constructed/apicbase-purchase-order.pretty-utf8.constructed.json"
    ).read_bytes()
    checker = ApicbaseSignature.of([key.group(1).encode()])
    assert checker.check(compact, digests[0]) == "raw"
    assert checker.check(pretty, digests[1]) == "raw"
    assert checker.check(pretty, digests[0]) == "reserialized"


def _pretty_order(size: int) -> bytes:
    """A pretty-printed JSON object of at least ``size`` bytes (its signed form is compact)."""
    return json.dumps({"id": "po-1", "padding": "x" * size}, indent=2).encode()


def test_the_reserialized_form_is_tried_for_order_sized_bodies() -> None:
    body = _pretty_order(verify.RESERIALIZED_MAX_BYTES - 200)
    assert len(body) <= verify.RESERIALIZED_MAX_BYTES
    signature = sign(KEY, json.dumps(json.loads(body)).encode())
    assert ApicbaseSignature.of([KEY]).check(body, signature) == "reserialized"


def test_large_or_non_object_bodies_never_pay_for_the_reserialized_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bogus signature on a big body costs one HMAC per secret, no parse (no amplification)."""
    calls: list[int] = []
    original = verify.reserialized

    def counted(body: bytes) -> bytes | None:
        calls.append(len(body))
        return original(body)

    monkeypatch.setattr(verify, "reserialized", counted)
    checker = ApicbaseSignature.of([KEY])
    big = _pretty_order(verify.RESERIALIZED_MAX_BYTES + 1)
    for body in (big, b'[\n  "not",\n  "an order"\n]', b"15 MiB of anything" * 10):
        signature = (
            sign(KEY, json.dumps(json.loads(body)).encode()) if body[:1] in b"{[" else "0" * 64
        )
        with pytest.raises(SignatureMismatch):
            checker.check(body, signature)
    assert calls == []
    assert checker.check(big, sign(KEY, big)) == "raw"  # the raw form has no bound
