"""The start-up line that tells an operator what a first start reading its history first costs, and when it is said."""

from __future__ import annotations

import datetime as dt

import pytest

from borobridge.app import history_first_trade_off
from borobridge.settings import FirstStartSettings

SINCE = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("mode", ["since", "all"])
def test_history_read_first_names_the_wait_and_the_other_choice(mode: str) -> None:
    advice = history_first_trade_off(FirstStartSettings(mode=mode, since=SINCE))  # type: ignore[arg-type]
    assert advice is not None
    assert f"first_start.mode {mode} with first_start.history first" in advice
    assert "live alarms, which wait for it" in advice
    assert "first_start.history: beside delivers them at once" in advice
    assert "order across the history boundary" in advice


@pytest.mark.parametrize(
    "first_start",
    [
        FirstStartSettings(mode="now"),
        FirstStartSettings(mode="all", history="beside"),
        FirstStartSettings(mode="since", since=SINCE, history="beside"),
    ],
    ids=["now", "all-beside", "since-beside"],
)
def test_nothing_to_say_without_a_history_read_first(first_start: FirstStartSettings) -> None:
    assert history_first_trade_off(first_start) is None
