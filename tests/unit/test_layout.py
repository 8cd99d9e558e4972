"""The suite's layout: every test module in one layer, no test module leaning on another, brokers only in one.

Helpers two modules share belong in tests/support; a test needing Kafka or Mosquitto belongs in tests/broker, so
``scripts/test tests/unit`` and ``scripts/test tests/component`` never start a broker.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).parents[2]
TESTS: Final = ROOT / "tests"
LAYERS: Final = ("unit", "component", "broker")
TEST_MODULE: Final = re.compile(r"(^|\.)test_\w+$")
BROKER_MARKERS: Final = {"kafka", "mqtt", "chaos"}
BROKER_FIXTURES: Final = {
    "kafka",
    "kafka_cluster",
    "kafka_tls",
    "mosquitto",
    "mosquitto_password",
    "mosquitto_acl",
    "mosquitto_tls",
}


def python_files(*directories: Path) -> list[Path]:
    return sorted(path for directory in directories for path in directory.rglob("*.py") if ".venv" not in path.parts)


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    return modules


def broker_needs(path: Path) -> set[str]:
    """The broker markers a module applies and the broker fixtures its tests ask for."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in BROKER_MARKERS and _is_mark(node.value):
            found.add(f"pytest.mark.{node.attr}")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            arguments = {argument.arg for argument in node.args.args}
            found |= {f"fixture {name}" for name in arguments & BROKER_FIXTURES}
    return found


def _is_mark(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "mark"


def test_no_module_imports_from_a_test_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(TESTS, ROOT / "bench")
        for module in sorted(imported_modules(path))
        if module.startswith("tests.") and TEST_MODULE.search(module)
    ]
    assert not offenders, "shared helpers belong in tests/support:\n" + "\n".join(offenders)


def test_every_test_module_sits_in_a_layer() -> None:
    layers = {(layer,) for layer in LAYERS}
    misplaced = [
        str(path.relative_to(ROOT))
        for path in python_files(TESTS)
        if path.name.startswith("test_") and path.parent.relative_to(TESTS).parts not in layers
    ]
    assert not misplaced, f"move these into tests/{{{','.join(LAYERS)}}}/: {misplaced}"


def test_only_broker_tests_need_a_broker() -> None:
    needs = {
        str(path.relative_to(ROOT)): sorted(broker_needs(path))
        for layer in ("unit", "component")
        for path in python_files(TESTS / layer)
        if path.name.startswith("test_")
    }
    offenders = {module: found for module, found in needs.items() if found}
    assert not offenders, f"move these into tests/broker: {offenders}"
