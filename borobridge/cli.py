"""The ``borobridge`` command: run, simulate, check-config, schemas."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from borobridge import __version__
from borobridge.errors import BridgeError, ConfigError
from borobridge.logs import configure_logging
from borobridge.settings import LoggingSettings, Settings, load_settings, settings_to_builtins

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    except BridgeError as error:
        print(f"borobridge: {error}", file=sys.stderr)
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="borobridge", description="Elecard Boro alarms as CloudEvents.")
    parser.add_argument("--version", action="version", version=f"borobridge {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="poll Boro and publish alarm transitions")
    run.add_argument("--config", type=Path, help="YAML configuration file (default: the embedded default)")
    run.add_argument("--output", help="write JSON lines to this file instead of stdout")
    run.add_argument("--state", help="local cursor file (default: borobridge-state.json)")
    run.set_defaults(handler=_run)

    simulate = commands.add_parser("simulate", help="serve the built-in Boro simulator over HTTP")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8000)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--projects", type=int, default=2)
    simulate.add_argument("--rate", type=float, default=5.0, help="record changes per second")
    simulate.add_argument("--token-mode", choices=["sequence", "timestamp"], default="sequence")
    simulate.set_defaults(handler=_simulate)

    check = commands.add_parser("check-config", help="validate a configuration file and print it, secrets masked")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_check_config)

    schemas = commands.add_parser("schemas", help="write the JSON Schemas into a directory")
    schemas.add_argument("--out", type=Path, default=Path("schemas"))
    schemas.set_defaults(handler=_schemas)
    return parser


def _load(args: argparse.Namespace) -> Settings:
    environ = dict(os.environ)
    if getattr(args, "output", None):
        environ["BOROBRIDGE_OUTPUT__PATH"] = args.output
    if getattr(args, "state", None):
        environ["BOROBRIDGE_STATE__PATH"] = args.state
    return load_settings(args.config, environ)


def _run(args: argparse.Namespace) -> int:
    from borobridge.app import run_bridge  # noqa: PLC0415 - keeps check-config free of I/O libraries

    settings = _load(args)
    configure_logging(settings.logging)
    try:
        asyncio.run(run_bridge(settings))
    except* BridgeError as group:
        raise group.exceptions[0] from None
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from borobridge.boro.simulator_http import run_simulator  # noqa: PLC0415 - only this command needs it

    configure_logging(LoggingSettings())
    asyncio.run(
        run_simulator(
            host=args.host,
            port=args.port,
            seed=args.seed,
            projects=args.projects,
            rate_per_second=args.rate,
            token_mode=args.token_mode,
        )
    )
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file, os.environ)
    print(yaml.safe_dump(settings_to_builtins(settings), sort_keys=False), end="")
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from borobridge.schemas import write  # noqa: PLC0415 - only this command needs it

    for path in write(args.out):
        print(path)
    return 0
