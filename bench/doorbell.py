"""Webhooks (the doorbell) on a real Kafka: ``python -m bench.doorbell [--quick] [--bootstrap HOST:PORT]``.

Latency: the simulator (its own process, ``bench.sim_server``) creates records steadily and sends a webhook for
every change to ``borobridge run`` (its own process, ``boro.poll_interval`` 5 s, the webhook listener on), and a
``read_committed`` consumer here notes when each event becomes visible; latency runs from the moment the simulator
created the record. One bridge, one simulator and one broker serve three modes, alternated window by window: poll
only (every webhook lost), webhooks, and webhooks of which half are lost. An event never seen counts as missing.

Flood: with the world quiet, this process posts webhooks for one project at the bridge's listener as fast as
10,000 a second allows, for a few seconds; the simulator counts the Boro requests it answers (and the most in
flight at once), and ``/proc`` gives the bridge process's CPU seconds over the flood.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.e2e import (
    FIRST_PROJECT,
    PROJECTS,
    Visibility,
    bridge_config,
    bridge_environ,
    creations,
    visible_times,
    wait_for_topics,
)
from bench.processes import REPO, kafka_broker, machine_load, read_process, stop_process
from bench.report import Check, Series, Table

POLL_INTERVAL: Final = 5.0
MIN_GAP: Final = 0.05  # webhook.min_gap, the default
RECORD_RATE: Final = 950  # new records per second: about 1,000 transitions per second with the clears
WEBHOOK_P99_MS: Final = 100.0
LOST_MARGIN_MS: Final = 50.0
FLOOD_RATE: Final = 10_000
FLOOD_CONNECTIONS: Final = 10
FLOOD_TICK: Final = 0.01
LINE_TIMEOUT: Final = 30.0
MODES: Final = {"poll only": 1.0, "webhooks": 0.0, "webhooks, half lost": 0.5}  # mode → share of webhooks lost


@dataclass(frozen=True)
class Plan:
    """How long and how hard one run goes."""

    poll_interval: float
    record_rate: float
    window: float  # seconds of one mode's window
    rounds: int
    flood_seconds: float


FULL: Final = Plan(POLL_INTERVAL, RECORD_RATE, window=30.0, rounds=2, flood_seconds=5.0)
QUICK: Final = Plan(0.25, 100.0, window=3.0, rounds=1, flood_seconds=1.0)


class SteeredSimulator:
    """A running ``bench.sim_server --steer``: its endpoint URL, and the commands it obeys on stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.url = ""

    async def line(self, prefix: str) -> str:
        """The next line the simulator prints that starts with ``prefix``, without it (bounded)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(LINE_TIMEOUT):
            while line := (await self.process.stdout.readline()).decode():
                if line.startswith(prefix):
                    return line.removeprefix(prefix).strip()
        raise RuntimeError(f"the simulator ended before printing {prefix.strip()!r}")

    async def command(self, text: str) -> None:
        """Send one command line."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def count(self) -> SimulatorCount:
        """The simulator's counters; the peak of requests in flight starts again from here."""
        await self.command("count")
        requests, peak, sent, lost, queued = (int(word) for word in (await self.line("count ")).split())
        return SimulatorCount(requests, peak, sent, lost, queued)


@dataclass(frozen=True)
class SimulatorCount:
    """Boro requests answered, the most in flight at once, and webhooks sent, lost and queued, so far."""

    requests: int
    peak: int
    sent: int
    lost: int
    queued: int


@contextlib.asynccontextmanager
async def steered_simulator(options: list[str]) -> AsyncIterator[SteeredSimulator]:
    """Start ``bench.sim_server --steer`` with these options; stop it on exit."""
    command = [sys.executable, "-m", "bench.sim_server", "--steer", *options]
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(*command, cwd=REPO, stdin=pipe, stdout=pipe)
    try:
        sim = SteeredSimulator(process)
        sim.url = await sim.line("url ")
        yield sim
    finally:
        await stop_process(process)


def free_port() -> int:
    """A loopback port free at the moment of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def webhook_config(directory: Path, environ: dict[str, str], poll_interval: float, port: int) -> Path:
    """The end-to-end benchmark's bridge configuration, its webhook listener on ``port`` (unsigned)."""
    path = bridge_config(directory, environ, poll_interval)
    config = json.loads(path.read_text(encoding="utf-8"))
    config["webhook"] = {"enabled": True, "host": "127.0.0.1", "port": port, "min_gap": MIN_GAP}
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@dataclass
class ModeSamples:
    """One mode's latencies (ms) per window, its events missing, and transitions seen per second."""

    windows: list[list[float]] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)  # not seen before the window closed
    lost: int = 0  # not even in the topics at the end of the run
    rates: list[float] = field(default_factory=list)
    webhook_rates: list[float] = field(default_factory=list)  # webhooks the simulator sent per second
    webhooks_queued: list[float] = field(default_factory=list)  # not yet sent at the window's end

    @property
    def pooled(self) -> list[float]:
        """Every window's latencies together."""
        return [value for window in self.windows for value in window]


