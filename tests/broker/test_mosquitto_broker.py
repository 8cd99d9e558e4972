"""The Mosquitto broker of the test suite behaves as the MQTT sink relies on.

Each behaviour is checked with two independent clients: aiomqtt (the library borobridge uses) and
the broker's own ``mosquitto_sub``.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import subprocess
import sys
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.mosquitto import (
    SCRIPT,
    MosquittoBroker,
    Protocol,
    collect,
    content_type_of,
    mosquitto_sub,
    publish_properties,
    session_properties,
    user_properties_of,
)

pytestmark = pytest.mark.mqtt

EVENT = b'{"alarm_id": 7, "state": "raised"}'
NOT_AUTHORIZED = 0x87
NO_MATCHING_SUBSCRIBERS = 0x10  # a success: below 0x80
TIMEOUT_S = 10


async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    """The next message of a subscribed client, or a timeout error."""
    async with asyncio.timeout(TIMEOUT_S):
        return await anext(client.messages)


async def retained_under(broker: MosquittoBroker, topic_filter: str) -> dict[str, bytes]:
    """Every retained message under `topic_filter`: those that arrive before a fresh marker message."""
    marker = "test/marker"
    retained: dict[str, bytes] = {}
    async with broker.client() as client:
        await client.subscribe(topic_filter, qos=1)
        await client.subscribe(marker, qos=1)
        await client.publish(marker, b"end", qos=1)
        for _ in range(100):
            message = await next_message(client)
            if message.topic.matches(marker):
                return retained
            retained[message.topic.value] = message.payload
    raise AssertionError("the marker message never arrived")


async def connection_refusal(client: aiomqtt.Client) -> str:
    """Why the broker refused `client`, once what the failed attempt held has been released."""
    try:
        async with client:
            pass
    except aiomqtt.MqttError as error:
        refusal = str(error)
    else:
        raise AssertionError("the broker accepted the connection")
    await asyncio.sleep(0)
    gc.collect()
    return refusal


async def test_mqtt5_publish_keeps_content_type_and_user_properties(mosquitto: MosquittoBroker) -> None:
    properties = publish_properties(
        content_type="application/json", specversion="1.0", id="23/7/raised/1", type="com.elecard.boro.raised"
    )
    async with mosquitto.client() as listener, mosquitto_sub(mosquitto, "boro/#", count=1) as printed:
        await listener.subscribe("boro/#", qos=1)
        async with mosquitto.client() as publisher:
            await publisher.publish("boro/23/7/etr/freeze", EVENT, qos=1, properties=properties)
        received = await next_message(listener)
        [line] = await printed.messages()

    expected_user_properties = {"specversion": "1.0", "id": "23/7/raised/1", "type": "com.elecard.boro.raised"}
    assert (received.topic.value, received.payload, received.qos) == ("boro/23/7/etr/freeze", EVENT, 1)
    assert content_type_of(received) == "application/json"
    assert user_properties_of(received) == expected_user_properties
    assert (line.topic, line.payload, line.qos) == ("boro/23/7/etr/freeze", EVENT, 1)
    assert line.content_type == "application/json"
    assert line.user_properties == expected_user_properties


async def test_mqtt311_publish_and_subscribe(mosquitto: MosquittoBroker) -> None:
    async with (
        mosquitto.client(protocol="mqttv311") as listener,
        mosquitto_sub(mosquitto, "boro/+/+/etr/#", count=1, protocol="mqttv311") as printed,
    ):
        await listener.subscribe("boro/+/+/etr/#", qos=1)
        async with mosquitto.client(protocol="mqttv311") as publisher:
            await publisher.publish("boro/23/7/etr/freeze", EVENT, qos=1)
        received = await next_message(listener)
        [line] = await printed.messages()

    assert (received.topic.value, received.payload, received.properties) == ("boro/23/7/etr/freeze", EVENT, None)
    assert (line.topic, line.payload, line.content_type, line.user_properties) == (
        "boro/23/7/etr/freeze",
        EVENT,
        None,
        {},
    )


async def test_retained_messages_survive_a_restart_until_an_empty_payload_clears_them(
    mosquitto: MosquittoBroker,
) -> None:
    port = mosquitto.port
    async with mosquitto.client() as publisher:
        await publisher.publish("boro/23/7/active/1", EVENT, qos=1, retain=True)
        await publisher.publish("boro/23/7/active/2", EVENT, qos=1, retain=True)
    mosquitto.restart()

    assert mosquitto.port == port
    printed = await collect(mosquitto, "boro/23/7/active/#", count=2)
    assert sorted((line.topic, line.payload, line.retain) for line in printed) == [
        ("boro/23/7/active/1", EVENT, True),
        ("boro/23/7/active/2", EVENT, True),
    ]
    async with mosquitto.client() as publisher:
        await publisher.publish("boro/23/7/active/1", b"", qos=1, retain=True)
    mosquitto.restart()

    assert await retained_under(mosquitto, "boro/#") == {"boro/23/7/active/2": EVENT}


def session_options(protocol: Protocol) -> dict[str, Any]:
    """Client options that keep the subscriptions and queued messages across disconnects."""
    if protocol == "mqttv5":
        return {"clean_start": False, "properties": session_properties(expiry_s=600)}
    return {"clean_session": False}


@pytest.mark.parametrize("protocol", ["mqttv5", "mqttv311"])
async def test_persistent_session_receives_what_was_published_while_it_was_away(
    mosquitto: MosquittoBroker, protocol: Protocol
) -> None:
    options = session_options(protocol)
    async with mosquitto.client(protocol=protocol, identifier="relay", **options) as relay:
        await relay.subscribe("boro/#", qos=1)
    async with mosquitto.client() as publisher:
        for number in range(3):
            await publisher.publish(f"boro/23/{number}/etr/freeze", str(number).encode(), qos=1)
    mosquitto.restart()

    async with mosquitto.client(protocol=protocol, identifier="relay", **options) as relay:
        received = [await next_message(relay) for _ in range(3)]

    assert [(message.payload, message.qos) for message in received] == [(b"0", 1), (b"1", 1), (b"2", 1)]


STATUS_CLIENT = """
import asyncio, sys, aiomqtt

