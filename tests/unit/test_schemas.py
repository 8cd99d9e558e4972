"""The committed JSON Schemas and AsyncAPI document are exactly what the code generates; the schemas are valid."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import msgspec
import pytest

from borobridge.boro.models import AlarmDocument, AlarmRecord
from borobridge.schemas import generate

SCHEMAS = Path(__file__).parents[2] / "schemas"


@pytest.mark.parametrize(("name", "content"), sorted(generate().items()))
def test_committed_schema_matches_the_code(name: str, content: bytes) -> None:
    committed = SCHEMAS / name
    assert committed.exists(), f"{name} is missing: run `borobridge schemas`"
    assert committed.read_bytes() == content, f"{name} is stale: run `borobridge schemas` and commit"


def test_no_stray_schema_files() -> None:
    assert sorted(path.name for path in SCHEMAS.glob("*.json")) == sorted(generate())


@pytest.mark.parametrize("content", [content for name, content in generate().items() if name != "asyncapi.json"])
def test_schema_is_valid_draft_2020_12(content: bytes) -> None:
    jsonschema.Draft202012Validator.check_schema(msgspec.json.decode(content))


def test_the_documented_record_agrees_with_the_view_the_bridge_decodes() -> None:
    """Every field the bridge reads is documented, required alike, so the schema describes what it reads."""
    documented = {field.name: field for field in msgspec.structs.fields(AlarmDocument)}
    for field in msgspec.structs.fields(AlarmRecord):
        assert field.name in documented, field.name
        assert field.required == documented[field.name].required, field.name
