"""The committer's own record of its cursors against a re-read of the checkpoint topic."""

from __future__ import annotations

import pytest

from borobridge.checkpoint import Checkpoint
from borobridge.errors import FencedError
from borobridge.kafka.checkpoints import CommittedCursors

MOVED = r"another borobridge instance named 'plant-a' moved the cursor of stream 's/1'; this one stops"


def at(token: int, stream: str = "s/1", committed_at: float = 1.0) -> Checkpoint:
    return Checkpoint(stream=stream, update_token=token, committed_at=committed_at)


def cursors(*known: Checkpoint) -> CommittedCursors:
    tracked = CommittedCursors()
    tracked.restored({checkpoint.stream: checkpoint for checkpoint in known})
    return tracked


def test_nothing_moved_meanwhile() -> None:
    tracked = cursors(at(1), at(5, "s/2"))
    tracked.committed([at(2)])
    assert tracked.adopt({"s/1": at(2), "s/2": at(5, "s/2")}, "plant-a") is False


def test_a_round_given_up_on_that_was_committed_after_all() -> None:
    tracked = cursors(at(1))
    tracked.given_up([at(2)])
    assert tracked.adopt({"s/1": at(2)}, "plant-a") is True
    assert tracked.adopt({"s/1": at(2)}, "plant-a") is False, "once adopted, the round is no longer in doubt"


def test_a_round_given_up_on_that_was_not_committed() -> None:
    tracked = cursors(at(1))
    tracked.given_up([at(2)])
    assert tracked.adopt({"s/1": at(1)}, "plant-a") is False


@pytest.mark.parametrize(
    "found",
    [
        {"s/1": at(3)},
        {"s/1": at(2, committed_at=9.0)},  # the same position, written by another instance
        {"s/1": at(1), "s/9": at(1, "s/9")},  # a stream this instance never wrote
        {},
    ],
)
def test_a_cursor_moved_by_another_instance_stops_this_one(found: dict[str, Checkpoint]) -> None:
    tracked = cursors(at(1))
    tracked.given_up([at(2)])
    with pytest.raises(FencedError, match=MOVED if "s/9" not in found else "stream 's/9'"):
        tracked.adopt(found, "plant-a")


def test_never_restored_compares_nothing() -> None:
    assert CommittedCursors().adopt({"s/1": at(3)}, "plant-a") is False
