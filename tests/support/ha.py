"""Replicas of one bridge name sharing the shards: real ``borobridge run`` processes against the simulator, what
their logs say they own, the owners recorded on the checkpoint records, and their /metrics.

A replica logs ``shard group generation G: this process owns shards ...`` after every rebalance; the checkpoint
records carry the generation and member that committed them (``borobridge_generation``, ``borobridge_member``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient, CoordinationType

from borobridge.simulator import Simulator, serve_simulator
from tests.support.bridge_process import BridgeProcess
from tests.support.expectations import expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import bridge_config, committed
from tests.support.kafka_reading import kafka_settings, partitions_of
from tests.support.ports import free_port
from tests.support.scraped_metrics import sample_values

SHARDS = 6  # the default partition count of the checkpoint topic (bridge_config sets none)
PROJECTS = 8
OWNS = re.compile(r"shard group generation (\d+): this process owns shards ([\d, ]+|none) of (\d+)")
SETTLE_S = 60.0
CATCH_UP_S = 60.0
SESSION_S = 10.0  # borobridge.kafka.group.SESSION_TIMEOUT_MS
READ_S = 30.0
SCRAPE_S = 5.0

Owners = dict[int, list[tuple[int, str]]]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def owned(process: BridgeProcess) -> tuple[int, set[int]]:
    """The latest generation this process was assigned in, and its shards then ((-1, set()) before any)."""
    found = OWNS.findall(process.said())
    if not found:
        return -1, set()
    generation, shards, _ = found[-1]
    return int(generation), set() if shards == "none" else {int(s) for s in shards.split(", ")}


async def until(condition: Callable[[], bool], seconds: float, why: str, processes: list[BridgeProcess]) -> None:
    """Wait (bounded, polling every 0.2 s) until ``condition()`` holds; fail saying ``why`` and the logs."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(f"--- {p.log.name}\n{p.said()[-4000:]}" for p in processes)
            pytest.fail(f"{why} within {seconds:.0f} s\n{logs}")
        await asyncio.sleep(0.2)


def settled(processes: list[BridgeProcess], count: int = SHARDS) -> bool:
    """Every running process was assigned in one generation, and together they own every shard exactly once."""
    latest = [owned(p) for p in processes]
    generations = {generation for generation, _ in latest}
    shards = [shard for _, mine in latest for shard in mine]
    return len(generations) == 1 and -1 not in generations and sorted(shards) == list(range(count))


