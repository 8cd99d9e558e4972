"""Kafka out of reach, through the real ``borobridge run`` process: at start-up it is retried with /readyz naming
it; mid-run /readyz turns 503 within the documented bound, the log says the outage once and its end once, and
aiokafka's reconnection attempts do not flood it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from borobridge.simulator import serve_simulator
from tests.support.expectations import simulator_with_history
from tests.support.kafka import KafkaCluster, unique_topic
from tests.support.ports import free_port

POLL_INTERVAL: Final = 0.5
DELIVERY_TIMEOUT: Final = 5.0
BOUND: Final = 2 * POLL_INTERVAL + DELIVERY_TIMEOUT  # docs/deploy.md: two poll intervals + kafka.delivery_timeout_ms
MEASURING: Final = 0.5  # the gaps between two probes of /readyz and the moment the broker is down
UP_S: Final = 90.0
STOP_S: Final = 10.0
LOG_LINE: Final = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$")


def outage_config(tmp_path: Path, boro_url: str, bootstrap: str, health_port: int) -> Path:
    prefix = unique_topic("outage")
    config: dict[str, Any] = {
        "name": prefix,
        "boro": {
            "url": boro_url,
            "user_id": 4,
            "poll_interval": POLL_INTERVAL,
            "retry": {"initial_backoff": 0.1, "max_backoff": 1.0},
        },
        "first_start": {"mode": "all"},
        "health": {"host": "127.0.0.1", "port": health_port},
        "kafka": {
            "bootstrap_servers": bootstrap,
            "delivery_timeout_ms": int(DELIVERY_TIMEOUT * 1000),
            "request_timeout_ms": 3000,
            "topics": {
                "events": f"{prefix}.events.{{project_id}}",
                "active": f"{prefix}.active",
                "checkpoints": f"{prefix}.checkpoints",
                "dead_letters": f"{prefix}.dlq",
                "schemas": f"{prefix}.schemas",
            },
        },
        "logging": {"level": "DEBUG"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


class Bridge:
    """The running process, its log file and a client for its health endpoints."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path, probe: httpx.AsyncClient) -> None:
        self.process = process
        self.log = log
        self.probe = probe

    async def readyz(self) -> tuple[int, str]:
        try:
            response = await self.probe.get("/readyz")
        except httpx.TransportError as error:
            return 0, repr(error)
        return response.status_code, response.text

    async def wait_readyz(self, accept: Callable[[int, str], bool], seconds: float) -> tuple[int, str]:
        """Probe /readyz every 0.1 s until ``accept`` likes the answer (bounded); the answer."""
        answer = (0, "not asked")
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            assert self.process.returncode is None, f"the bridge ended:\n{self.said()}"
            answer = await self.readyz()
            if accept(*answer):
                return answer
            await asyncio.sleep(0.1)
        pytest.fail(f"/readyz did not turn as expected within {seconds:g} s; last answer {answer}:\n{self.said()}")

    async def wait_logged(self, text: str, count: int, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while self.said().count(text) < count:
            assert asyncio.get_running_loop().time() < deadline, f"{text!r} not said {count} times:\n{self.said()}"
            assert self.process.returncode is None, f"the bridge ended:\n{self.said()}"
            await asyncio.sleep(0.1)

    def said(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def lines(self) -> list[tuple[str, str, str]]:
        """(level, logger, message) of every log line."""
        return [match.groups() for line in self.said().splitlines() if (match := LOG_LINE.match(line))]  # type: ignore[misc]


@asynccontextmanager
async def running_bridge(tmp_path: Path, bootstrap: str) -> AsyncIterator[Bridge]:
    """``borobridge run`` against a moving simulator and ``bootstrap``; SIGTERM at the end must exit 0 promptly."""
    sim = simulator_with_history(4, seed=11, rate_per_second=20)
    async with serve_simulator(sim, advance_every=0.1) as boro_url:
        port = free_port()
        config = outage_config(tmp_path, boro_url, bootstrap, port)
        log = tmp_path / "bridge.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "borobridge", "run", "--config", str(config), cwd=tmp_path, stderr=stderr
            )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as probe:
                yield Bridge(process, log, probe)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_S):
                    status = await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
                raise
        assert status == 0, log.read_text(encoding="utf-8", errors="replace")


def ready(status: int, _: str) -> bool:
    return status == 200


def unready(status: int, _: str) -> bool:
    return status == 503