async def main(port: int) -> None:
    will = aiomqtt.Will("borobridge/test/status", b"offline", qos=1, retain=True)
    async with aiomqtt.Client("127.0.0.1", port, will=will, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.publish("borobridge/test/status", b"online", qos=1, retain=True)
        print("online", flush=True)
        await asyncio.sleep(60)

asyncio.run(main(int(sys.argv[1])))
"""


async def test_last_will_replaces_the_retained_status_when_a_client_dies(mosquitto: MosquittoBroker) -> None:
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STATUS_CLIENT, str(mosquitto.port), stdout=asyncio.subprocess.PIPE
    )
    assert client.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            assert await client.stdout.readline() == b"online\n"
        async with mosquitto_sub(mosquitto, "borobridge/test/status", count=2) as printed:
            client.kill()
            status = await printed.messages()
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()

    assert [(line.payload, line.retain) for line in status] == [(b"online", True), (b"offline", False)]
    assert await retained_under(mosquitto, "borobridge/#") == {"borobridge/test/status": b"offline"}


async def test_password_broker_serves_its_user(mosquitto_password: MosquittoBroker) -> None:
    assert mosquitto_password.username == "borobridge"
    assert mosquitto_password.password
    async with mosquitto_sub(mosquitto_password, "boro/#", count=1) as printed:
        async with mosquitto_password.client() as publisher:
            await publisher.publish("boro/23/7/etr/freeze", EVENT, qos=1)
        [line] = await printed.messages()

    assert line.payload == EVENT


@pytest.mark.parametrize(("username", "password"), [("borobridge", "wrong"), (None, None)])
async def test_password_broker_refuses_wrong_or_missing_credentials(
    mosquitto_password: MosquittoBroker, username: str | None, password: str | None
) -> None:
    client = aiomqtt.Client(
        mosquitto_password.host,
        mosquitto_password.port,
        username=username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized") as refused:
        async with client:
            pass

    assert isinstance(refused.value.rc, ReasonCode)
    assert refused.value.rc.value == 135  # mosquitto 2.0 answers a wrong password with "not authorized"


async def test_tls_broker_serves_clients_that_trust_its_ca(mosquitto_tls: MosquittoBroker) -> None:
    assert mosquitto_tls.ca_file is not None
    ca_params = aiomqtt.TLSParameters(ca_certs=str(mosquitto_tls.ca_file))
    async with mosquitto_sub(mosquitto_tls, "boro/#", count=2) as printed:
        async with mosquitto_tls.client() as publisher:
            await publisher.publish("boro/1/1/etr/freeze", b"by IP", qos=1)
        async with aiomqtt.Client("localhost", mosquitto_tls.port, tls_params=ca_params) as publisher:
            await publisher.publish("boro/1/1/etr/freeze", b"by name", qos=1)
        lines = await printed.messages()

    assert [line.payload for line in lines] == [b"by IP", b"by name"]


async def test_tls_broker_refuses_clients_that_do_not_trust_its_ca(mosquitto_tls: MosquittoBroker) -> None:
    system_trust = ssl.create_default_context()
    client = aiomqtt.Client(mosquitto_tls.host, mosquitto_tls.port, tls_context=system_trust)
    # paho-mqtt does not close the socket of a failed TLS handshake: it is freed, with a
    # ResourceWarning, once the event loop drops the failed step's traceback.
    with pytest.warns(ResourceWarning, match="unclosed <ssl.SSLSocket"):
        refusal = await connection_refusal(client)

    assert "certificate verify failed" in refusal


async def test_tls_broker_refuses_plain_tcp(mosquitto_tls: MosquittoBroker) -> None:
    client = aiomqtt.Client(mosquitto_tls.host, mosquitto_tls.port, timeout=2)
    with pytest.raises(aiomqtt.MqttError):
        async with client:
            pass


def test_script_refuses_a_second_broker_in_the_same_directory(mosquitto: MosquittoBroker) -> None:
    second = subprocess.run(
        [str(SCRIPT), "start", "--dir", str(mosquitto.directory)], capture_output=True, text=True, check=False
    )

    assert second.returncode != 0
    assert "already running" in second.stderr


def test_script_refuses_the_system_port(mosquitto: MosquittoBroker) -> None:
    refused = subprocess.run(
        [str(SCRIPT), "start", "--dir", str(mosquitto.directory / "other"), "--port", "1883"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert refused.returncode != 0
    assert "1883" in refused.stderr


def puback_reason(broker: MosquittoBroker, topic: str, protocol: Protocol) -> int:
    """The reason code of the PUBACK that ``mosquitto_pub`` gets for one QoS 1 publish to `topic`."""
    completed = subprocess.run(
        ["mosquitto_pub", *broker.cli_options(), "-V", protocol, "-q", "1", "-d", "-t", topic, "-m", "x"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    [line] = [line for line in completed.stdout.splitlines() if "received PUBACK" in line]
    return int(line.rpartition("RC:")[2].rstrip(")"))


def test_acl_broker_refuses_a_denied_publish_with_reason_0x87_to_mqtt5_clients_only(
    mosquitto_acl: MosquittoBroker,
) -> None:
    mosquitto_acl.set_acl("user borobridge\ntopic read #\ntopic write borobridge/#\n")

    assert puback_reason(mosquitto_acl, "borobridge/x/status", "mqttv5") == NO_MATCHING_SUBSCRIBERS
    assert puback_reason(mosquitto_acl, "boro/23/7/etr/freeze", "mqttv5") == NOT_AUTHORIZED
    assert puback_reason(mosquitto_acl, "boro/23/7/etr/freeze", "mqttv311") == 0  # 3.1.1 cannot say no
    mosquitto_acl.set_acl("user borobridge\ntopic readwrite #\n")
    assert puback_reason(mosquitto_acl, "boro/23/7/etr/freeze", "mqttv5") == NO_MATCHING_SUBSCRIBERS
