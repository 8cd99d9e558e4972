"""The ``borobridge`` command: run, simulate, check-config, schemas, tail, replay."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, get_args

import yaml

from borobridge import __version__
from borobridge.errors import BridgeError, ConfigError
from borobridge.failures import EXIT_INTERRUPTED, describe, expected_failure
from borobridge.logs import configure_logging
from borobridge.preflight import check_runtime
from borobridge.replay_progress import PROGRESS_EVENTS, PROGRESS_SECONDS, Report, Throttle, moment
from borobridge.settings import (
    KafkaSettings,
    Level,
    Settings,
    load_settings,
    settings_to_builtins,
)

LEVELS: Final = get_args(Level)  # in order of severity
_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIX: Final = re.compile(r"^\d+(?:\.\d+)?$")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}

RUN_EPILOG: Final = """\
examples:
  borobridge run                                 the built-in Boro simulator, events as JSON lines on stdout
  borobridge run --output events.jsonl           the same, into a file (cut back to its last commit on restart)
  borobridge run --config borobridge.yaml        a real Boro, Kafka and MQTT as configured
  BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS=kafka-0:9092 borobridge run --config borobridge.yaml

Every configuration key can be set as BOROBRIDGE_<SECTION>__<KEY> (see docs/configuration.md).
Exit status: 0 stopped by SIGTERM or SIGINT, 1 failure, 2 invalid configuration.
"""

CHECK_EPILOG: Final = """\
examples:
  borobridge check-config borobridge.yaml
  BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS=kafka-0:9092 borobridge check-config borobridge.yaml
  borobridge check-config --connect borobridge.yaml

Besides types and ranges it refuses what would fail at run time: a malformed boro.url, unknown fields in
topic templates, kafka.bootstrap_servers that are not host:port, a state.path that cannot be written
(without Kafka), a first_start.since in the future. With --connect it then reaches each configured dependency
and prints one line each: "boro  ok: ...", "kafka failed: <reason>", "mqtt  ok: ...".
Exit status: 0 valid, 1 a dependency failed (--connect), 2 invalid.
"""

TAIL_EPILOG: Final = """\
examples:
  borobridge tail --config borobridge.yaml                       new events, one line each
  borobridge tail --config borobridge.yaml --level major         major and fatal only
  borobridge tail --config borobridge.yaml --since 1h --project 23
  borobridge tail --config borobridge.yaml --since 2026-11-20T08:00:00Z --format json --max 100
  borobridge tail --config borobridge.yaml --from-beginning --format cloudevent --idle-exit 5 > events.jsonl

Only committed events are shown (read_committed). Topics of projects that appear while tail runs are
followed from their first event. Ctrl-C stops it (exit status 0).
"""

REPLAY_EPILOG: Final = """\
examples:
  borobridge replay --config borobridge.yaml --since 2h                   the last two hours, every project
  borobridge replay --config borobridge.yaml --since 2026-11-20T00:00:00Z --until 2026-11-21T00:00:00Z
  borobridge replay --config borobridge.yaml --since 1763596800 --project 23 --project 24
  borobridge replay --config borobridge.yaml --since 1d --dry-run         count what would be sent

Replayed events have the source and id of the first delivery, so consumers recognise repeats. Progress goes
to stderr: a status line on a terminal, else a line every --progress-every seconds or --progress-events
events. Ctrl-C stops it (exit status 130) with the --since value that finishes the job.
Exit status: 0 done, 1 failure, 2 invalid configuration, 130 interrupted.
"""

SCHEMAS_EPILOG: Final = """\
examples:
  borobridge schemas                        rewrite ./schemas
  borobridge schemas --out /tmp/schemas     write them elsewhere (the directory is created when missing)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (BridgeError, BaseExceptionGroup, KeyboardInterrupt, asyncio.CancelledError) as error:
        failure = expected_failure(error)
        if failure is None:
            raise
        line, status = describe(failure, args.interrupted)
        print(line, file=sys.stderr)
        return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="borobridge", description="Elecard Boro alarms as CloudEvents.")
    parser.add_argument("--version", action="version", version=f"borobridge {__version__}")
    parser.set_defaults(interrupted="interrupted")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_run(commands)
    _add_simulate(commands)

    _add_check_config(commands)
    _add_tail(commands)
    _add_replay(commands)
    _add_schemas(commands)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, epilog: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=summary[:1].upper() + summary[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = _command(commands, "run", "poll Boro and publish alarm transitions", RUN_EPILOG)
    run.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML configuration file (default: the embedded default)"
    )
    run.add_argument("--output", metavar="FILE", help="write JSON lines to FILE instead of stdout (output.path)")
    run.add_argument(
        "--state",
        metavar="FILE",
        help="local cursor file when there is no Kafka (state.path; default: borobridge-state.json)",
    )
    run.set_defaults(handler=_run)


