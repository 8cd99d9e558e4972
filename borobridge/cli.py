"""The ``borobridge`` command: run, simulate, check-config, schemas, tail, replay."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from borobridge import __version__
from borobridge.errors import BridgeError, ConfigError
from borobridge.logs import configure_logging
from borobridge.settings import KafkaSettings, LoggingSettings, Settings, load_settings, settings_to_builtins

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

    tail = commands.add_parser("tail", help="follow the committed alarm events in Kafka")
    tail.add_argument("--config", type=Path, help="YAML configuration file with a kafka section")
    tail.add_argument("--project", help="only this project id")
    tail.add_argument("--task", help="only this task id")
    tail.add_argument("--level", choices=["ok", "warning", "error", "major", "fatal"], help="only this severity")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest retained event")
    tail.add_argument("--max", type=int, help="stop after this many events")
    tail.add_argument("--idle-exit", type=float, help="stop after this many seconds without events")
    tail.set_defaults(handler=_tail)

    replay = commands.add_parser("replay", help="re-emit a past period from Boro into Kafka (same event ids)")
    replay.add_argument("--config", type=Path, help="YAML configuration file with boro and kafka sections")
    replay.add_argument("--since", required=True, type=_moment, help="start, RFC 3339 or Unix time")
    replay.add_argument("--until", type=_moment, help="end, RFC 3339 or Unix time (default: now)")
    replay.set_defaults(handler=_replay)

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
        raise _first_error(group) from None
    return 0


def _first_error(group: BaseExceptionGroup[BridgeError]) -> BridgeError:
    """The first error of a group, found through the groups that nested task groups wrap around it."""
    first: BridgeError | BaseExceptionGroup[BridgeError] = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


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


def _tail(args: argparse.Namespace) -> int:
    from borobridge.tail import TailFilter, tail  # noqa: PLC0415 - only this command needs Kafka here

    kafka = _kafka_settings(_load(args))
    chosen = TailFilter(project=args.project, task=args.task, level=args.level)
    run = tail(kafka, chosen, from_beginning=args.from_beginning, limit=args.max, idle_exit=args.idle_exit)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from borobridge.app import server_name  # noqa: PLC0415 - only this command needs the bridge
    from borobridge.replay import ReplayProgress, replay  # noqa: PLC0415

    settings = _load(args)
    configure_logging(settings.logging)

    def show(progress: ReplayProgress) -> None:
        if sys.stderr.isatty():
            when = dt.datetime.fromtimestamp(progress.reached, dt.UTC).isoformat(timespec="seconds")
            print(f"\rproject {progress.project_id}: up to {when}, {progress.events} events", end="", file=sys.stderr)

    sent = asyncio.run(
        replay(settings, args.since, args.until, server_name=server_name(settings, settings.boro.url), progress=show)
    )
    print(f"\nreplayed {sent} events" if sys.stderr.isatty() else f"replayed {sent} events", file=sys.stderr)
    return 0


def _kafka_settings(settings: Settings) -> KafkaSettings:
    if settings.kafka is None:
        raise ConfigError(["kafka: this command reads Kafka; set kafka.bootstrap_servers"])
    return settings.kafka


def _moment(text: str) -> int:
    """An RFC 3339 time or a Unix time, as Unix seconds."""
    if text.isdigit():
        return int(text)
    try:
        return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an RFC 3339 time or Unix seconds, got {text!r}") from exc


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file, os.environ)
    print(yaml.safe_dump(settings_to_builtins(settings), sort_keys=False), end="")
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from borobridge.schemas import write  # noqa: PLC0415 - only this command needs it

    for path in write(args.out):
        print(path)
    return 0
