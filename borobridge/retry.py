"""The one retry policy: whether to try again after an error, and after how long.

Only the error decides, through the attributes :mod:`borobridge.errors` describes: ``retriable`` (trying again can
help), ``permanent`` (only once someone changed a setting: at the longest backoff, so the other side is not
hammered) and ``retry_after`` (the other side's floor for the wait). The poll cycle, the MQTT relay and start-up
retry until stopped with :func:`retry_delay`; the Boro client repeats one request a few times with
:func:`repeat_delay`, the same rule without the permanent errors, which go straight back to the cycle.
"""

from __future__ import annotations

from borobridge.backoff import Backoff
from borobridge.errors import BridgeError


def retry_delay(error: BaseException, backoff: Backoff) -> float | None:
    """How long to wait before trying again after ``error``, counted in ``backoff``; None: do not try again."""
    if not isinstance(error, BridgeError) or not error.retriable:
        return None
    if error.permanent:
        return backoff.longest(error.retry_after)
    return backoff.next_delay(error.retry_after)


def repeat_delay(error: BaseException, backoff: Backoff) -> float | None:
    """How long to wait before repeating one request after ``error``; None: hand the error to the caller.

    A permanent error is not repeated here: its caller retries it at the longest backoff, and a request that
    waited that long would hold up every other read meanwhile.
    """
    if isinstance(error, BridgeError) and error.permanent:
        return None
    return retry_delay(error, backoff)