def _add_check_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = _command(
        commands, "check-config", "validate a configuration file and print it, secrets masked", CHECK_EPILOG
    )
    check.add_argument(
        "file", type=Path, metavar="FILE", help="YAML configuration file; BOROBRIDGE_* variables apply too"
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also reach Boro (one ProjectsList), Kafka (metadata) and MQTT (a connection): one line each, "
        "exit status 1 if any failed",
    )
    check.set_defaults(handler=_check_config)


def _add_tail(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tail = _command(commands, "tail", "follow the committed alarm events in Kafka", TAIL_EPILOG)
    tail.add_argument("--config", type=Path, metavar="FILE", help="the bridge's YAML configuration (its kafka section)")
    tail.add_argument("--project", metavar="ID", help="only events of this Boro project id")
    tail.add_argument("--task", metavar="ID", help="only events of this Boro task id")
    tail.add_argument(
        "--level", choices=LEVELS, help="only this severity or worse (order: ok, warning, error, major, fatal)"
    )
    tail.add_argument(
        "--format",
        choices=["line", "json", "cloudevent"],
        default="line",
        help="line: time, severity, transition, project/task, trigger and id (default); json: one object per "
        "event with topic, partition, offset, timestamp, key, headers and the event; cloudevent: the event as "
        "structured CloudEvents JSON",
    )
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the oldest retained event")
    start.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="start at events written since WHEN: a duration back from now (90s, 15m, 1h, 2d), an RFC 3339 time "
        "or Unix seconds (default: only new events)",
    )
    tail.add_argument("--max", type=int, metavar="N", help="stop after N events")
    tail.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop after SECONDS without a new event")
    tail.set_defaults(handler=_tail)


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = _command(commands, "replay", "re-emit a past period from Boro into Kafka (same event ids)", REPLAY_EPILOG)
    add = replay.add_argument
    add("--config", type=Path, metavar="FILE", help="the bridge's YAML configuration (boro and kafka)")
    when = "a duration back from now (30m, 2h, 1d), an RFC 3339 time or Unix seconds"
    add("--since", required=True, type=_moment, metavar="WHEN", help=f"start of the period on Boro's clock: {when}")
    add("--until", type=_moment, metavar="WHEN", help=f"end of the period: {when} (default: now)")
    add(
        "--project",
        action="append",
        type=_positive_int,
        metavar="ID",
        help="replay only this Boro project; repeatable (default: boro.projects)",
    )
    add("--dry-run", action="store_true", help="read Boro and count the events a replay would send; send nothing")
    add(
        "--progress-every",
        type=_positive,
        default=PROGRESS_SECONDS,
        metavar="SECONDS",
        help=f"off a terminal, a progress line at least this often (default: {PROGRESS_SECONDS:g})",
    )
    add(
        "--progress-events",
        type=_positive_int,
        default=PROGRESS_EVENTS,
        metavar="N",
        help=f"off a terminal, a progress line every N events too (default: {PROGRESS_EVENTS})",
    )
    replay.set_defaults(handler=_replay)


