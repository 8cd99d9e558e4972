"""``borobridge COMMAND --help`` describes every option and shows examples."""

from __future__ import annotations

import argparse

import pytest

from borobridge.cli import _parser

DOCUMENTED = ["run", "check-config", "tail", "replay", "schemas"]  # simulate's options are described elsewhere


def command(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices[name]
    return found


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_option_is_described(name: str) -> None:
    undescribed = [action.dest for action in command(name)._actions if not action.help]
    assert undescribed == []


@pytest.mark.parametrize("name", DOCUMENTED)
def test_help_ends_with_examples_of_the_command(name: str) -> None:
    epilog = command(name).epilog or ""
    assert epilog.startswith("examples:\n")
    assert f"  borobridge {name}" in epilog
