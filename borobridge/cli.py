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
from borobridge.settings import KafkaSettings, Settings, load_settings, settings_to_builtins

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

    _add_simulate(commands)

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


SIMULATE_EPILOG = """\
Every option but --host and --port sets a key of the configuration's simulator section (docs/simulator.md):
flags win over --config FILE and BOROBRIDGE_SIMULATOR__* variables.

example: a server whose tokens are its clock at the reply, exclusive, newest first, five minutes behind,
with stopping probes, moving pages and some faults:
  borobridge simulate --port 8000 --token reply_time --token-compare exclusive --token-order newest_first \\
      --period-order newest_first --clock-offset -300 --probe-stops 0.05 --stop-seconds 20 \\
      --moving-records 0.2 --fault http_5xx=0.05 --fault repeat=0.2
"""
SIMULATOR_FLAGS = (
    "seed",
    "projects",
    "rate_per_second",
    "token_mode",
    "token_compare",
    "token_order",
    "period_order",
    "clock_offset",
    "probe_stops",
    "stop_seconds",
    "moving_records",
)
ORDERS = ["oldest_first", "newest_first"]


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="serve the built-in Boro simulator over HTTP",
        description="Serve the built-in Boro simulator over HTTP, playing one reading of the Boro API.",
        epilog=SIMULATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = simulate.add_argument
    add("--config", type=Path, metavar="FILE", help="YAML configuration file whose simulator section to use")
    add("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    add("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    add("--seed", type=int, help="seed of the simulated world (default: 1)")
    add("--projects", type=int, help="number of simulated projects (default: 2)")
    add("--rate", dest="rate_per_second", type=float, metavar="RATE", help="new records per second (default: 5)")
    tokens = ["sequence", "timestamp", "record_time", "reply_time"]
    add("--token", dest="token_mode", choices=tokens, help="what update_token is (default: sequence)")
    add("--token-mode", dest="token_mode", choices=tokens, help=argparse.SUPPRESS)
    compares = ["inclusive", "exclusive"]
    add("--token-compare", choices=compares, help="time tokens match updated_at >= or > token (default: inclusive)")
    add("--token-order", choices=ORDERS, help="order of token replies (default: oldest_first)")
    add("--period-order", choices=ORDERS, help="order of listings without a token (default: oldest_first)")
    add("--clock-offset", type=float, metavar="SECONDS", help="server clock minus host clock, ±3600 (default: 0)")
    add("--probe-stops", type=float, metavar="P", help="chance per step that a running probe stops (default: 0)")
    add("--stop-seconds", type=float, metavar="SECONDS", help="how long a stopped probe stays stopped (default: 30)")
    add("--moving-records", type=float, metavar="P", help="chance per period listing that a state clears (default: 0)")
    add(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="NAME=RATE",
        help="switch a fault on, e.g. http_5xx=0.1; repeatable (names: simulator.faults in docs/configuration.md)",
    )
    simulate.set_defaults(handler=_simulate)


def _fault(text: str) -> tuple[str, str]:
    name, equals, rate = text.partition("=")
    if not equals or not name.strip() or not rate.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=RATE, e.g. http_5xx=0.1, got {text!r}")
    return name.strip(), rate.strip()


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
    from borobridge.boro.simulator_http import (  # noqa: PLC0415 - only this command needs it
        faults_from,
        personality_from,
        run_simulator,
    )

    settings = load_settings(args.config, {**os.environ, **_simulator_flags(args)})
    configure_logging(settings.logging)
    options = settings.simulator
    asyncio.run(
        run_simulator(
            host=args.host,
            port=args.port,
            seed=options.seed,
            projects=options.projects,
            rate_per_second=options.rate_per_second,
            personality=personality_from(options),
            faults=faults_from(options),
        )
    )
    return 0


def _simulator_flags(args: argparse.Namespace) -> dict[str, str]:
    """The ``simulate`` flags given, as the environment variables of the settings they set (flags win)."""
    section = "BOROBRIDGE_SIMULATOR__"
    flags = {
        f"{section}{key.upper()}": str(getattr(args, key)) for key in SIMULATOR_FLAGS if getattr(args, key) is not None
    }
    flags |= {f"{section}FAULTS__{name.upper()}": rate for name, rate in args.fault}
    return flags


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
