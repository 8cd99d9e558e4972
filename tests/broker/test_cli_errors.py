"""Every expected failure of a command ends in one line naming the problem and the fix, with its exit status.

Each case runs the real ``borobridge`` command in a child process and compares its whole stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import topic_names
from tests.support.kafka_reading import kafka_settings
from tests.support.processes import COMMAND_S, borobridge, bridge_process, stop
from tests.support.settings import write_config

LOG_LINE: Final = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING) [\w.]+: ")


def refused(port: int) -> str:
    return (
        f"ERROR aiokafka: Unable connect to \"127.0.0.1:{port}\": [Errno 111] Connect call failed ('127.0.0.1', {port})"
    )


def without_times(stderr: str) -> list[str]:
    return [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "", line) for line in stderr.splitlines()]


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new files, for root too (immutable attribute) where mode bits do not stop it."""
    directory.chmod(0o555)
    immutable = False
    if os.access(directory, os.W_OK) and os.geteuid() == 0:
        immutable = subprocess.run(["chattr", "+i", str(directory)], check=False).returncode == 0
    try:
        if not immutable and os.geteuid() == 0:
            pytest.fail("cannot make a directory read-only for root here: chattr (e2fsprogs) is needed")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_a_bad_mqtt_topic_template_is_refused_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"mqtt": {"host": "127.0.0.1", "topics": {"transitions": "boro/{projct}/{task}"}}})
    done = borobridge("run", "--config", str(config), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        2,
        "invalid configuration:\n  mqtt.topics.transitions: unknown template field {projct} in 'boro/{projct}/{task}';"
        " use {project}, {task}, {group}, {name}, {alarm_id}\n",
    )


def test_bootstrap_servers_without_a_port_number_are_refused_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"kafka": {"bootstrap_servers": "kafka:notaport"}})
    done = borobridge("run", "--config", str(config), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        2,
        "invalid configuration:\n  kafka.bootstrap_servers: 'kafka:notaport' is not host:port with a port from 1 to "
        "65535; write e.g. kafka-0:9092,kafka-1:9092\n",
    )


def test_tail_with_kafka_down(tmp_path: Path, closed_port: int) -> None:
    config = write_config(tmp_path, {"kafka": {"bootstrap_servers": f"127.0.0.1:{closed_port}"}})
    done = borobridge("tail", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 1
    assert without_times(done.stderr) == [
        refused(closed_port),
        "borobridge: cannot read Kafka: KafkaConnectionError: Unable to bootstrap from "
        f"[('127.0.0.1', {closed_port}, <AddressFamily.AF_INET: 2>)]; check kafka.bootstrap_servers "
        f"(127.0.0.1:{closed_port})",
    ]


def test_schemas_into_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "schemas.json").write_text("{}", encoding="utf-8")
    done = borobridge("schemas", "--out", "schemas.json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1,
        "borobridge: --out schemas.json is a file; give --out a directory (it is created when missing)\n",
    )


