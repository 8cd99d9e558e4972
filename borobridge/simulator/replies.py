"""What the simulated server sends back: a status, headers, a body and how long to wait before sending it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

_JSON_HEADERS = {"content-type": "application/json"}


class SimReply(msgspec.Struct, frozen=True):
    """What the server answers: the HTTP layer waits ``delay`` seconds before sending it."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay: float = 0.0


def json_reply(status: int, document: Any, headers: Mapping[str, str] | None = None) -> SimReply:
    return SimReply(status, {**_JSON_HEADERS, **(headers or {})}, msgspec.json.encode(document))


def page_count(total: int, limit: int) -> int:
    return -(-total // limit)
