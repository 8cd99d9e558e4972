"""The operator commands on a real broker: `borobridge tail` and `borobridge replay`."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest

from borobridge.simulator import serve_simulator
from tests.support.expectations import expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import event_topics, kafka_bridge, topic_names
from tests.support.kafka_bridge import write_kafka_config as write_config
from tests.support.kafka_reading import binary_events, consume, kafka_settings

pytestmark = pytest.mark.kafka


async def borobridge(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "borobridge", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_tail_prints_every_event_and_filters(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(10, seed=61, projects=2, rate_per_second=10)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        await pipeline.poll_once()
        config = write_config(tmp_path, url, kafka.bootstrap, topic_names(settings), prefix)
        code, out, err = await borobridge("tail", "--config", str(config), "--from-beginning", "--idle-exit", "3")
        assert code == 0, err
        lines = out.splitlines()
        assert {line.split()[-1] for line in lines} == expected_ids(sim)
        project = str(sim.projects()[0].id)
        code, out, _ = await borobridge(
            "tail",
            "--config",
            str(config),
            "--from-beginning",
            "--idle-exit",
            "3",
            "--project",
            project,
            "--level",
            "error",
        )
    assert code == 0
    assert out.splitlines()
    assert {line.split()[1] for line in out.splitlines()} <= {"error", "major", "fatal"}, "error or worse"
    assert all(line.split()[3].startswith(f"{project}/") for line in out.splitlines())


async def test_replay_re_emits_the_period_with_the_same_ids(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(20, seed=62, projects=1, rate_per_second=10)
    since = min(record.updated_at for record in sim.records())
    async with serve_simulator(sim) as url:
        async with kafka_bridge(url, settings, prefix) as pipeline:
            await pipeline.poll_once()
        config = write_config(tmp_path, url, kafka.bootstrap, topic_names(settings), prefix)
        code, _, err = await borobridge("replay", "--config", str(config), "--since", str(since))
    assert code == 0, err
    assert "replayed" in err
    events = binary_events(await consume(kafka.bootstrap, event_topics(prefix, sim)))
    counts = Counter((event["source"], event["id"]) for event in events)
    assert {event_id for _, event_id in counts} == expected_ids(sim)
    assert set(counts.values()) == {2}, "every transition once live and once replayed, with the same id"


async def test_tail_without_kafka_says_what_to_configure(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("boro:\n  url: http://127.0.0.1:9/ctrl_api/v1/json\n", encoding="utf-8")
    code, _, err = await borobridge("tail", "--config", str(config))
    assert code == 2
    assert "kafka: this command reads Kafka; set kafka.bootstrap_servers" in err