async def checkpoint_owners(bootstrap: str, topic: str) -> Owners:
    """(generation, member) of every committed checkpoint record, per partition in log order."""
    partitions = await partitions_of(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    owners: Owners = defaultdict(list)
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(READ_S):
            while [p for p in partitions if await consumer.position(p) < ends[p]]:
                for partition, messages in (await consumer.getmany(timeout_ms=500)).items():
                    for message in messages:
                        headers = dict(message.headers)
                        if "borobridge_generation" in headers:
                            generation = int(headers["borobridge_generation"])
                            owners[partition.partition].append((generation, headers["borobridge_member"].decode()))
    finally:
        await asyncio.sleep(0)  # let aiokafka's coordinator task start, or stop() re-raises its cancellation
        await consumer.stop()
    return dict(owners)


def assert_one_owner_per_generation(owners: Owners) -> None:
    """Per shard: generations never go back in the log, and each generation's records come from one member."""
    assert owners, "no checkpoint record names its owner"
    for shard, records in owners.items():
        generations = [generation for generation, _ in records]
        assert generations == sorted(generations), f"shard {shard}: an earlier owner committed after a later one"
        members: dict[int, set[str]] = defaultdict(set)
        for generation, member in records:
            members[generation].add(member)
        shared = {generation: names for generation, names in members.items() if len(names) > 1}
        assert not shared, f"shard {shard}: two owners committed in one generation: {shared}"


def committed_after(owners: Owners, generation: int) -> set[int]:
    """The shards with a checkpoint committed in a generation later than ``generation``."""
    return {shard for shard, records in owners.items() if any(g > generation for g, _ in records)}


async def until_committed_anew(bootstrap: str, topic: str, shards: set[int], generation: int) -> Owners:
    """Wait (bounded) until each of ``shards`` that holds streams committed after ``generation``; the owners."""
    deadline = asyncio.get_running_loop().time() + CATCH_UP_S
    while True:
        owners = await checkpoint_owners(bootstrap, topic)
        with_streams = shards & set(owners)
        done = with_streams and with_streams <= committed_after(owners, generation)
        if done or asyncio.get_running_loop().time() > deadline:
            return owners
        await asyncio.sleep(0.5)


async def until_every_project_committed(kafka: KafkaCluster, prefix: str, sim: Simulator) -> None:
    """Wait (bounded) until events of every project are committed: each events topic exists and was checked."""
    projects = {str(project.id) for project in sim.projects()}
    deadline = asyncio.get_running_loop().time() + CATCH_UP_S
    while {event["project"] for event in await committed(kafka.bootstrap, prefix, sim)} < projects:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not every project's events were committed within {CATCH_UP_S:.0f} s")
        await asyncio.sleep(0.5)


async def group_coordinator(bootstrap: str, group: str) -> int:
    """The node that coordinates consumer group ``group``, as a ``FindCoordinator`` request answers."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await client.bootstrap()
        node: int = await client.coordinator_lookup(CoordinationType.GROUP, group)
        return node
    finally:
        await client.close()


async def scrape(port: int) -> Samples:
    """Every sample a replica's /metrics shows now, by name and sorted labels."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=SCRAPE_S) as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return sample_values(response.text)


class Replicas:
    """``borobridge run`` processes with one configuration (one bridge name), each logging to its own file.

    With ``metrics`` each one also serves /metrics on a port of its own (`port`).
    """

    def __init__(self, config: Path, directory: Path, *, metrics: bool = False) -> None:
        self._config = config
        self._directory = directory
        self._metrics = metrics
        self._ports: list[int] = []
        self.all: list[BridgeProcess] = []

    async def start(self) -> BridgeProcess:
        index = len(self.all)
        config = self._config_with_metrics(index) if self._metrics else self._config
        process = BridgeProcess(["--config", str(config)], self._directory / f"replica{index}.log", self._directory)
        await process.start()
        self.all.append(process)
        return process

    def port(self, process: BridgeProcess) -> int:
        """The port of a replica's /metrics (started with ``metrics``)."""
        return self._ports[self.all.index(process)]

    @property
    def running(self) -> list[BridgeProcess]:
        return [p for p in self.all if not p.ended]

    async def stop_all(self) -> None:
        for process in self.all:
            if process.process is not None and process.process.returncode is None:
                os.kill(process.process.pid, signal.SIGCONT)  # a stopped one must see the SIGTERM
            await process.stop()
        for process in self.all:
            print(f"--- {process.log.name}\n{process.said()}", file=sys.stderr)

    def _config_with_metrics(self, index: int) -> Path:
        port = free_port()
        config = json.loads(self._config.read_text(encoding="utf-8"))
        config["health"] = {"enabled": True, "host": "127.0.0.1", "port": port}
        path = self._directory / f"replica{index}.yaml"
        path.write_text(json.dumps(config), encoding="utf-8")
        self._ports.append(port)
        return path


@asynccontextmanager
async def replicas_of_one_bridge(
    kafka: KafkaCluster, tmp_path: Path, seed: int, *, metrics: bool = False
) -> AsyncIterator[tuple[Replicas, Simulator, str, str]]:
    """Replicas (none started yet) of a bridge with unique topics, the simulator they poll, the bridge name (also
    the topic prefix) and the checkpoint topic; every replica is stopped afterwards and its log printed."""
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(5, seed=seed, projects=PROJECTS, rate_per_second=20)
    async with serve_simulator(sim) as url:
        replicas = Replicas(bridge_config(tmp_path, url, settings, prefix), tmp_path, metrics=metrics)
        try:
            yield replicas, sim, prefix, settings.topics.checkpoints
        finally:
            await replicas.stop_all()


async def all_committed(kafka: KafkaCluster, prefix: str, sim: Simulator) -> list[dict[str, Any]]:
    """Wait (bounded) until every transition of the standing world is committed; the committed events."""
    expected = expected_ids(sim)
    deadline = asyncio.get_running_loop().time() + CATCH_UP_S
    while True:
        events = await committed(kafka.bootstrap, prefix, sim)
        if {event["id"] for event in events} >= expected or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.5)
