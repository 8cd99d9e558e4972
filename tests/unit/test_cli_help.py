"""``borobridge COMMAND --help`` describes every option and shows examples."""

from __future__ import annotations

import argparse

import pytest

from borobridge.cli import _parser

DOCUMENTED = ["run", "check-config", "tail", "replay", "schemas"]
COMMANDS = [*DOCUMENTED, "simulate"]  # simulate's epilog shows one example of its flags


def command(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices[name]
    return found


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_described(name: str) -> None:
    undescribed = [action.dest for action in command(name)._actions if not action.help]
    assert undescribed == []


@pytest.mark.parametrize("name", DOCUMENTED)
def test_help_ends_with_examples_of_the_command(name: str) -> None:
    epilog = command(name).epilog or ""
    assert epilog.startswith("examples:\n")
    assert f"  borobridge {name}" in epilog


def test_replay_help_describes_its_period_projects_dry_run_progress_and_interruption() -> None:
    text = " ".join(command("replay").format_help().split())  # as wrapped at any terminal width
    for option in ("--since", "--until", "--project", "--dry-run", "--progress-every", "--progress-events"):
        assert f" {option} " in text, option
    assert "a duration back from now (30m, 2h, 1d)" in text
    assert "repeatable" in text
    assert "borobridge replay --config borobridge.yaml --since 2h" in text
    assert "Ctrl-C stops it (exit status 130) with the --since value that finishes the job" in text
