"""The Helm chart's ``config`` value typed by the configuration's JSON Schema, so a bad key fails ``helm install``.

``python -m borobridge.chart_schema`` rewrites ``properties.config`` of the chart's ``values.schema.json`` from
``schemas/config.schema.json``; a test fails when the two differ. The chart's copy is self-contained (references
inlined, draft-07 keywords only) and differs on purpose in four ways:

- no ``required``: environment variables from the Secret may complete the file (``BOROBRIDGE_KAFKA__SASL__PASSWORD``);
- every secret (``password``, ``key``) may be given as ``<name>_file`` instead;
- ``name`` may be empty: the chart fills in the release's full name;
- the health listener must stay on, on a non-empty host and a fixed port: the probes and the Service need it.

An ``enum`` of strings also gets ``"type": "string"``, so that every value the chart sets is typed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).parents[1]
CONFIG_SCHEMA: Final = ROOT / "schemas" / "config.schema.json"
VALUES_SCHEMA: Final = ROOT / "helm" / "borobridge" / "values.schema.json"
DROPPED: Final = frozenset({"$schema", "$id", "$defs", "title", "default", "required"})
SECRET_KEYS: Final = frozenset({"password", "key"})
DESCRIPTION: Final = (
    "The borobridge configuration file, typed by schemas/config.schema.json "
    "(generated: python -m borobridge.chart_schema)."
)

Node = dict[str, Any]


def config_values_schema(config_schema: Node) -> Node:
    """The chart's schema of ``config``, from the configuration's JSON Schema."""
    schema: Node = _inlined(config_schema, config_schema.get("$defs", {}))
    schema["description"] = DESCRIPTION
    properties = schema["properties"]
    properties["name"]["pattern"] = properties["name"]["pattern"].replace("{1,", "{0,")
    health = properties["health"]["properties"]
    health["enabled"]["const"] = True
    health["host"]["minLength"] = 1
    health["port"]["minimum"] = 1
    return schema


def update(values_schema: Path = VALUES_SCHEMA, config_schema: Path = CONFIG_SCHEMA) -> None:
    """Rewrite ``properties.config`` of the chart's values schema from the configuration schema."""
    values = json.loads(values_schema.read_text(encoding="utf-8"))
    values["properties"]["config"] = config_values_schema(json.loads(config_schema.read_text(encoding="utf-8")))
    values_schema.write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _inlined(node: Any, definitions: Node) -> Any:
    """``node`` with every ``$ref`` into ``$defs`` replaced by its target, and the dropped keywords removed."""
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if reference is not None:
        target = definitions[reference.removeprefix("#/$defs/")]
        return _inlined({**target, **{k: v for k, v in node.items() if k != "$ref"}}, definitions)
    inlined = {key: _inlined(value, definitions) for key, value in node.items() if key not in DROPPED}
    if "enum" in inlined and "type" not in inlined and all(isinstance(item, str) for item in inlined["enum"]):
        inlined = {"type": "string", **inlined}
    if isinstance(inlined.get("properties"), dict):
        inlined["properties"] = _with_secret_files(inlined["properties"])
    return inlined


def _with_secret_files(properties: Node) -> Node:
    files = {
        f"{name}_file": {"type": "string", "description": f"A file holding {name} (e.g. from the mounted Secret)."}
        for name, node in properties.items()
        if name in SECRET_KEYS and _is_secret(node)
    }
    return properties | files


def _is_secret(node: Node) -> bool:
    return bool(node.get("writeOnly")) or any(_is_secret(choice) for choice in node.get("anyOf", []))


if __name__ == "__main__":
    update()
