"""APIAuth HMAC-SHA256 request signing, as Boro's optional "Verify HMAC signatures" setting expects.

The signature is the base64 HMAC-SHA256, keyed with the user's API key, of the canonical string
``METHOD,Content-Type,Content-SHA256,Request-URI,Date``. It travels in
``Authorization: APIAuth-HMAC-SHA256 <access-id>:<signature>``; the body hash is also sent as
``X-Authorization-Content-SHA256`` and the date as an RFC 7231 ``Date`` header. Pure functions only: the Boro
client signs with them and the simulator verifies with them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

SCHEME = "APIAuth-HMAC-SHA256"
CONTENT_TYPE = "application/json"
CONTENT_HASH_HEADER = "X-Authorization-Content-SHA256"
DEFAULT_MAX_AGE = 60.0

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def content_sha256(body: bytes) -> str:
    """Base64 of the SHA-256 digest of ``body``."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def canonical_string(method: str, content_type: str, content_sha256: str, request_uri: str, date: str) -> str:
    """The string that gets signed: ``METHOD,Content-Type,Content-SHA256,Request-URI,Date``."""
    return ",".join((method.upper(), content_type, content_sha256, request_uri, date))


def sign(canonical: str, key: bytes) -> str:
    """Base64 HMAC-SHA256 of ``canonical`` under ``key``."""
    digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def decode_key(text: str) -> bytes:
    """Turn an API key as written in configuration into bytes.

    Boro does not document the key's encoding, so both are accepted: exactly 64 hexadecimal characters are read
    as hex (a 32-byte key), anything else as standard base64. Raises ``ValueError`` when it is neither.
    """
    stripped = text.strip()
    if _HEX_KEY.fullmatch(stripped):
        return bytes.fromhex(stripped)
    try:
        key = base64.b64decode(stripped, validate=True)
    except binascii.Error as error:
        raise ValueError("the API key is neither 64 hex characters nor valid base64") from error
    if not key:
        raise ValueError("the API key is empty")
    return key


def http_date(now: datetime) -> str:
    """``now`` as an RFC 7231 IMF-fixdate, e.g. ``Thu, 25 Aug 2022 04:27:52 GMT``."""
    return format_datetime(now.astimezone(UTC), usegmt=True)


def signed_headers(  # noqa: PLR0917 - positional in canonical-string order, like the helpers above
    method: str, uri: str, body: bytes, access_id: str, key: bytes, now: datetime
) -> dict[str, str]:
    """The four headers that sign one request: Content-Type, Date, the content hash and Authorization."""
    body_hash = content_sha256(body)
    date = http_date(now)
    signature = sign(canonical_string(method, CONTENT_TYPE, body_hash, uri, date), key)
    return {
        "Content-Type": CONTENT_TYPE,
        "Date": date,
        CONTENT_HASH_HEADER: body_hash,
        "Authorization": f"{SCHEME} {access_id}:{signature}",
    }


def verify(
    method: str,
    uri: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    keys: Mapping[str, bytes],
    now: datetime,
    max_age: float = DEFAULT_MAX_AGE,
) -> str | None:
    """Check a signed request: ``None`` when it is valid, else a sentence naming why it is refused.

    ``headers`` may use any letter case; ``keys`` maps access ids to keys; ``now`` must be timezone-aware.
    A request whose ``Date`` is more than ``max_age`` seconds away from ``now`` (either way) is refused.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    credentials = _parse_authorization(lowered.get("authorization"))
    if isinstance(credentials, str):
        return credentials
    access_id, signature = credentials
    key = keys.get(access_id)
    if key is None:
        return f"unknown access id {access_id!r}"
    problem = _content_hash_problem(lowered, body) or _date_problem(lowered.get("date"), now, max_age)
    if problem:
        return problem
    canonical = canonical_string(method, lowered.get("content-type", ""), content_sha256(body), uri, lowered["date"])
    if not hmac.compare_digest(sign(canonical, key), signature):
        return "signature mismatch"
    return None


def _parse_authorization(value: str | None) -> tuple[str, str] | str:
    """(access id, signature) from the Authorization header, or the reason it cannot be read."""
    if not value:
        return "missing Authorization header"
    scheme, _, credentials = value.strip().partition(" ")
    if scheme != SCHEME:
        return f"unsupported authorization scheme {scheme!r}, expected {SCHEME}"
    access_id, colon, signature = credentials.strip().rpartition(":")
    if not colon or not access_id or not signature:
        return "malformed Authorization header, expected '<access-id>:<signature>'"
    return access_id, signature


def _content_hash_problem(lowered: Mapping[str, str], body: bytes) -> str | None:
    sent = lowered.get(CONTENT_HASH_HEADER.lower())
    if sent is None:
        return f"missing {CONTENT_HASH_HEADER} header"
    if not hmac.compare_digest(sent, content_sha256(body)):
        return "content hash does not match the body"
    return None


def _date_problem(date: str | None, now: datetime, max_age: float) -> str | None:
    if not date:
        return "missing Date header"
    try:
        sent = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return f"unreadable Date header {date!r}"
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    age = abs((now - sent).total_seconds())
    if age > max_age:
        return f"request date is {age:.0f} s away from the server clock (limit {max_age:.0f} s)"
    return None
