"""TLS to a real Mosquitto: delivery over TLS and mutual TLS, and one line naming each TLS failure."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path
from typing import Final

import pytest

from borobridge.errors import MqttDeliveryError
from borobridge.settings import MqttSettings, load_settings
from borobridge.simulator import serve_simulator
from borobridge.sinks.mqtt import MqttPublisher
from borobridge.sinks.mqtt_messages import MqttMessage
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.mosquitto import MosquittoBroker, mosquitto_sub, tls_broker
from tests.support.mqtt_bridge import as_event, direct_bridge, message_count, transitions
from tests.support.tls import CertificateAuthority, Issued

pytestmark = pytest.mark.mqtt

PROBE: Final = MqttMessage(topic="borobridge/tls-test/probe", payload=b"probe", retain=False)


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "pki")


def tls_settings(broker: MosquittoBroker, ca_file: Path, client: Issued | None = None) -> MqttSettings:
    environ = {
        "BOROBRIDGE_MQTT__HOST": broker.host,
        "BOROBRIDGE_MQTT__PORT": str(broker.port),
        "BOROBRIDGE_MQTT__PUBLISH_TIMEOUT": "3",
        "BOROBRIDGE_MQTT__TLS__CA_FILE": str(ca_file),
    }
    if client is not None:
        environ |= {
            "BOROBRIDGE_MQTT__TLS__CERT_FILE": str(client.cert_file),
            "BOROBRIDGE_MQTT__TLS__KEY_FILE": str(client.key_file),
        }
    settings = load_settings(None, environ).mqtt
    assert settings is not None
    return settings


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
async def test_the_bridge_delivers_over_tls(authority: CertificateAuthority, tmp_path: Path, mutual: bool) -> None:
    client = authority.issue("bridge", ["borobridge"], client=True) if mutual else None
    with tls_broker(tmp_path / "broker", authority, authority.issue("server"), client_certificates=mutual) as broker:
        sim = simulator_with_history(5, seed=71, projects=1, rate_per_second=10)
        expected = expected_ids(sim)
        async with (
            serve_simulator(sim) as url,
            mosquitto_sub(broker, "boro/#", count=message_count(expected), listen_s=15) as sub,
        ):
            async with direct_bridge(url, tmp_path, tls_settings(broker, authority.ca_file, client)) as pipeline:
                await pipeline.poll_once()
            received = await sub.messages()
    assert_exactly_once_in_order([as_event(m) for m in transitions(received)], sim, expected)


async def failure_of(settings: MqttSettings) -> str:
    """The error of the bridge's first publish.

    paho-mqtt leaves the socket of a failed TLS handshake unclosed (test_mosquitto_broker shows it): its
    ResourceWarning is expected here, and the socket is collected before the test ends.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            async with MqttPublisher(settings, "tls-test") as publisher:
                await publisher.publish_messages([PROBE])
        except MqttDeliveryError as error:
            failure = str(error)
        else:
            pytest.fail("the publish succeeded")
        gc.collect()
    return failure


async def test_a_ca_that_did_not_sign_the_certificate(authority: CertificateAuthority, tmp_path: Path) -> None:
    stranger = CertificateAuthority.create(tmp_path / "stranger", "a stranger CA")
    with tls_broker(tmp_path / "broker", authority, authority.issue("server")) as broker:
        failure = await failure_of(tls_settings(broker, stranger.ca_file))
    assert failure == (
        f"cannot connect to MQTT broker 127.0.0.1:{broker.port}: TLS: the server's certificate at "
        f"127.0.0.1:{broker.port} is not signed by the configured CA (mqtt.tls.ca_file); set mqtt.tls.ca_file to "
        "the CA that signed it"
    )


async def test_a_certificate_for_another_host(authority: CertificateAuthority, tmp_path: Path) -> None:
    with tls_broker(tmp_path / "broker", authority, authority.issue("server", ["mqtt.invalid"])) as broker:
        failure = await failure_of(tls_settings(broker, authority.ca_file))
    assert failure == (
        f"cannot connect to MQTT broker 127.0.0.1:{broker.port}: TLS: the server's certificate at "
        f"127.0.0.1:{broker.port} is not valid for the host name 127.0.0.1; connect by a name the certificate "
        "lists, or have it reissued for this one"
    )


async def test_an_expired_certificate(authority: CertificateAuthority, tmp_path: Path) -> None:
    with tls_broker(tmp_path / "broker", authority, authority.issue("server", expired=True)) as broker:
        failure = await failure_of(tls_settings(broker, authority.ca_file))
    assert failure == (
        f"cannot connect to MQTT broker 127.0.0.1:{broker.port}: TLS: the server's certificate at "
        f"127.0.0.1:{broker.port} has expired; renew it on the server"
    )


async def test_no_client_certificate_for_a_mutual_tls_broker(authority: CertificateAuthority, tmp_path: Path) -> None:
    server = authority.issue("server")
    with tls_broker(tmp_path / "broker", authority, server, client_certificates=True) as broker:
        failure = await failure_of(tls_settings(broker, authority.ca_file))
    assert failure == (
        f"cannot connect to MQTT broker 127.0.0.1:{broker.port}: TLS: the server at 127.0.0.1:{broker.port} "
        "requires a client certificate; set mqtt.tls.cert_file and mqtt.tls.key_file"
    )


async def test_tls_never_falls_back_to_a_plaintext_broker(
    mosquitto: MosquittoBroker, authority: CertificateAuthority
) -> None:
    async with mosquitto_sub(mosquitto, "borobridge/#", count=1, listen_s=3) as sub:
        failure = await failure_of(tls_settings(mosquitto, authority.ca_file))
        received = await sub.messages()
    assert failure == (
        f"cannot connect to MQTT broker 127.0.0.1:{mosquitto.port}: TLS: 127.0.0.1:{mosquitto.port} does not "
        "answer in TLS (a plaintext port?); mqtt.tls is set, so the bridge speaks only TLS: give the address of "
        "the server's TLS port"
    )
    assert received == []  # not even the bridge's status went out in plaintext