def window_latencies(visible: Visibility, log: Path, poll_interval: float) -> tuple[list[float], list[str]]:
    """Latencies (ms) of the events seen among those created well inside the window, and the ids of those not seen.

    Events created in the last two intervals plus a second are left out: their slow ones could not be seen yet.
    """
    first, last = visible.started + 1.0, visible.ended - 2 * poll_interval - 1.0
    eligible = [(event, at.created) for event, at in creations(log).items() if first <= at.created <= last]
    latencies = [1000 * (visible.seen[event] - created) for event, created in eligible if event in visible.seen]
    return latencies, [event for event, _ in eligible if event not in visible.seen]


async def committed_ids(bootstrap: str, partitions: list[TopicPartition]) -> set[str]:
    """Every event id committed to ``partitions`` so far, read from the beginning (bounded)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    ids: set[str] = set()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(LINE_TIMEOUT * 4):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                batch = await consumer.getmany(timeout_ms=500)
                ids.update(dict(m.headers)["ce_id"].decode() for messages in batch.values() for m in messages)
    finally:
        await consumer.stop()
    return ids


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0 for fewer than two values)."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1] if len(values) > 1 else 0.0


@dataclass(frozen=True)
class Flood:
    """What one flood of webhooks did: posted, answered 204, Boro requests, peak in flight, bridge CPU; and Boro
    requests and bridge CPU over as long a stretch without webhooks."""

    seconds: float
    posted: int
    accepted: int
    boro_requests: int
    quiet_requests: int
    peak_in_flight: int
    bridge_cpu_seconds: float
    quiet_cpu_seconds: float


class FloodConnection:
    """One keep-alive connection to the listener, writing pipelined POSTs and counting their answers."""

    ANSWER: Final = b"HTTP/1.1 "
    ACCEPTED: Final = b"HTTP/1.1 204"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.posted = self.answered = self.accepted = 0
        self._finished = False
        self.done = asyncio.Event()

    async def read_answers(self) -> None:
        """Count answers (one split across two reads is counted once) until the connection closes."""
        tail = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await self._reader.read(65536):
                text = tail + chunk
                tail = text[-(len(self.ACCEPTED) - 1) :]
                self.answered += text.count(self.ANSWER) - tail.count(self.ANSWER)
                self.accepted += text.count(self.ACCEPTED) - tail.count(self.ACCEPTED)
                self._check_done()
        self.done.set()

    async def write(self, requests: bytes, count: int) -> None:
        """Queue ``count`` requests; wait while the listener is behind."""
        self._writer.write(requests)
        self.posted += count
        await self._writer.drain()

    def finish(self) -> None:
        """No more requests: ``done`` is set once each is answered."""
        self._finished = True
        self._check_done()

    def _check_done(self) -> None:
        if self._finished and self.answered >= self.posted:
            self.done.set()

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


def webhook_request(port: int, project_id: int) -> bytes:
    """One unsigned webhook POST, as bytes on the wire."""
    body = json.dumps({"status": "Event", "project_id": project_id, "trigger": "Flood"}).encode()
    head = (
        f"POST /webhooks/boro/{project_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def post_flood(port: int, seconds: float) -> tuple[int, int]:
    """Post webhooks for one project at ``FLOOD_RATE`` a second for ``seconds``, spread over a few connections;
    returns how many were posted and how many were answered 204 (every answer awaited, bounded).

    A connection the listener closes (it serves a bounded number of requests per connection, as web servers do)
    is replaced by a new one, as a webhook sender would; what was pipelined into it unanswered counts as posted."""
    per_tick = max(1, round(FLOOD_RATE * FLOOD_TICK / FLOOD_CONNECTIONS))
    burst = webhook_request(port, FIRST_PROJECT) * per_tick
    opened: list[FloodConnection] = []
    async with asyncio.TaskGroup() as tasks:

        async def connect() -> FloodConnection:
            connection = FloodConnection(*await asyncio.open_connection("127.0.0.1", port))
            opened.append(connection)
            tasks.create_task(connection.read_answers())
            return connection

        async def send(slot: int, connections: list[FloodConnection]) -> None:
            if connections[slot].done.is_set():  # the listener closed it
                connections[slot] = await connect()
            with contextlib.suppress(ConnectionError):
                await connections[slot].write(burst, per_tick)

        connections = [await connect() for _ in range(FLOOD_CONNECTIONS)]
        started = time.monotonic()
        for tick in range(round(seconds / FLOOD_TICK)):
            await asyncio.gather(*(send(slot, connections) for slot in range(FLOOD_CONNECTIONS)))
            await asyncio.sleep(max(0.0, started + (tick + 1) * FLOOD_TICK - time.monotonic()))
        for connection in opened:
            connection.finish()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINE_TIMEOUT):
                await asyncio.gather(*(connection.done.wait() for connection in opened))
        for connection in opened:
            await connection.close()
    return sum(c.posted for c in opened), sum(c.accepted for c in opened)


async def flood(sim: SteeredSimulator, bridge_pid: int, port: int, seconds: float, poll_interval: float) -> Flood:
    """No new records, then Boro requests and bridge CPU over a flood and over as long a quiet stretch after it.

    The states already raised still clear meanwhile, fewer and fewer: the quiet stretch, second, sees less of
    that background than the flood, so the difference between the two overstates what the webhooks cost."""
    await sim.command("rate 0")
    await sim.command(f"lost {MODES['poll only']}")
    await asyncio.sleep(poll_interval + 1.0)  # what the world made before is delivered
    before = await sim.count()
    cpu_before = read_process(bridge_pid).cpu_seconds
    started = time.monotonic()
    posted, accepted = await post_flood(port, seconds)
    elapsed = time.monotonic() - started
    cpu_flood = read_process(bridge_pid).cpu_seconds
    flooded = await sim.count()
    await asyncio.sleep(elapsed)
    cpu_quiet = read_process(bridge_pid).cpu_seconds
    quiet = await sim.count()
    return Flood(
        seconds=elapsed,
        posted=posted,
        accepted=accepted,
        boro_requests=flooded.requests - before.requests,
        quiet_requests=quiet.requests - flooded.requests,
        peak_in_flight=flooded.peak,
        bridge_cpu_seconds=cpu_flood - cpu_before,
        quiet_cpu_seconds=cpu_quiet - cpu_flood,
    )


@dataclass
class Results:
    """Everything one run measured."""

    plan: Plan
    modes: dict[str, ModeSamples]
    floods: list[Flood]


async def measure(bootstrap: str, plan: Plan) -> Results:
    """One bridge, one simulator: the modes alternated window by window, then the flood."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    modes = {mode: ModeSamples() for mode in MODES}
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-doorbell-") as scratch:
        log = Path(scratch) / "changes.log"
        sim_options = [
            *("--projects", str(PROJECTS), "--rate", str(plan.record_rate), "--changes-log", str(log)),
            *("--webhook-url", f"http://127.0.0.1:{port}/webhooks/boro/{{project_id}}", "--webhook-lost", "1"),
        ]
        async with steered_simulator(sim_options) as sim:
            environ = bridge_environ(prefix, bootstrap, sim.url)
            config = webhook_config(Path(scratch), environ, plan.poll_interval, port)
            command = [sys.executable, "-m", "borobridge", "run", "--config", str(config)]
            bridge = await asyncio.create_subprocess_exec(*command, cwd=REPO)
            try:
                topics = [f"{prefix}.alarms.{FIRST_PROJECT + p}" for p in range(PROJECTS)]
                partitions = await wait_for_topics(bootstrap, topics)
                await asyncio.sleep(2 * plan.poll_interval)
                for _ in range(plan.rounds):
                    for mode, lost in MODES.items():
                        await sim.command(f"lost {lost}")
                        before = await sim.count()
                        visible = await visible_times(bootstrap, partitions, plan.window)
                        after = await sim.count()
                        latencies, unseen = window_latencies(visible, log, plan.poll_interval)
                        samples = modes[mode]
                        samples.windows.append(latencies)
                        samples.unseen += unseen
                        samples.rates.append(len(visible.seen) / plan.window)
                        samples.webhook_rates.append((after.sent - before.sent) / plan.window)
                        samples.webhooks_queued.append(after.queued)
                floods = [await flood(sim, bridge.pid, port, plan.flood_seconds, plan.poll_interval)]
                delivered = await committed_ids(bootstrap, partitions)
                for samples in modes.values():
                    samples.lost = sum(event not in delivered for event in samples.unseen)
            finally:
                await stop_process(bridge)
    return Results(plan, modes, floods)


