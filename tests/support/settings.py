"""The one place tests and benchmarks build a bridge's settings, environment or configuration file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from borobridge.settings import Settings, load_settings


def bridge_settings(url: str, tmp_path: Path, **overrides: str) -> Settings:
    environ = {
        "BOROBRIDGE_BORO__URL": url,
        "BOROBRIDGE_BORO__USER_ID": "4",
        "BOROBRIDGE_BORO__POLL_INTERVAL": "0.1",
        "BOROBRIDGE_BORO__RETRY__INITIAL_BACKOFF": "0.01",
        "BOROBRIDGE_BORO__RETRY__MAX_BACKOFF": "0.1",
        "BOROBRIDGE_FIRST_START__MODE": "all",
        "BOROBRIDGE_OUTPUT__PATH": str(tmp_path / "events.jsonl"),
        "BOROBRIDGE_STATE__PATH": str(tmp_path / "state.json"),
        "BOROBRIDGE_HEALTH__ENABLED": "false",
    }
    return load_settings(None, environ | overrides)


QUIET: Final = {"health": {"enabled": False}, "logging": {"level": "WARNING"}}


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A configuration file for the ``borobridge`` command: health off, warnings and worse logged."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(QUIET | config), encoding="utf-8")
    return path
