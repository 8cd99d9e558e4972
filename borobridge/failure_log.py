"""Failures that repeat every attempt, said once: at WARNING when they start or change, at INFO when they end.

A refusal no retry cures (a wrong user, URL or signature) or a discovery that keeps failing would otherwise log the
same line at every attempt. Each place that fails (the poll cycle, a stream, discovery) has a key; what failed
there is compared by :func:`signature`, so a different failure is said again, and the same one only at DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from borobridge.errors import BoroHTTPError, BoroReplyError, BridgeError, SinkError


def signature(error: BridgeError) -> str:
    """What failed, without what changes from one attempt to the next (an item's place in a batched request)."""
    if isinstance(error, BoroReplyError):
        return f"{error.method}: {error.problem}"
    if isinstance(error, BoroHTTPError):
        return f"HTTP {error.status}"
    if isinstance(error, SinkError):  # one outage fails each attempt with other details: the sink's kind says it
        return error.kind
    return str(error)


class FailureLog:
    """Logs each run of the same failure at one place once, and its end once."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._failing: dict[str, str] = {}

    def failed(
        self,
        key: str,
        error: BridgeError,
        message: str,
        *args: object,
        once: bool = True,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``message``: at WARNING, or at DEBUG when ``once`` and ``key`` already failed the same way.

        ``once=False`` logs at WARNING every time and ends the run (such a failure is said at every attempt).
        ``extra`` adds fields to the record (``stream``, ``project``; the error's ``kind`` is always added).
        """
        known = self._failing.get(key)
        if once:
            self._failing[key] = signature(error)
        else:
            self._failing.pop(key, None)
        repeated = once and known == self._failing[key]
        fields = {"kind": error.kind, **(extra or {})}
        self._logger.log(logging.DEBUG if repeated else logging.WARNING, message, *args, stacklevel=2, extra=fields)

    def ended(self, key: str, message: str, *args: object) -> None:
        """``key`` works again: log ``message`` at INFO if a run of failures was said there."""
        if self._failing.pop(key, None) is not None:
            self._logger.info(message, *args, stacklevel=2)