def latency_table(results: Results) -> Table:
    """The three modes side by side, with the targets."""
    plan = results.plan
    title = f"doorbell on Kafka: latency to read_committed visibility, poll interval {plan.poll_interval:g} s"
    table = Table(title)
    for mode, samples in results.modes.items():
        table.add(Series(f"{mode}: transitions per second", "trans/s", samples.rates))
        for share in (0.5, 0.99):
            per_window = [percentile(window, share) for window in samples.windows]
            table.add(Series(f"{mode}: p{round(share * 100)} latency", "ms", per_window))
        table.add(Series(f"{mode}: max latency", "ms", [max(window, default=0.0) for window in samples.windows]))
        table.add(Series(f"{mode}: events seen only after the window", "events", [float(len(samples.unseen))]))
        table.add(Series(f"{mode}: events lost (not in Kafka at the end)", "events", [float(samples.lost)]))
        table.add(Series(f"{mode}: webhooks sent per second", "webhooks/s", samples.webhook_rates))
        table.add(Series(f"{mode}: webhooks queued at the end", "webhooks", samples.webhooks_queued))
    webhooks = percentile(results.modes["webhooks"].pooled, 0.99)
    table.checks.append(Check("webhooks: p99 latency", webhooks, WEBHOOK_P99_MS, unit="ms"))
    half = results.modes["webhooks, half lost"]
    bound = 1000 * plan.poll_interval + LOST_MARGIN_MS
    table.checks.append(Check("webhooks, half lost: p99 latency", percentile(half.pooled, 0.99), bound, unit="ms"))
    table.checks.append(Check("webhooks, half lost: events lost", half.lost, 0, unit="events"))
    events = {mode: len(samples.pooled) for mode, samples in results.modes.items()}
    table.notes.append(f"events measured: {events}, {plan.rounds} windows of {plan.window:g} s per mode")
    table.notes.append(
        f"{PROJECTS} projects, {plan.record_rate:g} new records/s, min_gap {MIN_GAP:g} s; {machine_load()}"
    )
    return table


