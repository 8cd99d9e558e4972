"""Logging set-up: one line per meaningful event, as text or JSON; no payloads at INFO."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from typing import Final

import msgspec

from borobridge.kafka import CLIENT_LOGGER
from borobridge.settings import LoggingSettings

_ENCODER: Final = msgspec.json.Encoder()
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


FIELDS: Final = ("stream", "project", "kind")  # set through ``extra=`` where the log call knows them
QUIETED: Final = (CLIENT_LOGGER, "aiomqtt", "mqtt", "paho")  # third-party loggers that repeat a line per attempt
REPEAT_WINDOW: Final = 60.0


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the fields in :data:`FIELDS` the record carries,
    and the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as a JSON line."""
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {field: getattr(record, field) for field in FIELDS if hasattr(record, field)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry).decode()


class RepeatFilter(logging.Filter):
    """Lets the first of a repeated third-party line through, then suppresses its repeats for ``window`` seconds.

    A line repeats when the same logger logs the same message template at the same level (the Kafka client
    says "Unable connect to node" at every reconnection attempt). The first line after the window says how many
    were suppressed. Loggers other than those named by ``prefixes`` pass untouched.
    """

    def __init__(
        self, prefixes: tuple[str, ...], window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._window = window
        self._clock = clock
        self._said: dict[tuple[str, int, str], tuple[float, int]] = {}  # key → (when said, repeats suppressed since)

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat within the window; the next line let through carries the count."""
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        said = self._said.get(key)
        if said is not None and now - said[0] < self._window:
            self._said[key] = (said[0], said[1] + 1)
            return False
        self._said[key] = (now, 0)
        if said is not None and said[1]:
            record.msg = f"{record.getMessage()} ({said[1]} more like it suppressed in {self._window:g} s)"
            record.args = ()
        return True


def configure_logging(settings: LoggingSettings) -> None:
    """Send logs to stderr (stdout carries events in the embedded default)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RepeatFilter(QUIETED))  # on the handler: a logger's filter skips its children's records
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in ("httpx", "httpcore", CLIENT_LOGGER, "hypercorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
