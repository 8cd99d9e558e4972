"""docs/troubleshooting.md against the messages the code prints, in both directions, and the error tree."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import pytest

from borobridge import errors
from borobridge.errors import BridgeError
from tests.support.troubleshooting import CODE, DOC, ROOT, entries

SOURCES: Final = sorted(
    path for path in (ROOT / "borobridge").rglob("*.py") if "simulator" not in path.relative_to(ROOT).parts
)  # the simulator's messages are Boro's, not the bridge's
ENTRY_LABELS: Final = ("**You see**", "**It means**", "**Do**")


@dataclass(frozen=True)
class Message:
    """The literal parts of a message passed to a borobridge error, and where."""

    where: str
    pieces: list[str]


def literal_pieces(node: ast.AST) -> list[str]:
    """The fixed text of every string literal under ``node``; f-strings give the parts between placeholders."""
    return [child.value for child in ast.walk(node) if isinstance(child, ast.Constant) and isinstance(child.value, str)]


def source_pieces() -> list[str]:
    return [piece for path in SOURCES for piece in literal_pieces(ast.parse(path.read_text(encoding="utf-8")))]


def error_classes() -> dict[str, type[BridgeError]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BridgeError)
    }


def error_messages() -> Iterator[Message]:
    """Every construction of a borobridge error in borobridge/ whose arguments hold literal text."""
    names = set(error_classes())
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
                pieces = [piece for arg in node.args for piece in literal_pieces(arg) if piece.strip()]
                if pieces:
                    yield Message(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}", pieces)


@pytest.fixture(scope="module")
def pieces() -> list[str]:
    return source_pieces()


def test_every_entry_quotes_a_message_and_says_what_to_do() -> None:
    found = entries()
    assert len(found) >= 40
    for entry in found:
        assert entry.fragments, f"an entry without a quoted message: {entry.text.splitlines()[0]}"
        for label in ENTRY_LABELS:
            assert label in entry.text, f"{entry.text.splitlines()[0]}: missing {label}"


def test_every_quoted_message_is_still_printed(pieces: list[str]) -> None:
    stale = [f for entry in entries() for f in entry.fragments if not any(f in piece for piece in pieces)]
    assert stale == [], "docs/troubleshooting.md quotes messages no longer in borobridge/"


def test_every_error_message_is_explained() -> None:
    fragments = [fragment for entry in entries() for fragment in entry.fragments]
    undocumented = [
        f"{message.where}: {message.pieces}"
        for message in error_messages()
        if not any(fragment in piece for fragment in fragments for piece in message.pieces)
    ]
    assert undocumented == [], "errors raised with a message docs/troubleshooting.md does not explain"


def test_the_scan_finds_the_errors_raised() -> None:
    where = {message.where.rpartition(" ")[2] for message in error_messages()}
    assert {"ConfigError", "BoroReplyError", "KafkaDeliveryError", "TopicPolicyError", "FencedError"} <= where
    assert {"CheckpointError", "SinkError", "BoroTransportError"} <= where


def test_the_error_table_matches_the_error_tree(pieces: list[str]) -> None:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").split("## Error classes", 1)[1].splitlines():
        if line.startswith("| `"):
            name, kind, retried, cause = (cell.strip() for cell in line.strip().strip("|").split(" | "))
            rows[name.strip("`")] = (kind.strip("`"), retried, CODE.findall(cause))
    classes = error_classes()
    assert sorted(rows) == sorted(classes)
    for name, (kind, retried, causes) in rows.items():
        assert kind == classes[name].kind, name
        assert retried == ("yes" if classes[name].retriable else "no"), name
        assert all(any(cause in piece for piece in pieces) for cause in causes), name
