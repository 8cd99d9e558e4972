"""The one place tests and benchmarks build a bridge's settings, environment or configuration file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from borobridge.settings import Settings, load_settings

SIMULATED_BORO: Final = "http://boro.test/ctrl_api/v1/json"  # any URL does for httpx.MockTransport
QUICK: Final = {
    "BOROBRIDGE_BORO__POLL_INTERVAL": "0.1",
    "BOROBRIDGE_BORO__RETRY__INITIAL_BACKOFF": "0.01",
    "BOROBRIDGE_BORO__RETRY__MAX_BACKOFF": "0.1",
    "BOROBRIDGE_FIRST_START__MODE": "all",
    "BOROBRIDGE_HEALTH__ENABLED": "false",
}


def boro_environ(url: str = SIMULATED_BORO, **overrides: str) -> dict[str, str]:
    """The ``BOROBRIDGE_*`` variables of a bridge reading ``url`` as user 4, the defaults otherwise (benchmarks)."""
    return {"BOROBRIDGE_BORO__URL": url, "BOROBRIDGE_BORO__USER_ID": "4"} | overrides


def bridge_environ(url: str = SIMULATED_BORO, directory: Path | None = None, **overrides: str) -> dict[str, str]:
    """:func:`boro_environ` quick to test: a poll every 0.1 s, short backoffs, every record from the start, health
    off; JSON lines and state in ``directory`` when given. ``overrides`` win."""
    environ = boro_environ(url) | QUICK
    if directory is not None:
        environ["BOROBRIDGE_OUTPUT__PATH"] = str(directory / "events.jsonl")
        environ["BOROBRIDGE_STATE__PATH"] = str(directory / "state.json")
    return environ | overrides


def bridge_settings(url: str = SIMULATED_BORO, directory: Path | None = None, **overrides: str) -> Settings:
    """The settings of :func:`bridge_environ`, loaded and checked the way ``borobridge run`` does."""
    return load_settings(None, bridge_environ(url, directory, **overrides))


QUIET: Final = {"health": {"enabled": False}, "logging": {"level": "WARNING"}}


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A configuration file for the ``borobridge`` command: health off, warnings and worse logged."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(QUIET | config), encoding="utf-8")
    return path
