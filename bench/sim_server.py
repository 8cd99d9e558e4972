"""The Boro simulator in a process of its own, so that a benchmark measures the bridge alone.

``python -m bench.sim_server --projects 10 --rate 700`` serves on a free 127.0.0.1 port and prints
``url <endpoint>`` once it listens. The world advances every ``--step`` seconds; ``SIGUSR1`` adds a backlog of
``--backlog`` records at once and prints ``backlog <changes>`` when they are visible; ``SIGTERM`` stops it.
With ``--changes-log``, each change is written as ``<event id> <created> <interval start>``: the transition the
bridge must emit for it, the moment the simulator created the record (the step that made it visible), and the
start of the simulated interval that step covered, when the alarm it stands for fired at the earliest (a latency
measured from it is an upper bound, by one step).

With ``--webhook-url``, every change is also sent as a webhook (``borobridge.simulator.webhooks``), a share
``--webhook-lost`` of them lost. With ``--steer``, lines on stdin steer a running simulator: ``lost <share>``
changes that share, ``rate <records/s>`` the rate of new records, and ``count`` prints ``count <requests> <peak>
<sent> <lost> <queued>``: the Boro requests answered so far, the most in flight at once since the last
``count``, and the webhooks sent, lost and still queued; ``polls`` prints ``polls <polls> <fewest> <most> <reads>``:
the TaskAlarms calls with an ``update_token`` (polls) answered since the last ``polls``, the fewest and most of
them that named one project (over every project of the world, so a project never polled counts 0), and the other
TaskAlarms calls (page and period reads).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import msgspec

from borobridge.asgi_server import ASGIApp, Message, Receive, Scope, Send, serve_asgi
from borobridge.settings import SimulatorWebhookSettings
from borobridge.simulator import ENDPOINT_PATH, Change, Simulator, SimulatorApp, WebhookSender, sending_webhooks

STATE_SUFFIX = {("created", "state"): "raised", ("created", "event"): "event", ("cleared", "state"): "cleared"}


def event_id(change: Change) -> str:
    """The CloudEvent id the bridge emits for a change."""
    return f"{change.record_id}-{STATE_SUFFIX[(change.transition, change.type)]}"


class World:
    """The simulator, its step loop and its change log."""

    def __init__(self, options: argparse.Namespace, log: TextIO | None) -> None:
        self.sim = Simulator(
            seed=options.seed,
            projects=options.projects,
            probes_per_project=options.probes,
            tasks_per_probe=options.tasks,
            rate_per_second=options.rate,
            mean_state_seconds=options.mean_state_seconds,
            retain_seconds=options.retain,
        )
        self._log = log
        self._backlog = options.backlog
        self._step_started = time.time()

    def step(self) -> None:
        """Advance to now and log what changed: created now, standing for alarms fired since the last step."""
        interval_start = self._step_started
        self._step_started = time.time()
        self._write(self.sim.advance(), self._step_started, interval_start)

    def add_backlog(self) -> None:
        """Create the backlog at once and say how many changes it made."""
        created = time.time()
        changes = self.sim.advance(new_records=self._backlog)
        self._write(changes, created, created)
        print(f"backlog {len(changes)}", flush=True)

    def _write(self, changes: Iterable[Change], created: float, interval_start: float) -> None:
        if self._log is not None:
            self._log.writelines(f"{event_id(change)} {created:.6f} {interval_start:.6f}\n" for change in changes)


class _Call(msgspec.Struct):
    method: object = None
    params: dict[str, object] = {}


class _Envelope(msgspec.Struct):
    methods: list[_Call] = []


_ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)


class PollCounter:
    """TaskAlarms calls per project, read from the request bodies: whether every project was polled."""

    def __init__(self, project_ids: Iterable[int]) -> None:
        self._project_ids = list(project_ids)
        self.polls: Counter[object] = Counter()
        self.reads = 0

    def count(self, body: bytes) -> None:
        """Count the TaskAlarms calls of one request (a body the simulator refuses counts nothing)."""
        try:
            methods = _ENVELOPE_DECODER.decode(body).methods
        except msgspec.DecodeError:
            return
        calls = [call.params for call in methods if call.method == "TaskAlarms"]
        polls = [params.get("project_id") for params in calls if "update_token" in params]
        self.polls.update(polls)
        self.reads += len(calls) - len(polls)

    def take(self) -> tuple[int, int, int, int]:
        """Polls since the last ``take``, the fewest and most for one project, other reads; starts again."""
        per_project = [self.polls[project_id] for project_id in self._project_ids] or [0]
        taken = (self.polls.total(), min(per_project), max(per_project), self.reads)
        self.polls.clear()
        self.reads = 0
        return taken


class CountingApp:
    """The simulator's ASGI app, counting the requests it answers, the most in flight at once and the polls."""

    def __init__(self, app: ASGIApp, polls: PollCounter) -> None:
        self._app = app
        self.polls = polls
        self.requests = self.in_flight = self.peak = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        chunks: list[bytes] = []

        async def receive_body() -> Message:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        try:
            await self._app(scope, receive_body, send)
        finally:
            self.in_flight -= 1
            self.requests += 1
            self.polls.count(b"".join(chunks))


