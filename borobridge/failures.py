"""How a command ends on an expected failure: one line on stderr and a documented exit status, no traceback.

The bridge runs its loops in task groups, which wrap an error in exception groups as deep as the groups nest
(the embedded simulator's server is one more level). The error that stopped the bridge is found at any depth.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
from typing import Final

from borobridge.errors import BridgeError, ConfigError

EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


def expected_failure(error: BaseException) -> BaseException | None:
    """The BridgeError, or the interruption, behind ``error`` at any depth of exception groups; else None.

    A non-retriable BridgeError (the reason the bridge stopped) wins over retriable ones that ended alongside it.
    """
    leaves = list(_leaves(error))
    for wanted in (_is_stopping_error, _is_bridge_error, _is_interruption):
        found = next((leaf for leaf in leaves if wanted(leaf)), None)
        if found is not None:
            return found
    return None


def describe(failure: BaseException, interrupted: str) -> tuple[str, int]:
    """The line to print and the exit status for an error :func:`expected_failure` returned."""
    if isinstance(failure, ConfigError):
        return str(failure), EXIT_CONFIG
    if isinstance(failure, BridgeError):
        return f"borobridge: {failure}", EXIT_FAILURE
    return f"borobridge: {interrupted}", EXIT_INTERRUPTED


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _is_stopping_error(error: BaseException) -> bool:
    return isinstance(error, BridgeError) and not error.retriable


def _is_bridge_error(error: BaseException) -> bool:
    return isinstance(error, BridgeError)


def _is_interruption(error: BaseException) -> bool:
    return isinstance(error, KeyboardInterrupt | asyncio.CancelledError)