async def test_an_unreachable_kafka_at_start_up_is_retried_and_named_until_sigterm(
    tmp_path: Path,
    closed_port: int,
) -> None:
    async with running_bridge(tmp_path, f"127.0.0.1:{closed_port}") as bridge:
        _, reason = await bridge.wait_readyz(lambda status, text: status == 503 and "kafka:" in text, UP_S)
        await bridge.wait_logged("kafka cannot be reached at start-up", 3, UP_S)
        assert reason.startswith(f"kafka: cannot reach 127.0.0.1:{closed_port}: KafkaConnectionError(")
        warnings = [message for level, _, message in bridge.lines() if level == "WARNING"]
        assert warnings == [next(m for m in warnings if m.startswith("kafka cannot be reached at start-up"))]
        bridge.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_S):
            assert await bridge.process.wait() == 0


@pytest.mark.kafka
@pytest.mark.slow
async def test_kafka_down_at_start_up_is_waited_for_until_it_comes(tmp_path: Path, kafka: KafkaCluster) -> None:
    await kafka.stop_node(1)
    started = False
    try:
        async with running_bridge(tmp_path, kafka.bootstrap) as bridge:
            _, reason = await bridge.wait_readyz(lambda status, text: status == 503 and "kafka:" in text, UP_S)
            assert reason.startswith(f"kafka: cannot reach {kafka.bootstrap}")
            await kafka.start_node(1)
            started = True
            await bridge.wait_readyz(ready, UP_S)
    finally:
        if not started:
            await kafka.start_node(1)
    said = [(level, message) for level, _, message in bridge.lines() if message.startswith("kafka ")]
    assert [level for level, _ in said if level != "DEBUG"] == ["WARNING", "INFO"], said


@pytest.mark.kafka
@pytest.mark.slow
async def test_kafka_stopping_mid_run_turns_readyz_503_within_the_bound_and_back(
    tmp_path: Path, kafka: KafkaCluster
) -> None:
    async with running_bridge(tmp_path, kafka.bootstrap) as bridge:
        await bridge.wait_readyz(ready, UP_S)
        await kafka.stop_node(1)
        try:
            down = asyncio.get_running_loop().time()
            _, reason = await bridge.wait_readyz(unready, BOUND + MEASURING)
            turned = asyncio.get_running_loop().time() - down
        finally:
            await kafka.start_node(1)
        await bridge.wait_readyz(ready, UP_S)
    assert re.match(r"sink kafka shard \d+ failing for", reason), reason  # every shard has a sink of its own
    assert turned <= BOUND + MEASURING
    sink = [(level, message) for level, name, message in bridge.lines() if message.startswith("sink kafka shard ")]
    by_shard: dict[str, list[str]] = {}
    for level, message in sink:
        if level != "DEBUG":
            by_shard.setdefault(message.split(" ")[3], []).append(level)
    assert by_shard, sink
    assert all(levels == ["WARNING", "INFO"] for levels in by_shard.values()), sink
    assert sink[-1][0] == "INFO", sink
    assert sink[-1][1].endswith(" delivers again"), sink
    aiokafka = [message for _, name, message in bridge.lines() if name.startswith("aiokafka")]
    clients = len(by_shard) + 1  # a producer per shard, and the shard group's consumer
    assert len(aiokafka) <= 10 * clients, "\n".join(aiokafka)  # a few lines per client, never a flood


@pytest.mark.kafka
async def test_a_refused_sasl_login_still_stops_the_bridge_at_once(tmp_path: Path, kafka: KafkaCluster) -> None:
    assert kafka.scram_bootstrap is not None
    config = json.loads(
        outage_config(tmp_path, "http://127.0.0.1:1/ctrl_api/v1/json", kafka.scram_bootstrap, 0).read_text()
    )
    config["kafka"]["sasl"] = {"mechanism": "SCRAM-SHA-512", "username": kafka.scram_user, "password": "not-it"}
    config["health"] = {"enabled": False}
    (tmp_path / "config.yaml").write_text(json.dumps(config), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "borobridge",
        "run",
        "--config",
        str(tmp_path / "config.yaml"),
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(UP_S):
        _, stderr = await process.communicate()
    assert process.returncode == 1, stderr.decode()
    assert stderr.decode().splitlines()[-1].startswith("borobridge: cannot start Kafka clients: "), stderr.decode()