class Steering:
    """Obeys the lines read on stdin (see the module's docstring)."""

    def __init__(self, sim: Simulator, app: CountingApp, sender: WebhookSender | None) -> None:
        self._sim = sim
        self._app = app
        self._sender = sender

    def obey(self, line: str) -> None:
        match line.split():
            case ["lost", share] if self._sender is not None:
                self._sender.options = msgspec.structs.replace(self._sender.options, lost=float(share))
            case ["rate", rate]:
                self._sim.rate_per_second = float(rate)
            case ["polls"]:
                polls, fewest, most, reads = self._app.polls.take()
                print(f"polls {polls} {fewest} {most} {reads}", flush=True)
            case ["count"]:
                sender = self._sender
                sent, lost, queued = (sender.sent, sender.lost, sender.queued) if sender else (0, 0, 0)
                print(f"count {self._app.requests} {self._app.peak} {sent} {lost} {queued}", flush=True)
                self._app.peak = self._app.in_flight
            case _:
                print(f"unknown command {line.strip()!r}", file=sys.stderr, flush=True)


async def read_stdin(steering: Steering) -> None:
    """Obey stdin's lines until it ends."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode():
        steering.obey(line)


async def serve(options: argparse.Namespace, log: TextIO | None) -> None:
    """Serve until SIGTERM or SIGINT, stepping the world."""
    world = World(options, log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, world.add_backlog)
    app = CountingApp(SimulatorApp(world.sim), PollCounter(project.id for project in world.sim.projects()))
    webhooks = SimulatorWebhookSettings(url=options.webhook_url, lost=options.webhook_lost)
    access_id = str(world.sim.user_id)
    async with (
        sending_webhooks(world.sim, webhooks, access_id=access_id) as sender,
        serve_asgi(app, "127.0.0.1", 0, name="boro-simulator-http") as base_url,
        asyncio.TaskGroup() as tasks,
    ):
        steering = read_stdin(Steering(world.sim, app, sender)) if options.steer else stop.wait()
        obeying = tasks.create_task(steering, name="steering")
        print(f"url {base_url}{ENDPOINT_PATH}", flush=True)
        while not stop.is_set():
            world.step()
            try:
                await asyncio.wait_for(stop.wait(), options.step)
            except TimeoutError:
                continue
        obeying.cancel()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="the Boro simulator for benchmarks")
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--probes", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.0, help="new records per second")
    parser.add_argument("--mean-state-seconds", type=float, default=20.0)
    parser.add_argument("--retain", type=float, default=300.0, help="seconds of history kept")
    parser.add_argument("--step", type=float, default=0.01, help="seconds between two advances")
    parser.add_argument("--backlog", type=int, default=0, help="records created at each SIGUSR1")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--changes-log", type=Path)
    parser.add_argument("--webhook-url", help="send a webhook for every change here ({project_id} is replaced)")
    parser.add_argument("--webhook-lost", type=float, default=0.0, help="the share of webhooks lost")
    parser.add_argument("--steer", action="store_true", help="obey the commands read on stdin")
    return parser


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.sim_server [options]``."""
    options = _parser().parse_args(argv)
    if options.changes_log is None:
        asyncio.run(serve(options, None))
        return
    with options.changes_log.open("w", encoding="utf-8") as log:
        asyncio.run(serve(options, log))


if __name__ == "__main__":
    main()
