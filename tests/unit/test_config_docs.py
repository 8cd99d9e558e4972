"""docs/configuration.md against the configuration's JSON Schema: every key, default, choice and variable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import yaml

from borobridge.schemas import generate

DOC: Final = Path(__file__).parents[2] / "docs" / "configuration.md"
HEADING: Final = re.compile(r"^#{2,3} (?:`(?P<section>[a-z0-9_.]+)`|Top level)\s*$")
ROW: Final = re.compile(r"^\| `(?P<key>[a-z0-9_.]+)` \|")
COLUMNS: Final = ["key", "type", "default", "environment variable", "meaning"]


@dataclass(frozen=True)
class Leaf:
    """A configuration key that holds a value (not a section)."""

    schema: dict[str, Any]
    required: bool


@dataclass(frozen=True)
class Row:
    """One table row of the doc, and the section heading it stands under ("" for the top level)."""

    section: str
    cells: list[str]

    @property
    def key(self) -> str:
        return self.cells[0].strip("`")


def config_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.decode(generate()["config.schema.json"])
    return schema


def walk(schema: dict[str, Any]) -> tuple[dict[str, Leaf], set[str]]:
    """Every value key by dotted path, and every section path, of the schema."""
    defs = schema["$defs"]
    leaves: dict[str, Leaf] = {}
    sections: set[str] = set()

    def visit(definition: str, prefix: str) -> None:
        required = set(defs[definition].get("required", []))
        for name, prop in defs[definition]["properties"].items():
            path = f"{prefix}{name}"
            nested = _section_ref(prop)
            if nested is None:
                leaves[path] = Leaf(prop, name in required)
            else:
                sections.add(path)
                visit(nested, path + ".")

    visit(schema["$ref"].rpartition("/")[2], "")
    return leaves, sections


def _section_ref(prop: dict[str, Any]) -> str | None:
    for candidate in [prop, *prop.get("anyOf", [])]:
        if "$ref" in candidate:
            ref: str = candidate["$ref"]
            return ref.rpartition("/")[2]
    return None


def enum_values(schema: Any) -> set[str]:
    """Every enumerated choice anywhere inside a property's schema."""
    if isinstance(schema, list):
        return {value for item in schema for value in enum_values(item)}
    if not isinstance(schema, dict):
        return set()
    found = {str(value) for value in schema.get("enum", [])}
    return found | {value for item in schema.values() for value in enum_values(item)}


def doc_structure() -> tuple[list[Row], list[str]]:
    """The table rows and the section headings of the doc, in order."""
    rows: list[Row] = []
    headings: list[str] = []
    section: str | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if heading := HEADING.match(line):
            section = heading["section"] or ""
            headings.append(section)
        elif line.startswith("## "):
            section = None
        elif ROW.match(line):
            assert section is not None, f"a key row outside a section: {line}"
            rows.append(Row(section, [cell.strip() for cell in line.strip().strip("|").split(" | ")]))
    return rows, headings


def documented(schema_keys: tuple[dict[str, Leaf], set[str]], rows: dict[str, Row]) -> list[tuple[str, Leaf]]:
    """The keys both in the schema and in the doc (the others fail test_every_key_is_documented_and_no_other)."""
    leaves, _ = schema_keys
    return [(key, leaf) for key, leaf in leaves.items() if key in rows]


@pytest.fixture(scope="module")
def schema_keys() -> tuple[dict[str, Leaf], set[str]]:
    return walk(config_schema())


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    found, _ = doc_structure()
    keys = [row.key for row in found]
    assert sorted(keys) == sorted(set(keys)), "a key is documented twice"
    return {row.key: row for row in found}


def test_every_key_is_documented_and_no_other(
    schema_keys: tuple[dict[str, Leaf], set[str]], rows: dict[str, Row]
) -> None:
    leaves, _ = schema_keys
    assert sorted(set(leaves) - set(rows)) == [], "keys of the configuration missing from docs/configuration.md"
    assert sorted(set(rows) - set(leaves)) == [], "docs/configuration.md names keys the configuration lacks"


def test_every_section_has_a_heading_and_its_keys_stand_under_it(
    schema_keys: tuple[dict[str, Leaf], set[str]], rows: dict[str, Row]
) -> None:
    _, sections = schema_keys
    _, headings = doc_structure()
    assert sorted(headings) == sorted({"", *sections})
    for key, row in rows.items():
        assert row.section == key.rpartition(".")[0], f"{key} is documented under the section {row.section!r}"


def test_each_table_has_the_five_columns() -> None:
    text = DOC.read_text(encoding="utf-8")
    _, headings = doc_structure()
    header = "| " + " | ".join(COLUMNS) + " |"
    assert text.count(header) == len(headings)
    rows, _ = doc_structure()
    for row in rows:
        assert len(row.cells) == len(COLUMNS), f"{row.key}: expected {len(COLUMNS)} cells, got {row.cells}"


def test_defaults_are_the_configuration_defaults(
    schema_keys: tuple[dict[str, Leaf], set[str]], rows: dict[str, Row]
) -> None:
    for key, leaf in documented(schema_keys, rows):
        cell = rows[key].cells[2]
        if leaf.required:
            assert cell == "required", f"{key} is required, the doc says {cell}"
            continue
        assert re.fullmatch(r"`[^`]+`", cell), f"{key}: the default should be one YAML value in backticks: {cell}"
        value = yaml.safe_load(cell.strip("`"))
        assert (value, type(value)) == (leaf.schema["default"], type(leaf.schema["default"])), key


def test_environment_variables_follow_the_key_path(rows: dict[str, Row]) -> None:
    for key, row in rows.items():
        assert row.cells[3] == f"`BOROBRIDGE_{key.upper().replace('.', '__')}`"


def test_every_choice_is_named(schema_keys: tuple[dict[str, Leaf], set[str]], rows: dict[str, Row]) -> None:
    for key, leaf in documented(schema_keys, rows):
        named = set(re.findall(r"`([^`]+)`", rows[key].cells[1]))
        assert enum_values(leaf.schema) <= named, f"{key}: choices missing from the type column"


def test_every_key_has_a_meaning(rows: dict[str, Row]) -> None:
    for key, row in rows.items():
        assert len(row.cells[4].split()) >= 3, f"{key}: explain the key in a few words"


def test_secrets_are_described_as_secrets(schema_keys: tuple[dict[str, Leaf], set[str]], rows: dict[str, Row]) -> None:
    leaves, _ = schema_keys
    secret_keys = {
        key for key, leaf in leaves.items() if '"writeOnly":true' in msgspec.json.encode(leaf.schema).decode()
    }
    assert {"boro.hmac.key", "kafka.sasl.password"} <= secret_keys
    for key in secret_keys:
        assert "secret" in rows[key].cells[1], key
        assert f"`{key.rpartition('.')[2]}_file`" in rows[key].cells[4], key
