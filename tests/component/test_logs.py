"""Logs: one JSON object per line when asked (with the stream, project and error kind as fields), on stderr, with
no secret in them, and third-party floods quieted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from borobridge.logs import RepeatFilter, configure_logging
from borobridge.settings import LoggingSettings, load_settings
from borobridge.simulator import serve_simulator
from tests.support.bad_input import refusing
from tests.support.pipelines import bridge


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


class SteppedClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_third_party_line_is_said_once_per_window_with_the_count() -> None:
    clock = SteppedClock()
    kept: list[str] = []
    repeats = RepeatFilter(("aiokafka",), window=60.0, clock=clock)
    noisy, ours = logging.getLogger("aiokafka.conn"), logging.getLogger("borobridge.test")
    for _ in range(50):
        for logger in (noisy, ours):
            record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "Unable connect to node %s", (1,), None)
            if repeats.filter(record):
                kept.append(f"{record.name}: {record.getMessage()}")
        clock.now += 1.0
    clock.now = 61.0
    record = noisy.makeRecord(noisy.name, logging.ERROR, __file__, 1, "Unable connect to node %s", (1,), None)
    assert repeats.filter(record)
    assert kept.count("aiokafka.conn: Unable connect to node 1") == 1
    assert kept.count("borobridge.test: Unable connect to node 1") == 50
    assert record.getMessage() == "Unable connect to node 1 (49 more like it suppressed in 60 s)"


def test_configured_logging_quiets_a_flood_of_aiokafka_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(level="INFO", format="text"))
    try:
        for attempt in range(200):
            logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s: %s", 1, f"try {attempt}")
    finally:
        logging.getLogger().handlers.clear()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "Unable connect to node with id 1: try 0" in lines[0]


async def test_json_lines_carry_stream_project_and_kind_as_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, overrides, _ = refusing("user_id")
    configure_logging(LoggingSettings(level="INFO", format="json"))
    try:
        async with serve_simulator(sim) as url, bridge(url, tmp_path, overrides=overrides) as pipeline:
            await pipeline.poll_once()
    finally:
        logging.getLogger().handlers.clear()
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    failed = [entry for entry in entries if "read failed, position stays at" in entry["message"]]
    assert {(entry["stream"], entry["project"], entry["kind"]) for entry in failed} == {
        ("boro-test/23", 23, "boro_reply"),
        ("boro-test/24", 24, "boro_reply"),
    }
    assert all(entry["stream"] in entry["message"] for entry in failed)