def _add_schemas(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = _command(
        commands, "schemas", "write the JSON Schemas and the AsyncAPI document into a directory", SCHEMAS_EPILOG
    )
    schemas.add_argument(
        "--out", type=Path, default=Path("schemas"), metavar="DIR", help="directory to write into (default: schemas)"
    )
    schemas.set_defaults(handler=_schemas)


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
        "--webhook-url",
        metavar="TEMPLATE",
        help="POST a webhook for every record change to this URL, {project_id} replaced "
        "(e.g. http://127.0.0.1:8081/webhooks/boro/{project_id}; signing and faults: simulator.webhooks)",
    )
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
    check_runtime(settings)
    configure_logging(settings.logging)
    asyncio.run(run_bridge(settings))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from borobridge.simulator import (  # noqa: PLC0415 - only this command needs it
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
            user_id=settings.boro.user_id,  # the user the bridge asks as, with the same configuration
            webhooks=options.webhooks,
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
    if args.webhook_url:
        flags[f"{section}WEBHOOKS__URL"] = args.webhook_url
    return flags


def _tail(args: argparse.Namespace) -> int:
    from borobridge.tail import TailFilter, TailOptions, tail  # noqa: PLC0415 - only this command needs Kafka here

    settings = _load(args)
    kafka = _kafka_settings(settings)
    check_runtime(settings)
    configure_logging(settings.logging)
    chosen = TailFilter(project=args.project, task=args.task, level=args.level)
    options = TailOptions(
        from_beginning=args.from_beginning,
        since=args.since,
        limit=args.max,
        idle_exit=args.idle_exit,
        format=args.format,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(kafka, chosen, options))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from borobridge.app import server_name  # noqa: PLC0415 - only this command needs the bridge
    from borobridge.replay import ReplayRequest, replay  # noqa: PLC0415

    if args.until is not None and args.until <= args.since:
        raise BridgeError(
            f"--until {moment(args.until)} is not after --since {moment(args.since)}; give a later --until"
        )
    settings = _load(args)
    check_runtime(settings)
    configure_logging(settings.logging)
    request = ReplayRequest(since=args.since, until=args.until, projects=args.project, dry_run=args.dry_run)
    report = Report(
        sys.stderr, Throttle(args.progress_every, args.progress_events), since=args.since, dry_run=args.dry_run
    )
    try:
        sent = asyncio.run(
            replay(settings, request, server_name=server_name(settings, settings.boro.url), progress=report.progress)
        )
    except KeyboardInterrupt:
        report.interrupted()
        return EXIT_INTERRUPTED
    report.finished(sent)
    return 0


def _kafka_settings(settings: Settings) -> KafkaSettings:
    if settings.kafka is None:
        raise ConfigError(["kafka: this command reads Kafka; set kafka.bootstrap_servers"])
    return settings.kafka


def _moment(text: str) -> int:
    """A duration back from now, an RFC 3339 time or Unix seconds, as whole Unix seconds."""
    return int(_since(text))


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _since(text: str) -> float:
    """A duration back from now (``90s``, ``15m``, ``1h``, ``2d``), an RFC 3339 time or Unix seconds."""
    duration = _DURATION.match(text)
    if duration is not None:
        return time.time() - float(duration.group(1)) * _SECONDS[duration.group(2)]
    with contextlib.suppress(ValueError):
        return float(text) if _UNIX.match(text) else dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    raise argparse.ArgumentTypeError(
        f"expected a duration such as 15m, 1h or 2d, an RFC 3339 time or Unix seconds, got {text!r}"
    )


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file, os.environ)
    check_runtime(settings)
    print(yaml.safe_dump(settings_to_builtins(settings), sort_keys=False), end="")
    return _connect(settings) if args.connect else 0


def _connect(settings: Settings) -> int:
    from borobridge.connections import check_connections  # noqa: PLC0415 - only --connect does I/O

    outcomes = asyncio.run(check_connections(settings))
    for outcome in outcomes:
        print(outcome.line())
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def _schemas(args: argparse.Namespace) -> int:
    from borobridge.schemas import write  # noqa: PLC0415 - only this command needs it

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise BridgeError(f"--out {out} is a file; give --out a directory (it is created when missing)")
    try:
        written = write(out)
    except OSError as exc:
        raise BridgeError(
            f"cannot write the schemas into {out}: {exc.strerror}; give --out a writable directory"
        ) from exc
    for path in written:
        print(path)
    return 0
