"""Request parsing: the envelope, each call's parameters and the TaskAlarms query they make."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeGuard

import msgspec

from borobridge.simulator.catalogue import LEVELS, TRIGGER_GROUPS
from borobridge.simulator.store import Entry
from borobridge.simulator.world import JSON

DEFAULT_LIMIT = 25
MAX_LIMIT = 100


class BadRequestError(ValueError):
    """The envelope itself is unusable: HTTP 400."""


class ParamError(ValueError):
    """One call's parameters are wrong: an error item."""


class Call(NamedTuple):
    method: str
    call_id: Any
    has_id: bool
    params: JSON


class AlarmFilter(NamedTuple):
    period_from: int | None = None
    period_to: int | None = None
    level: str | None = None
    groups: frozenset[str] | None = None
    names: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class AlarmQuery:
    project_id: int
    task_ids: frozenset[int]
    active_only: bool
    limit: int
    page: int
    token: float | None
    filter: AlarmFilter
    raw_token: float | int = 0

    def in_project_and_period(self, entry: Entry) -> bool:
        wanted = self.filter
        return (
            entry.alarm.project_id == self.project_id
            and (wanted.period_from is None or entry.updated_at >= wanted.period_from)
            and (wanted.period_to is None or entry.updated_at <= wanted.period_to)
        )

    def matches(self, entry: Entry) -> bool:
        alarm, wanted = entry.alarm, self.filter
        return (
            alarm.project_id == self.project_id
            and alarm.task_id in self.task_ids
            and (not self.active_only or alarm.active is True)
            and (wanted.period_from is None or entry.updated_at >= wanted.period_from)
            and (wanted.period_to is None or entry.updated_at <= wanted.period_to)
            and (wanted.level is None or alarm.level == wanted.level)
            and (wanted.groups is None or alarm.trigger_group in wanted.groups)
            and (wanted.names is None or alarm.name in wanted.names)
        )


def parse_envelope(body: bytes) -> tuple[int, list[Call]]:
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise BadRequestError(f"request body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise BadRequestError("request body must be a JSON object")
    user_id = document.get("user_id")
    if not _is_int(user_id):
        raise BadRequestError("user_id must be an integer")
    methods = document.get("methods")
    if not isinstance(methods, list) or not methods:
        raise BadRequestError("methods must be a non-empty list")
    return user_id, [_parse_call(item) for item in methods]


def _parse_call(item: Any) -> Call:
    if not isinstance(item, dict) or not isinstance(item.get("method"), str):
        raise BadRequestError("every entry of methods must be an object with a string 'method'")
    params = item.get("params", {})
    if not isinstance(params, dict):
        raise BadRequestError(f"params of {item['method']} must be an object")
    return Call(item["method"], item.get("id"), "id" in item, params)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def int_param(params: JSON, key: str, default: int | None = None, minimum: int | None = None) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if not _is_int(value):
        raise ParamError(f"{key} must be an integer")
    if minimum is not None and value < minimum:
        raise ParamError(f"{key} must be at least {minimum}")
    return int(value)


def required_int(params: JSON, key: str) -> int:
    value = int_param(params, key)
    if value is None:
        raise ParamError(f"{key} is required")
    return value


def choice_param(params: JSON, key: str, allowed: Sequence[str], default: str | None) -> str | None:
    value = params.get(key, default)
    if value is not None and value not in allowed:
        raise ParamError(f"{key} must be one of {', '.join(allowed)}")
    return value


def id_selector(value: Any, key: str, every: Iterable[int]) -> frozenset[int]:
    """``id``, ``[id, ...]`` or ``"*"`` (``every``) as a set of ids."""
    if value == "*":
        return frozenset(every)
    if _is_int(value):
        return frozenset((value,))
    if isinstance(value, list) and all(_is_int(item) for item in value):
        return frozenset(value)
    raise ParamError(f'{key} must be an integer, a list of integers or "*"')


def _name_list(raw: JSON, key: str, allowed: Sequence[str] | None) -> frozenset[str] | None:
    value = raw.get(key)
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ParamError(f"filter.{key} must be a list of strings")
    unknown = sorted(set(value) - set(allowed)) if allowed is not None else []
    if unknown:
        raise ParamError(f"filter.{key} has unknown values: {', '.join(unknown)}")
    return frozenset(value)


def parse_filter(raw: Any) -> AlarmFilter:
    if raw is None:
        return AlarmFilter()
    if not isinstance(raw, dict):
        raise ParamError("filter must be an object")
    period_from = int_param(raw, "period_from")
    period_to = int_param(raw, "period_to")
    if period_from == 0:
        raise ParamError("filter.period_from must not be 0")
    if period_from is not None and period_to is not None and period_to <= period_from:
        raise ParamError("filter.period_to must be greater than filter.period_from")
    level = choice_param(raw, "level", LEVELS, None)
    groups = _name_list(raw, "trigger_groups", TRIGGER_GROUPS)
    return AlarmFilter(period_from, period_to, level, groups, _name_list(raw, "trigger_names", None))


def token_param(params: JSON) -> float | None:
    token = params.get("update_token")
    if token is None:
        return None
    if isinstance(token, bool) or not isinstance(token, int | float) or not math.isfinite(token):
        raise ParamError("update_token must be a number")
    return float(token)
