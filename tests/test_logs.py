"""Logs: one JSON object per line when asked, on stderr, with no secret in them."""

from __future__ import annotations

import json
import logging

import pytest

from borobridge.logs import configure_logging
from borobridge.settings import LoggingSettings, load_settings


def test_json_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(level="INFO", format="json"))
    try:
        logging.getLogger("borobridge.test").info("stream %s opened at token %s", "boro-1/23", 42)
        logging.getLogger("borobridge.test").debug("not shown at INFO")
    finally:
        logging.getLogger().handlers.clear()
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "borobridge.test"
    assert entry["message"] == "stream boro-1/23 opened at token 42"


def test_settings_never_show_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(None, {"BOROBRIDGE_BORO__HMAC__KEY": "c2VjcmV0LWtleS1mb3ItYm9ybw=="})
    with caplog.at_level(logging.INFO):
        logging.getLogger("borobridge.test").info("effective settings: %s", settings)
    assert "c2VjcmV0" not in caplog.text
    assert "**********" in caplog.text
