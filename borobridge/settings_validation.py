"""Validation of raw configuration data that reports every fault with its path, not only the first."""

from __future__ import annotations

import json
import re
import types
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from borobridge.secret import MASK, Secret

_TYPE_WORDS = {
    "float": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
    "datetime": "an RFC 3339 time",
}


class convert_hooks:  # noqa: N801 - a namespace of hooks, named like the module functions it groups
    """Hooks that teach msgspec the Secret type."""

    @staticmethod
    def decode(kind: type, value: Any) -> Any:
        """Build a Secret from the string the configuration gives."""
        if kind is Secret and isinstance(value, str | int):
            return Secret(str(value))
        raise NotImplementedError(f"cannot convert {type(value).__name__} to {kind.__name__}")

    @staticmethod
    def encode(value: Any) -> Any:
        """Print a Secret as its mask."""
        if isinstance(value, Secret):
            return MASK
        raise NotImplementedError(f"cannot encode {type(value).__name__}")

    @staticmethod
    def schema(kind: type) -> dict[str, Any]:
        """Describe a Secret in the JSON Schema as a write-only string."""
        if kind is Secret:
            return {"type": "string", "writeOnly": True, "description": "a secret; never printed"}
        raise NotImplementedError(kind.__name__)


def collect_errors(raw: Any, struct_type: type[msgspec.Struct], path: str = "") -> list[str]:
    """Return one ``path: expected …, got …`` line per fault in ``raw`` against ``struct_type``."""
    if not isinstance(raw, dict):
        return [f"{path or '(top level)'}: expected a mapping, got {_show(raw)}"]
    fields = {field.encode_name: field for field in msgspec.structs.fields(struct_type)}
    errors = [
        f"{path}{key}: unknown key; expected one of {', '.join(sorted(fields))}" for key in raw if key not in fields
    ]
    for name, field in fields.items():
        if name not in raw:
            if field.required:
                errors.append(f"{path}{name}: required, missing")
            continue
        errors += _field_errors(raw[name], field.type, f"{path}{name}")
    return errors


def _field_errors(value: Any, annotation: Any, path: str) -> list[str]:
    nested = _struct_in(annotation)
    if nested is not None and isinstance(value, dict):
        return collect_errors(value, nested, path + ".")
    try:
        msgspec.convert(value, annotation, strict=False, dec_hook=convert_hooks.decode)
    except msgspec.ValidationError as exc:
        where = _where(exc)
        return [f"{path}{where}: {_explain(exc, annotation, _value_at(value, where))}"]
    return []


def _struct_in(annotation: Any) -> type[msgspec.Struct] | None:
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
                return arg
    return None


def _where(exc: msgspec.ValidationError) -> str:
    match = re.search(r" - at `\$(.*)`$", str(exc))
    return match.group(1) if match else ""


def _value_at(value: Any, where: str) -> Any:
    for index, key in re.findall(r"\[(\d+)\]|\.(\w+)", where):
        if index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        elif key and isinstance(value, dict) and key in value:
            value = value[key]
    return value


def _literal_choices(annotation: Any) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(arg) for arg in get_args(annotation)]
    return [choice for arg in get_args(annotation) for choice in _literal_choices(arg)]


def _explain(exc: msgspec.ValidationError, annotation: Any, value: Any) -> str:
    message = re.sub(r" - at `\$.*`$", "", str(exc))
    if message.startswith("Invalid enum value"):
        message = "expected one of " + ", ".join(_literal_choices(annotation))
    message = re.sub(r", got `\w+`$", "", message)
    for word, phrase in _TYPE_WORDS.items():
        message = message.replace(f"`{word}`", phrase)
    message = message[:1].lower() + message[1:]
    return f"{message}, got {_show(value)}"


def _show(value: Any) -> str:
    if isinstance(value, Secret):
        return MASK
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)
