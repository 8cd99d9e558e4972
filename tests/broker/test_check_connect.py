"""``borobridge check-config --connect`` through the real command: Boro (the simulator over HTTP), the real Kafka
and Mosquitto, and a closed port."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from borobridge.simulator import serve_simulator
from tests.support.expectations import simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.mosquitto import MosquittoBroker

pytestmark = [pytest.mark.kafka, pytest.mark.mqtt]
COMMAND_S: Final = 60.0


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


async def check_connect(tmp_path: Path, config: dict[str, Any]) -> tuple[int, list[str], str]:
    """Exit status, the lines after the printed configuration, and stderr."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"logging": {"level": "WARNING"}} | config), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "borobridge", "check-config", "--connect", str(path),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(COMMAND_S):
        stdout, stderr = await process.communicate()
    lines = [line for line in stdout.decode().splitlines() if line.startswith(("boro ", "kafka ", "mqtt "))]
    assert process.returncode is not None
    return process.returncode, lines, stderr.decode()


async def test_every_dependency_answers(tmp_path: Path, kafka: KafkaCluster, mosquitto: MosquittoBroker) -> None:
    async with serve_simulator(simulator_with_history(3, seed=2, projects=3)) as url:
        config = {
            "boro": {"url": url, "user_id": 4},
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        }
        status, lines, stderr = await check_connect(tmp_path, config)
    assert status == 0, stderr
    assert lines == [
        f"boro  ok: {url} lists 3 projects",
        f"kafka ok: {kafka.bootstrap}: 1 brokers ({kafka.bootstrap})",
        f"mqtt  ok: 127.0.0.1:{mosquitto.port} accepted a connection",
    ]


async def test_each_unreachable_dependency_fails_on_its_own_line(
    tmp_path: Path, kafka: KafkaCluster, closed_port: int
) -> None:
    async with serve_simulator(simulator_with_history(3, seed=2, projects=3)) as url:
        config = {
            "boro": {"url": url, "user_id": 4},
            "kafka": {"bootstrap_servers": f"127.0.0.1:{closed_port}", "request_timeout_ms": 5000},
            "mqtt": {"host": "127.0.0.1", "port": closed_port},
        }
        status, lines, stderr = await check_connect(tmp_path, config)
    assert status == 1, stderr
    boro, kafka_line, mqtt = lines
    assert boro == f"boro  ok: {url} lists 3 projects"
    assert kafka_line.startswith("kafka failed: cannot read Kafka metadata: KafkaConnectionError(")
    assert kafka_line.endswith(f"check kafka.bootstrap_servers (127.0.0.1:{closed_port})")
    assert mqtt.startswith(f"mqtt  failed: cannot connect to MQTT broker 127.0.0.1:{closed_port}: ")


async def test_a_closed_boro_port_fails_its_line(tmp_path: Path, kafka: KafkaCluster, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/ctrl_api/v1/json"
    config = {"boro": {"url": url, "user_id": 4, "retry": {"initial_backoff": 0.01, "max_backoff": 0.02}},
              "kafka": {"bootstrap_servers": kafka.bootstrap}}  # fmt: skip
    status, lines, stderr = await check_connect(tmp_path, config)
    assert status == 1, stderr
    assert lines[0].startswith(f"boro  failed: cannot reach {url}: ConnectError(")
    assert lines[1].startswith("kafka ok: ")