def flood_table(results: Results) -> Table:
    """What a flood of webhooks for one project cost Boro and the bridge."""
    table = Table(f"doorbell flood: webhooks for one project at up to {FLOOD_RATE:,} a second")
    floods = results.floods
    table.add(Series("webhooks posted per second", "webhooks/s", [f.posted / f.seconds for f in floods]))
    table.add(Series("webhooks answered 204 per second", "webhooks/s", [f.accepted / f.seconds for f in floods]))
    table.add(Series("Boro requests during the flood", "requests", [float(f.boro_requests) for f in floods]))
    table.add(Series("Boro requests, as long without webhooks", "requests", [float(f.quiet_requests) for f in floods]))
    table.add(Series("Boro requests in flight at once, most", "requests", [float(f.peak_in_flight) for f in floods]))
    table.add(Series("bridge CPU during the flood", "s", [f.bridge_cpu_seconds for f in floods]))
    table.add(Series("bridge CPU, as long without webhooks", "s", [f.quiet_cpu_seconds for f in floods]))
    table.add(
        Series(
            "bridge CPU per webhook accepted, beyond the quiet stretch",
            "µs",
            [1e6 * (f.bridge_cpu_seconds - f.quiet_cpu_seconds) / max(f.accepted, 1) for f in floods],
        )
    )
    worst = max(floods, key=lambda f: f.boro_requests)
    cycles = worst.seconds / MIN_GAP + 1
    table.checks.append(Check("Boro requests in flight at once", max(f.peak_in_flight for f in floods), 1))
    table.checks.append(Check("Boro requests during the flood, at most one per min_gap", worst.boro_requests, cycles))
    table.notes.append(
        f"{floods[0].seconds:.1f} s of flood over {FLOOD_CONNECTIONS} keep-alive connections; {machine_load()}"
    )
    return table


async def run(*, quick: bool, bootstrap: str | None = None, rate: float | None = None) -> list[Table]:
    """The latency modes and the flood against one Kafka broker (started here unless ``bootstrap`` names one)."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # leader elections of new topics are expected
    with contextlib.ExitStack() as stack:
        bootstrap = bootstrap or stack.enter_context(kafka_broker()).bootstrap
        plan = QUICK if quick else FULL
        results = await measure(bootstrap, plan if rate is None else replace(plan, record_rate=rate))
    return [latency_table(results), flood_table(results)]


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.doorbell [--quick] [--bootstrap HOST:PORT]``."""
    parser = argparse.ArgumentParser(description="latency with and without webhooks, and a flood of them, on Kafka")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (a 0.25 s poll interval)")
    parser.add_argument("--bootstrap", help="use this Kafka (127.0.0.1 only) instead of starting one")
    parser.add_argument("--rate", type=float, help=f"new records per second (default {RECORD_RATE}, quick 100)")
    options = parser.parse_args(argv)
    for table in asyncio.run(run(quick=options.quick, bootstrap=options.bootstrap, rate=options.rate)):
        table.print()


if __name__ == "__main__":
    main()
