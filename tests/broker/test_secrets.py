"""No secret of the configuration reaches anything the bridge prints, writes or serves.

The real commands run as processes with a password in ``boro.url``, an HMAC key, and Kafka and MQTT passwords
where the command reads them; every byte they print, write or serve (stdout, stderr at DEBUG, the JSON-lines
output, the state file, /readyz, /metrics) is searched for the secrets. ``run`` delivers through a SCRAM Kafka
listener and a password Mosquitto, and every record it wrote to either is searched too. The identities built from
the Boro URL (CloudEvent ``source``, stream ids) name the server without its user information, so a new password
keeps them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from borobridge.app import server_name
from borobridge.boro.client import Signer
from borobridge.secret import masked_url, scrubbed
from borobridge.settings import load_settings
from borobridge.simulator import serve_simulator
from tests.support.expectations import expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import event_topics, topic_names
from tests.support.kafka_reading import binary_events, consume, kafka_settings
from tests.support.mosquitto import MosquittoBroker, ReceivedMessage, collect, mosquitto_sub
from tests.support.mqtt_bridge import as_event, message_count, transitions

USER: Final = "bridge-user"
PASSWORD: Final = "boro-Pw-7c1e90"
KEY_BYTES: Final = bytes(range(7, 39))
HMAC_KEY: Final = base64.b64encode(KEY_BYTES).decode()
KAFKA_PASSWORD: Final = "kafka-Pw-31f0aa"
MQTT_PASSWORD: Final = "mqtt-Pw-5a2b77"
SECRETS: Final = (
    USER,
    PASSWORD,
    HMAC_KEY,
    KEY_BYTES.hex(),
    repr(KEY_BYTES)[2:-1],
    KAFKA_PASSWORD,
    MQTT_PASSWORD,
)
SERVING: Final = re.compile(r"serving /livez, /readyz and /metrics on (http://127\.0\.0\.1:\d+)")
WAIT_S: Final = 30.0
COMMAND_S: Final = 90.0


def assert_no_secret(where: str, text: str, secrets: tuple[str, ...] = SECRETS) -> None:
    found = [secret for secret in secrets if secret in text]
    assert found == [], f"{where} shows {found}:\n{text[:3000]}"


def url_with_password(port: int) -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/ctrl_api/v1/json"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def plain_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/ctrl_api/v1/json"


def write_config(directory: Path, url: str, *, signed: bool, **sections: Any) -> Path:
    """A configuration polling ``url``, signing with HMAC_KEY when ``signed``, health on a free port."""
    boro: dict[str, Any] = {
        "url": url,
        "user_id": 4,
        "poll_interval": 0.2,
        "retry": {"initial_backoff": 0.02, "max_backoff": 0.2},
    }
    if signed:
        boro["hmac"] = {"key": HMAC_KEY}
    config: dict[str, Any] = {
        "boro": boro,
        "first_start": {"mode": "all"},
        "output": {"path": str(directory / "events.jsonl")},
        "state": {"path": str(directory / "state.json")},
        "health": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "logging": {"level": "DEBUG"},
        **sections,
    }
    path = directory / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


async def borobridge(*args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "borobridge",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(COMMAND_S):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def check_config(directory: Path, url: str, *, signed: bool, **sections: Any) -> tuple[int, str]:
    config = write_config(directory, url, signed=signed, **sections)
    status, stdout, stderr = await borobridge("check-config", str(config), cwd=directory)
    assert_no_secret(f"check-config of {url!r}, signed: {signed}", stdout + stderr)
    return status, stdout + stderr


async def test_check_config_and_schemas_show_no_secret(tmp_path: Path) -> None:
    brokers = {
        "kafka": {
            "bootstrap_servers": "127.0.0.1:9092",
            "sasl": {"username": "bridge", "password": KAFKA_PASSWORD, "mechanism": "PLAIN"},
        },
        "mqtt": {"host": "127.0.0.1", "username": "bridge", "password": MQTT_PASSWORD},
    }
    status, said = await check_config(tmp_path, plain_url(8000), signed=True, **brokers)
    assert status == 0, said
    assert "key: '**********'" in said
    status, said = await check_config(tmp_path, url_with_password(8000), signed=False)
    assert status == 0, said
    assert "url: http://**********@127.0.0.1:8000/ctrl_api/v1/json" in said
    status, said = await check_config(tmp_path, url_with_password(8000), signed=True)
    assert status == 2
    assert "would replace the boro.hmac signature" in said
    status, said = await check_config(tmp_path, url_with_password(99999), signed=False)
    assert status == 2
    assert "has an invalid port" in said

    status, stdout, stderr = await borobridge("schemas", "--out", str(tmp_path / "schemas"), cwd=tmp_path)
    assert status == 0, stderr
    written = "".join(path.read_text(encoding="utf-8") for path in sorted((tmp_path / "schemas").rglob("*.json")))
    assert_no_secret("schemas", stdout + stderr + written)


@contextlib.asynccontextmanager
async def running_bridge(config: Path, cwd: Path) -> AsyncIterator[tuple[str, Path]]:
    """``borobridge run --config``: yields its health URL (from its log) and its stderr file; SIGTERM after."""
    log = cwd / "stderr.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "borobridge", "run", "--config", str(config), cwd=cwd, stderr=stderr
        )
    try:
        found = None
        async with asyncio.timeout(WAIT_S):
            while found is None:
                assert process.returncode is None, log.read_text(encoding="utf-8")
                found = SERVING.search(log.read_text(encoding="utf-8"))
                await asyncio.sleep(0.1)
        yield found.group(1), log
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT_S):
            await process.wait()
    assert process.returncode == 0, log.read_text(encoding="utf-8")


async def wait_for(health: str, path: str, wanted: str) -> str:
    """The body of ``path`` once it contains ``wanted`` (bounded in time)."""
    async with httpx.AsyncClient(base_url=health) as http, asyncio.timeout(WAIT_S):
        while True:
            body = (await http.get(path)).text
            if wanted in body:
                return body
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("signed", [False, True], ids=["password in boro.url", "hmac key"])
async def test_a_running_bridge_shows_no_secret(tmp_path: Path, signed: bool) -> None:
    sim = simulator_with_history(
        10, seed=11, projects=2, rate_per_second=10, hmac_keys={"4": KEY_BYTES} if signed else None
    )
    async with serve_simulator(sim) as served:
        port = int(served.split(":")[2].split("/")[0])
        url = plain_url(port) if signed else url_with_password(port)
        async with running_bridge(write_config(tmp_path, url, signed=signed), tmp_path) as (health, log):
            metrics = await wait_for(health, "/metrics", "borobridge_cursor_commit_timestamp_seconds{")
            ready = await wait_for(health, "/readyz", "ok")
    output = (tmp_path / "events.jsonl").read_text(encoding="utf-8")
    events = [json.loads(line) for line in output.splitlines()]
    assert len(events) >= 10
    assert {event["source"].split("/projects/")[0] for event in events} == {f"boro://127.0.0.1:{port}"}
    state = (tmp_path / "state.json").read_text(encoding="utf-8")
    assert f"127.0.0.1:{port}/23" in state
    said = log.read_text(encoding="utf-8")
    assert "DEBUG" in said
    for where, text in [("stderr", said), ("output", output), ("state", state), ("/metrics", metrics)]:
        assert_no_secret(where, text)
    assert_no_secret("/readyz", ready)


async def test_a_bridge_that_cannot_reach_boro_shows_no_secret(tmp_path: Path) -> None:
    port = closed_port()
    config = write_config(tmp_path, url_with_password(port), signed=False)
    async with running_bridge(config, tmp_path) as (health, log):
        ready = await wait_for(health, "/readyz", "Boro polls failing")
    assert f"cannot reach http://**********@127.0.0.1:{port}/ctrl_api/v1/json" in ready
    assert_no_secret("/readyz", ready)
    assert_no_secret("stderr", log.read_text(encoding="utf-8"))


def test_identities_name_the_server_without_its_user_information() -> None:
    settings = load_settings(None, {"BOROBRIDGE_BORO__URL": url_with_password(8443)})
    assert server_name(settings, settings.boro.url) == "127.0.0.1:8443"


def test_the_signer_keeps_its_key_out_of_its_repr() -> None:
    assert_no_secret("repr(Signer)", repr(Signer("4", KEY_BYTES)))


def test_urls_are_printed_without_their_credentials() -> None:
    url = "https://u:p%40ss@boro.example:8443/ctrl_api/v1/json"
    shown = "https://**********@boro.example:8443/ctrl_api/v1/json"
    assert masked_url(url) == shown
    assert masked_url("https://token@boro.example/x") == "https://**********@boro.example/x"
    assert masked_url("https://boro.example/x") == "https://boro.example/x"
    assert scrubbed(f"InvalidURL({url!r}), password p@ss", url) == f"InvalidURL({shown!r}), password **********"


@pytest.mark.kafka
async def test_replay_and_tail_show_no_secret(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    brokers = {"bootstrap_servers": kafka.bootstrap, "topics": topic_names(settings)}
    sim = simulator_with_history(30, seed=17, projects=1, rate_per_second=5)
    async with serve_simulator(sim) as served:
        port = int(served.split(":")[2].split("/")[0])
        config = write_config(tmp_path, url_with_password(port), signed=False, name=prefix, kafka=brokers)
        since = str(int(time.time()) - 120)
        status, stdout, stderr = await borobridge("replay", "--config", str(config), "--since", since, cwd=tmp_path)
    assert status == 0, stderr
    assert_no_secret("replay", stdout + stderr)
    tail = ("tail", "--config", str(config), "--from-beginning", "--format", "cloudevent", "--idle-exit", "3")
    status, stdout, stderr = await borobridge(*tail, cwd=tmp_path)
    assert status == 0, stderr
    assert_no_secret("tail", stdout + stderr)
    sources = {json.loads(line)["source"].split("/projects/")[0] for line in stdout.splitlines()}
    assert sources == {f"boro://127.0.0.1:{port}"}


def kafka_text(records: dict[str, list[Any]]) -> str:
    """Every key, value and header of the records, as text."""
    parts = [
        part
        for messages in records.values()
        for message in messages
        for part in (message.key or b"", message.value or b"", *(value for _, value in message.headers))
    ]
    return "\n".join(part.decode(errors="replace") for part in parts)


def mqtt_text(messages: list[ReceivedMessage]) -> str:
    """Every topic, payload and property of the messages, as text."""
    return "\n".join(
        f"{m.topic} {m.payload.decode(errors='replace')} {m.content_type} {m.user_properties}" for m in messages
    )


@pytest.mark.kafka
@pytest.mark.mqtt
async def test_run_through_password_brokers_shows_no_broker_password(
    kafka: KafkaCluster, mosquitto_password: MosquittoBroker, tmp_path: Path
) -> None:
    """Kafka over SASL SCRAM-SHA-512 only (its password from a file), MQTT with a password: delivery goes through
    both, and neither password shows in the logs at DEBUG, the records, /metrics or /readyz."""
    assert kafka.scram_bootstrap is not None
    assert kafka.scram_password is not None
    assert mosquitto_password.password is not None
    passwords = (kafka.scram_password, mosquitto_password.password)
    assert all(len(password) >= 16 for password in passwords)  # unique strings: a hit is a leak, never chance
    settings, prefix = kafka_settings(kafka.bootstrap)
    password_file = tmp_path / "kafka-password"
    password_file.write_text(kafka.scram_password, encoding="utf-8")
    brokers = {
        "name": prefix,
        "kafka": {
            "bootstrap_servers": kafka.scram_bootstrap,
            "topics": topic_names(settings),
            "sasl": {"username": kafka.scram_user, "password_file": str(password_file), "mechanism": "SCRAM-SHA-512"},
        },
        "mqtt": {
            "host": mosquitto_password.host,
            "port": mosquitto_password.port,
            "username": mosquitto_password.username,
            "password": mosquitto_password.password,
        },
    }
    sim = simulator_with_history(10, seed=19, projects=2, rate_per_second=5)
    expected = expected_ids(sim)
    async with serve_simulator(sim) as url:
        config = write_config(tmp_path, url, signed=False, **brokers)
        count = message_count(expected)
        async with (
            mosquitto_sub(mosquitto_password, "boro/#", count=count, listen_s=60) as sub,
            running_bridge(config, tmp_path) as (health, log),
        ):
            received = await sub.messages()
            metrics = await wait_for(health, "/metrics", "borobridge_cursor_commit_timestamp_seconds{")
            ready = await wait_for(health, "/readyz", "ok")
    retained = await collect(mosquitto_password, "borobridge/#", count=1000, listen_s=3)
    records = await consume(kafka.bootstrap, [*event_topics(prefix, sim), *topic_names(settings).values()])
    assert {event["id"] for event in binary_events({t: r for t, r in records.items() if ".alarms." in t})} == expected
    assert {as_event(message)["id"] for message in transitions(received)} == expected
    said = log.read_text(encoding="utf-8")
    assert "DEBUG" in said
    for where, text in [
        ("stderr", said),
        ("Kafka records", kafka_text(records)),
        ("MQTT messages", mqtt_text(received + retained)),
        ("/metrics", metrics),
        ("/readyz", ready),
    ]:
        assert_no_secret(where, text, passwords)
