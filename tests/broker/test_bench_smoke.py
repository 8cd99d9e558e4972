"""Every benchmark runs in its short form and prints its table; no figure is asserted (these machines are noisy,
the figures belong in BENCHMARKS.md), only that each comparison still runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kafka import KafkaCluster
from tests.support.mosquitto import MosquittoBroker

REPO = Path(__file__).resolve().parents[2]
BENCH_TIMEOUT_S = 240


def run_bench(module: str, *options: str) -> str:
    """Run ``python -m bench.<module> --quick`` and return what it printed; fail with its error output."""
    completed = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--quick", *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, f"bench.{module} failed:\n{completed.stderr[-4000:]}"
    return completed.stdout


def assert_table(output: str, title: str, series: list[str], targets: int) -> None:
    """The table is there: its title, the column header, a row per series and a line per target."""
    lines = output.splitlines()
    assert any(line.startswith(f"== {title}") for line in lines), output
    assert any(line.split()[:5] == ["series", "unit", "median", "min", "max"] for line in lines if line), output
    for name in series:
        assert any(line.startswith(name) for line in lines), f"no row for {name!r}:\n{output}"
    assert sum(line.startswith("target: ") for line in lines) == targets, output


def test_hotpath_bench_prints_its_table() -> None:
    output = run_bench("hotpath")
    assert_table(output, "hot path", ["borobridge hot path", "naive (json, cloudevents SDK)", "  stage: decode"], 2)


def test_partitioning_bench_prints_its_tables() -> None:
    output = run_bench("partitioning")
    rows = ["hot path of the round", "partitioning, borobridge murmur2", "partitioning, aiokafka DefaultPartitioner"]
    assert_table(output, "partitioning per round", rows, 0)
    assert output.count("== partitioning per round") == 2, output


@pytest.mark.kafka
def test_e2e_bench_prints_its_tables(kafka: KafkaCluster) -> None:
    output = run_bench("e2e", "--bootstrap", kafka.bootstrap)
    assert_table(output, "end to end: sustained", ["bare aiokafka transactional producer", "borobridge (HTTP"], 2)
    assert_table(output, "end to end: latency", ["transitions per second", "p99 latency"], 2)


def test_scale_bench_prints_its_table() -> None:
    output = run_bench("scale")
    assert_table(output, "scale: 50 projects", ["bridge CPU per", "bridge resident memory"], 3)
    assert "all 50 streams started" in output


def test_state_size_bench_prints_its_table() -> None:
    output = run_bench("state_size")
    series = ["checkpoint bytes per stream at the end", "checkpoint records written per s", "state file bytes"]
    assert_table(output, "state size: 50 projects", series, 1)


@pytest.mark.kafka
def test_doorbell_bench_prints_its_tables(kafka: KafkaCluster) -> None:
    output = run_bench("doorbell", "--bootstrap", kafka.bootstrap)
    modes = ["poll only: p99 latency", "webhooks: p99 latency", "webhooks, half lost: events lost"]
    assert_table(output, "doorbell on Kafka: latency", modes, 5)
    flood = ["webhooks answered 204 per second", "Boro requests during the flood", "bridge CPU during the flood"]
    assert_table(output, "doorbell flood", flood, 5)


@pytest.mark.kafka
@pytest.mark.mqtt
def test_mqtt_relay_bench_prints_its_table(kafka: KafkaCluster, mosquitto: MosquittoBroker) -> None:
    output = run_bench("mqtt_relay", "--bootstrap", kafka.bootstrap, "--mqtt", f"{mosquitto.host}:{mosquitto.port}")
    assert_table(output, "MQTT relay", ["bare aiomqtt QoS 1 publisher", "borobridge relay"], 1)


def test_run_all_runs_the_chosen_benchmarks_and_names_the_machine() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick", "hotpath"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("machine: ")
    assert "load average" in completed.stdout
    assert_table(completed.stdout, "hot path", ["borobridge hot path"], 2)
