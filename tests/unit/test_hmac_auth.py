"""APIAuth HMAC-SHA256 signing: the public test vector, round trips and every refusal."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borobridge.boro import hmac_auth

VECTOR_CANONICAL = (
    "POST,application/json,OniJqRAkzQHN8KgmAZm/yT5dP94m8CmVVaSTRVg/ptQ=,/ctrl_api/v1/json,Thu, 25 Aug 2022 04:27:52 GMT"
)
VECTOR_SECRET = "AGnO/VenzHB9xkLYZG1i70kQ9iyFBBvugGXSFyTQaB0="
VECTOR_SIGNATURE = "vPI9MMRwBZLWNrCcnLnbJjZRna0+XP7yFMhc9KMUFdw="
VECTOR_DATE = datetime(2022, 8, 25, 4, 27, 52, tzinfo=UTC)
URI = "/ctrl_api/v1/json"
KEY = hmac_auth.decode_key(VECTOR_SECRET)
KEYS = {"4": KEY}


def test_public_vector_signature_is_reproduced() -> None:
    assert hmac_auth.sign(VECTOR_CANONICAL, KEY) == VECTOR_SIGNATURE


def test_canonical_string_joins_the_five_parts_like_the_vector() -> None:
    canonical = hmac_auth.canonical_string(
        "post", "application/json", "OniJqRAkzQHN8KgmAZm/yT5dP94m8CmVVaSTRVg/ptQ=", URI, "Thu, 25 Aug 2022 04:27:52 GMT"
    )
    assert canonical == VECTOR_CANONICAL


def test_http_date_is_rfc7231() -> None:
    assert hmac_auth.http_date(VECTOR_DATE) == "Thu, 25 Aug 2022 04:27:52 GMT"
    moscow = VECTOR_DATE.astimezone(timezone(timedelta(hours=3)))
    assert hmac_auth.http_date(moscow) == "Thu, 25 Aug 2022 04:27:52 GMT"


def test_content_sha256_is_base64_of_the_digest() -> None:
    assert hmac_auth.content_sha256(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_decode_key_reads_hex_and_base64_alike() -> None:
    assert hmac_auth.decode_key(KEY.hex()) == KEY
    assert hmac_auth.decode_key(KEY.hex().upper()) == KEY
    assert hmac_auth.decode_key(f"  {VECTOR_SECRET}\n") == KEY
    assert len(KEY) == 32


@pytest.mark.parametrize("text", ["not base64!", "", "abc"])
def test_decode_key_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="API key"):
        hmac_auth.decode_key(text)


def test_signed_headers_carry_the_vector_signature_for_the_vector_request() -> None:
    body = b'{"user_id":4}'
    headers = hmac_auth.signed_headers("POST", URI, body, "4", KEY, VECTOR_DATE)
    assert headers["Content-Type"] == "application/json"
    assert headers["Date"] == "Thu, 25 Aug 2022 04:27:52 GMT"
    assert headers["X-Authorization-Content-SHA256"] == hmac_auth.content_sha256(body)
    canonical = hmac_auth.canonical_string(
        "POST", "application/json", hmac_auth.content_sha256(body), URI, headers["Date"]
    )
    assert headers["Authorization"] == f"APIAuth-HMAC-SHA256 4:{hmac_auth.sign(canonical, KEY)}"


def signed(body: bytes = b"{}", when: datetime = VECTOR_DATE, key: bytes = KEY) -> dict[str, str]:
    return hmac_auth.signed_headers("POST", URI, body, "4", key, when)


def test_verify_accepts_a_fresh_signature_with_any_header_case() -> None:
    headers = {name.upper(): value for name, value in signed().items()}
    assert hmac_auth.verify("POST", URI, headers, b"{}", keys=KEYS, now=VECTOR_DATE + timedelta(seconds=59)) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: h.pop("Authorization"), "missing Authorization"),
        (lambda h: h.update(Authorization="Basic abc"), "unsupported authorization scheme"),
        (lambda h: h.update(Authorization="APIAuth-HMAC-SHA256 nocolon"), "malformed Authorization"),
        (lambda h: h.update(Authorization=h["Authorization"].replace(" 4:", " 5:")), "unknown access id '5'"),
        (lambda h: h.pop("X-Authorization-Content-SHA256"), "missing X-Authorization-Content-SHA256"),
        (lambda h: h.update({"X-Authorization-Content-SHA256": "AAAA"}), "content hash does not match"),
        (lambda h: h.pop("Date"), "missing Date"),
        (lambda h: h.update(Date="yesterday"), "unreadable Date"),
        (lambda h: h.update({"Content-Type": "text/plain"}), "signature mismatch"),
    ],
)
def test_verify_names_the_reason_of_each_refusal(change: Callable[[dict[str, str]], object], reason: str) -> None:
    headers = signed()
    change(headers)
    refusal = hmac_auth.verify("POST", URI, headers, b"{}", keys=KEYS, now=VECTOR_DATE)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize("skew", [-61.0, 61.0, 3600.0])
def test_verify_refuses_signatures_older_or_newer_than_a_minute(skew: float) -> None:
    refusal = hmac_auth.verify("POST", URI, signed(), b"{}", keys=KEYS, now=VECTOR_DATE + timedelta(seconds=skew))
    assert refusal is not None
    assert "away from the server clock" in refusal


def test_verify_refuses_another_key_method_or_uri() -> None:
    other_key = base64.b64decode(base64.b64encode(b"x" * 32))
    assert hmac_auth.verify("POST", URI, signed(key=other_key), b"{}", keys=KEYS, now=VECTOR_DATE) == (
        "signature mismatch"
    )
    assert hmac_auth.verify("PUT", URI, signed(), b"{}", keys=KEYS, now=VECTOR_DATE) == "signature mismatch"
    assert hmac_auth.verify("POST", URI + "?x=1", signed(), b"{}", keys=KEYS, now=VECTOR_DATE) == "signature mismatch"


@given(body=st.binary(max_size=512), flip=st.integers(min_value=0, max_value=511))
def test_any_body_round_trips_and_any_changed_byte_is_refused(body: bytes, flip: int) -> None:
    headers = signed(body)
    assert hmac_auth.verify("POST", URI, headers, body, keys=KEYS, now=VECTOR_DATE) is None
    if body:
        index = flip % len(body)
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        assert hmac_auth.verify("POST", URI, headers, tampered, keys=KEYS, now=VECTOR_DATE) is not None