def test_a_corrupt_state_file_with_the_embedded_simulator(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("garbage", encoding="utf-8")
    config = write_config(tmp_path, {"state": {"path": "state.json"}})
    done = borobridge("run", "--config", str(config), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1,
        "borobridge: cannot read the state file state.json: JSON is malformed: invalid character (byte 0); "
        "move it away to start afresh\n",
    )


def test_a_read_only_state_directory_is_refused_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    config = write_config(tmp_path, {"state": {"path": "state/borobridge-state.json"}})
    with read_only(state):
        done = borobridge("run", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert re.fullmatch(
        r"invalid configuration:\n  state\.path: cannot write in state \((Permission denied|Operation not permitted)\);"
        r" choose a state\.path in a writable directory\n",
        done.stderr,
    ), done.stderr


async def test_a_state_directory_turned_read_only_while_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    output = tmp_path / "events.jsonl"
    config = write_config(
        tmp_path,
        {
            "state": {"path": str(state / "borobridge-state.json")},
            "output": {"path": str(output)},
            "boro": {"poll_interval": 0.2},
            "simulator": {"rate_per_second": 50},
        },
    )
    log = tmp_path / "stderr.log"
    process = await bridge_process(config, log)
    try:
        async with asyncio.timeout(COMMAND_S):
            while not output.exists() or not output.stat().st_size:
                assert process.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
            with read_only(state):
                await process.wait()
    finally:
        await stop(process)
    assert process.returncode == 1
    assert re.fullmatch(
        rf"borobridge: cannot write the state file {re.escape(str(state))}/borobridge-state\.json: \[Errno (1|13)\] "
        rf"(Operation not permitted|Permission denied): '{re.escape(str(state))}/borobridge-state\.json\.tmp'\n",
        log.read_text(),
    ), log.read_text()


@contextlib.asynccontextmanager
async def silent_boro() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An HTTP endpoint that accepts connections and never answers; the event is set at the first connection."""
    connected = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/ctrl_api/v1/json", connected


@pytest.mark.kafka
async def test_ctrl_c_during_replay(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    async with silent_boro() as (url, connected):
        config = write_config(
            tmp_path,
            {
                "name": prefix,
                "boro": {"url": url, "projects": [23], "request_timeout": COMMAND_S},
                "kafka": {"bootstrap_servers": kafka.bootstrap, "topics": topic_names(settings)},
            },
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "borobridge", "replay", "--config", str(config), "--since", "1763596800",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(COMMAND_S):
                await connected.wait()
                process.send_signal(signal.SIGINT)
                _, stderr = await process.communicate()
        finally:
            await stop(process)
    ours = [line for line in stderr.decode().splitlines(keepends=True) if " aiokafka" not in line]
    assert (process.returncode, "".join(ours)) == (
        130,
        "borobridge: interrupted after 0 events sent; to finish, run the same replay with "
        "--since 2025-11-20T00:00:00Z\n",
    ), "aiokafka's own retry warnings (a new topic's leader moving) are its log, not the command's message"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"boro": {"url": "boro.example/ctrl_api/v1/json"}},
            "boro.url: 'boro.example/ctrl_api/v1/json' is not an http(s) URL; write e.g. "
            "https://boro.example/ctrl_api/v1/json",
        ),
        (
            {"boro": {"url": "https://boro.example:80443/ctrl_api/v1/json"}},
            "boro.url: 'https://boro.example:80443/ctrl_api/v1/json' has an invalid port; write e.g. "
            "https://boro.example/ctrl_api/v1/json",
        ),
        (
            {"kafka": {"bootstrap_servers": "kafka-0:9092", "topics": {"events": "boro.{project}"}}},
            "kafka.topics.events: unknown template field {project} in 'boro.{project}'; use {project_id}",
        ),
        (
            {"mqtt": {"host": "mqtt", "topics": {"status": "bridges/{bridge}/{state"}}},
            "mqtt.topics.status: 'bridges/{bridge}/{state' is not a template (expected '}' before end of string); "
            "write fields as {bridge}",
        ),
        (
            {"kafka": {"bootstrap_servers": "kafka-0:9092,kafka-1:port"}},
            "kafka.bootstrap_servers: 'kafka-1:port' is not host:port with a port from 1 to 65535; write e.g. "
            "kafka-0:9092,kafka-1:9092",
        ),
        (
            {"state": {"path": "config.yaml/state.json"}},
            "state.path: config.yaml is not a directory; choose a state.path in a writable directory",
        ),
        (
            {"first_start": {"mode": "since", "since": "2999-01-01T00:00:00Z"}},
            "first_start.since: 2999-01-01T00:00:00+00:00 is in the future; give a time that has passed, or use "
            "mode now",
        ),
    ],
)
def test_check_config_refuses_what_would_break_at_run_time(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    path = write_config(tmp_path, config)
    done = borobridge("check-config", str(path), cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"invalid configuration:\n  {problem}\n")


def test_check_config_lists_every_run_time_problem_at_once(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, {"boro": {"url": "ftp://boro"}, "kafka": {"bootstrap_servers": "k:x", "topics": {"events": "{x}"}}}
    )
    done = borobridge("check-config", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == [
        "invalid configuration",
        "  boro.url",
        "  kafka.topics.events",
        "  kafka.bootstrap_servers",
    ]


def test_check_config_accepts_a_valid_configuration(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "boro": {"url": "https://boro.example:8443/ctrl_api/v1/json"},
            "kafka": {"bootstrap_servers": "kafka-0:9092, [::1]:9093,kafka-2"},
            "mqtt": {"host": "mqtt", "topics": {"transitions": "{{literal}}/{project}/{alarm_id}"}},
            "first_start": {"mode": "since", "since": "2026-01-01T00:00:00Z"},
        },
    )
    done = borobridge("check-config", str(path), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert "bootstrap_servers: kafka-0:9092, [::1]:9093,kafka-2" in done.stdout
