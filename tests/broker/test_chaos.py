"""Chaos: the real ``borobridge run`` process through every fault at once, checked from the outside.

Boro (the simulator over real HTTP) answers with 5xx, malformed bodies, failed items, repeated records and bursts;
poison records (a trigger time in milliseconds) arrive before and during the run; the bridge is SIGKILLed at seeded
random moments; Kafka restarts, Mosquitto goes away under the MQTT relay, or the output's file system fills up.
Afterwards an independent reader finds every transition once (an MQTT subscriber: at least once), the poison records
as dead letters, the bridge still running, and every WARNING or ERROR line it logged explained in
docs/troubleshooting.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from borobridge.simulator import Faults, Simulator, serve_simulator
from tests.support.bad_input import poison
from tests.support.bridge_process import (
    BridgeProcess,
    assert_once_and_in_order,
    bridge_config,
    ids_written,
    kill_at_random_moments,
    moving_world,
    wait_until_complete,
)
from tests.support.expectations import expected_ids, read_events, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import committed, kafka_section
from tests.support.kafka_reading import consume, kafka_settings
from tests.support.mosquitto import MosquittoBroker
from tests.support.mqtt_bridge import PersistentSubscriber, subscribed
from tests.support.troubleshooting import entries

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

FAULTS = Faults(http_5xx=0.05, malformed=0.05, error_item=0.05, repeat=0.2, burst=0.02)
HISTORY_S = 8.0
MOVING_S = 2.0
CATCH_UP_S = 60.0
MILLISECONDS = 1590570529000  # a trigger time in milliseconds: no plausible Unix time in seconds
DISK_BYTES = 2 * 1024 * 1024
DISK_FULL = "cannot write events to"
RELAY_FAILING = "MQTT relay: cannot connect to MQTT broker"


def poisoned(sim: Simulator) -> set[str]:
    """Inject a record whose trigger time is in milliseconds; the transitions it would have been."""
    bad = poison(sim, "TosDscp", trigger_time=MILLISECONDS)
    return {transition for transition in expected_ids(sim) if transition.split("-")[0] == str(bad.id)}


def logged_problems(said: str) -> list[str]:
    """The messages of every WARNING or ERROR line borobridge itself logged (JSON log lines)."""
    problems = []
    for line in said.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry["level"] in {"WARNING", "ERROR", "CRITICAL"} and entry["logger"].startswith("borobridge"):
                problems.append(entry["message"])
    return problems


def unexplained(messages: list[str]) -> list[str]:
    """The messages no docs/troubleshooting.md entry quotes."""
    fragments = [fragment for entry in entries() for fragment in entry.fragments]
    return sorted({message for message in messages if not any(fragment in message for fragment in fragments)})


def chaos_config(directory: Path, url: str, *, mqtt: dict[str, Any] | None = None, **options: Any) -> Path:
    """The busy bridge's configuration, logging JSON lines so that each line's level can be read back."""
    path = bridge_config(directory, url, **options)
    config = json.loads(path.read_text(encoding="utf-8"))
    config["logging"] = {"format": "json"}
    if mqtt is not None:
        config["mqtt"] = mqtt
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def dead_letter_ids(records: dict[str, list[Any]]) -> Counter[int]:
    """How often each Boro record id occurs in the dead-letter topic."""
    return Counter(json.loads(message.value)["id"] for messages in records.values() for message in messages)


@pytest.mark.kafka
async def test_kafka_through_faults_sigkills_a_broker_restart_and_poison(kafka: KafkaCluster, tmp_path: Path) -> None:
    rng = random.Random(901)
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(HISTORY_S, seed=901, projects=2, rate_per_second=20, faults=FAULTS)
    poison_ids = poisoned(sim)

    async def committed_ids() -> set[str]:
        return {event["id"] for event in await committed(kafka.bootstrap, prefix, sim)}

    async with serve_simulator(sim) as url:
        config = chaos_config(tmp_path, url, name=prefix, kafka=kafka_section(settings, outage=True))
        bridge = BridgeProcess(["--config", str(config)], tmp_path / "bridge.log", tmp_path)
        try:
            async with moving_world(sim, rng) as world:
                await kill_at_random_moments(bridge, rng, kills=2)
                poison_ids |= poisoned(sim)
                await bridge.wait_restored()
                await kafka.restart_node(1)
                poison_ids |= poisoned(sim)
                await asyncio.sleep(MOVING_S)
            expected = expected_ids(sim) - poison_ids
            await wait_until_complete(committed_ids, expected, bridge, seconds=CATCH_UP_S)
            alive = not bridge.ended
        finally:
            exit_status = await bridge.stop()
    events = await committed(kafka.bootstrap, prefix, sim)
    letters = dead_letter_ids(await consume(kafka.bootstrap, [settings.topics.dead_letters]))
    said = bridge.said()
    assert alive, said[-5000:]
    assert exit_status == 0, said[-5000:]
    assert_once_and_in_order(events, sim, expected, world)
    assert not {event["id"] for event in events} & poison_ids
    assert letters == Counter({int(transition.split("-")[0]) for transition in poison_ids})  # each exactly once
    assert unexplained(logged_problems(said)) == []


async def wait_until_relaying(subscriber: PersistentSubscriber, bridge: BridgeProcess) -> None:
    """Wait (bounded) until the subscriber got a first transition over MQTT: the relay runs."""
    for _ in range(int(CATCH_UP_S / 0.2)):
        if subscriber.events() or bridge.ended:
            return
        await asyncio.sleep(0.2)


@pytest.mark.kafka
@pytest.mark.mqtt
async def test_an_mqtt_outage_under_the_relay_never_stalls_kafka_and_loses_nothing(
    kafka: KafkaCluster, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    rng = random.Random(903)
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(HISTORY_S, seed=903, projects=2, rate_per_second=20, faults=FAULTS)
    poison_ids = poisoned(sim)
    relay = {"host": mosquitto.host, "port": mosquitto.port, "publish_timeout": 2, "keepalive": 5}

    async def committed_ids() -> set[str]:
        return {event["id"] for event in await committed(kafka.bootstrap, prefix, sim)}

    async with serve_simulator(sim) as url, subscribed(mosquitto) as subscriber:

        async def relayed_ids() -> set[str]:
            return {event["id"] for event in subscriber.events()}

        config = chaos_config(tmp_path, url, name=prefix, kafka=kafka_section(settings, outage=False), mqtt=relay)
        bridge = BridgeProcess(["--config", str(config)], tmp_path / "bridge.log", tmp_path)
        try:
            async with moving_world(sim, rng) as world:
                await kill_at_random_moments(bridge, rng, kills=1)
                await wait_until_relaying(subscriber, bridge)
                relayed_before = len(subscriber.events())
                mosquitto.stop()
                await bridge.kill()  # the relay's uncommitted offsets are lost with it: it must relay them again
                failing = bridge.said().count(RELAY_FAILING)
                await bridge.start()
                poison_ids |= poisoned(sim)
                await asyncio.sleep(MOVING_S)
            expected = expected_ids(sim) - poison_ids
            await wait_until_complete(committed_ids, expected, bridge, seconds=CATCH_UP_S)
            committed_while_down = await committed_ids()
            await wait_for(RELAY_FAILING, failing + 1, bridge, CATCH_UP_S)  # the new relay met the outage too
            relay_failed = bridge.said().count(RELAY_FAILING) > failing
            mosquitto.start()
            await wait_until_complete(relayed_ids, expected, bridge, seconds=CATCH_UP_S)
            alive = not bridge.ended
        finally:
            exit_status = await bridge.stop()
    events = await committed(kafka.bootstrap, prefix, sim)
    said = bridge.said()
    assert alive, said[-5000:]
    assert exit_status == 0, said[-5000:]
    assert relayed_before > 0, "the relay never published before the outage"
    assert committed_while_down >= expected, "Kafka delivery stalled while Mosquitto was down"
    assert relay_failed, "the restarted relay never met the outage"
    assert_once_and_in_order(events, sim, expected, world)
    assert {event["id"] for event in subscriber.events()} == expected  # at least once: repeats collapse by id
    assert "MQTT relay recovered after" in said
    assert unexplained(logged_problems(said)) == []


@contextlib.contextmanager
def small_disk(directory: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK_BYTES`` mounted on ``directory`` (needs root), unmounted afterwards."""
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(directory)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the chaos suite runs as root): {mounted.stderr.decode(errors='replace')}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; it frees the space again when removed."""
    filler = disk / "filler"
    refused = None
    with filler.open("wb", buffering=0) as file:
        try:
            for _ in range(DISK_BYTES // 512 + 1):
                file.write(b"\0" * 512)
        except OSError as exc:
            refused = exc.errno
    assert refused == errno.ENOSPC
    return filler


async def wait_for(said: str, times: int, bridge: BridgeProcess, seconds: float) -> None:
    """Wait (bounded) until the bridge logged ``said`` ``times`` times in all."""
    for _ in range(int(seconds / 0.2)):
        if bridge.said().count(said) >= times or bridge.ended:
            return
        await asyncio.sleep(0.2)


async def test_json_lines_through_faults_sigkills_and_a_full_disk(tmp_path: Path) -> None:
    rng = random.Random(902)
    sim = simulator_with_history(HISTORY_S, seed=902, projects=2, rate_per_second=20, faults=FAULTS)
    poison_ids = poisoned(sim)
    with small_disk(tmp_path / "disk") as disk:
        output = disk / "events.jsonl"
        async with serve_simulator(sim) as url:
            config = chaos_config(tmp_path, url)
            args = ["--config", str(config), "--output", str(output), "--state", str(tmp_path / "state.json")]
            bridge = BridgeProcess(args, tmp_path / "bridge.log", tmp_path)
            try:
                async with moving_world(sim, rng) as world:
                    await kill_at_random_moments(bridge, rng, kills=2)
                    filler = fill(disk)
                    poison_ids |= poisoned(sim)
                    await wait_for(DISK_FULL, 1, bridge, CATCH_UP_S)
                    await bridge.kill()
                    await bridge.start()
                    await wait_for(DISK_FULL, bridge.said().count(DISK_FULL) + 1, bridge, CATCH_UP_S)
                    full = bridge.said().count(DISK_FULL)
                    filler.unlink()
                    await asyncio.sleep(MOVING_S)
                expected = expected_ids(sim) - poison_ids

                async def written() -> set[str]:
                    return ids_written(output)

                await wait_until_complete(written, expected, bridge, seconds=CATCH_UP_S)
                alive = not bridge.ended
            finally:
                exit_status = await bridge.stop()
        events = read_events(output)
    said = bridge.said()
    assert full >= 2, "the disk never filled up"
    assert alive, said[-5000:]
    assert exit_status == 0, said[-5000:]
    assert_once_and_in_order(events, sim, expected, world)
    assert not {event["id"] for event in events} & poison_ids
    letters = [message for message in logged_problems(said) if message.startswith("dead letter from stream")]
    assert letters
    assert all("is not a plausible Unix time in seconds" in letter for letter in letters)
    assert unexplained(logged_problems(said)) == []
