"""The TLS settings: client certificate keys are file paths, unreadable files and http:// with TLS are refused."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from borobridge.errors import ConfigError
from borobridge.settings import load_settings
from borobridge.tls import client_context
from tests.support.settings import write_config
from tests.support.tls import CertificateAuthority


@pytest.mark.parametrize("section", ["kafka", "mqtt", "boro"])
def test_a_client_key_file_is_a_path_not_a_secret_to_read(tmp_path: Path, section: str) -> None:
    client = CertificateAuthority.create(tmp_path).issue("client", ["client"], client=True)
    tls = {"ca_file": "/etc/ssl/certs/ca.pem", "cert_file": str(client.cert_file), "key_file": str(client.key_file)}
    raw = {
        "kafka": {"kafka": {"bootstrap_servers": "kafka:9093", "tls": tls}},
        "mqtt": {"mqtt": {"host": "mqtt", "tls": tls}},
        "boro": {"boro": {"url": "https://boro.example/ctrl_api/v1/json", "tls": tls}},
    }[section]
    settings = load_settings(write_config(tmp_path, raw), {})
    chosen = getattr(settings, section).tls
    assert (chosen.cert_file, chosen.key_file) == (str(client.cert_file), str(client.key_file))


def test_the_key_file_of_the_hmac_key_is_still_read(tmp_path: Path) -> None:
    key_file = tmp_path / "hmac-key"
    key_file.write_text("c2VjcmV0LWtleS1mb3ItYm9ybw==\n", encoding="utf-8")
    settings = load_settings(write_config(tmp_path, {"boro": {"hmac": {"key_file": str(key_file)}}}), {})
    assert settings.boro.hmac is not None
    assert settings.boro.hmac.key.reveal() == "c2VjcmV0LWtleS1mb3ItYm9ybw=="


def test_tls_for_boro_needs_an_https_url(tmp_path: Path) -> None:
    config = {"boro": {"url": "http://boro.example/ctrl_api/v1/json", "tls": {"ca_file": "/etc/ca.pem"}}}
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, config), {})
    assert caught.value.errors == [
        "boro.tls: set, but boro.url is http://boro.example/ctrl_api/v1/json, which is plaintext; write https://"
    ]


def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    settings = load_settings(None, {"BOROBRIDGE_MQTT__HOST": "mqtt", "BOROBRIDGE_MQTT__TLS__CA_FILE": "/no/ca.pem"})
    assert settings.mqtt is not None
    assert settings.mqtt.tls is not None
    with pytest.raises(ConfigError) as caught:
        client_context(settings.mqtt.tls, "mqtt.tls")
    assert caught.value.errors == [
        "mqtt.tls.ca_file: cannot read the TLS file '/no/ca.pem' (No such file or directory)"
    ]


def test_a_ca_file_that_is_not_pem_is_a_configuration_error(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n", encoding="utf-8")
    settings = load_settings(None, {"BOROBRIDGE_MQTT__HOST": "mqtt", "BOROBRIDGE_MQTT__TLS__CA_FILE": str(not_pem)})
    assert settings.mqtt is not None
    assert settings.mqtt.tls is not None
    with pytest.raises(ConfigError, match=r"^invalid configuration:\n  mqtt\.tls\.ca_file: '.*' is not a PEM"):
        client_context(settings.mqtt.tls, "mqtt.tls")


def test_a_trusted_ca_and_a_client_certificate_make_a_context(tmp_path: Path) -> None:
    authority = CertificateAuthority.create(tmp_path)
    client = authority.issue("client", ["client"], client=True)
    settings = load_settings(
        None,
        {
            "BOROBRIDGE_MQTT__HOST": "mqtt",
            "BOROBRIDGE_MQTT__TLS__CA_FILE": str(authority.ca_file),
            "BOROBRIDGE_MQTT__TLS__CERT_FILE": str(client.cert_file),
            "BOROBRIDGE_MQTT__TLS__KEY_FILE": str(client.key_file),
        },
    )
    assert settings.mqtt is not None
    assert settings.mqtt.tls is not None
    context = client_context(settings.mqtt.tls, "mqtt.tls")
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [entry["subject"] for entry in context.get_ca_certs()] == [((("commonName", "borobridge test CA"),),)]


def test_a_key_without_its_certificate_is_a_configuration_error() -> None:
    settings = load_settings(
        None, {"BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS": "k:9093", "BOROBRIDGE_KAFKA__TLS__KEY_FILE": "/k"}
    )
    assert settings.kafka is not None
    assert settings.kafka.tls is not None
    with pytest.raises(ConfigError) as caught:
        client_context(settings.kafka.tls, "kafka.tls")
    assert caught.value.errors == ["kafka.tls.key_file: set kafka.tls.cert_file too (the certificate of that key)"]
