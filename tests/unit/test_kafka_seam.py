"""The Kafka client library stays behind one seam: only borobridge/kafka imports aiokafka."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

PACKAGE: Final = Path(__file__).parents[2] / "borobridge"
SEAM: Final = PACKAGE / "kafka"


def imported_modules(source: str) -> set[str]:
    """The top-level names of every module an ``import`` or ``from ... import`` statement in ``source`` names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module.partition(".")[0])
    return found


def test_the_scan_sees_every_form_of_import() -> None:
    source = "import aiokafka.admin\nfrom aiokafka.errors import KafkaError\ndef f():\n    import aiokafka as k\n"
    assert imported_modules(source) == {"aiokafka"}
    assert imported_modules("from . import kafka\nimport borobridge\n") == {"borobridge"}


def test_no_module_outside_the_kafka_package_imports_aiokafka() -> None:
    outside = [path for path in PACKAGE.rglob("*.py") if SEAM not in path.parents]
    importers = [
        str(path.relative_to(PACKAGE)) for path in outside if "aiokafka" in imported_modules(path.read_text("utf-8"))
    ]
    assert importers == [], "import aiokafka in borobridge/kafka only, behind a typed adapter"


def test_the_kafka_package_is_where_aiokafka_is_used() -> None:
    inside = [path for path in SEAM.rglob("*.py") if "aiokafka" in imported_modules(path.read_text("utf-8"))]
    assert inside, "the scan found no importer at all: it looks in the wrong place"
