"""Connection options shared by every aiokafka client of the bridge (producer, consumers, admin)."""

from __future__ import annotations

import re
import ssl
from typing import Any, Final

from borobridge.errors import ConfigError
from borobridge.settings import KafkaSettings, KafkaTlsSettings

_SERVER: Final = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$")
MAX_PORT: Final = 65535


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Bootstrap servers, security protocol, TLS context and SASL credentials as aiokafka keywords."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings.bootstrap_servers),
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": _protocol(settings),
    }
    if settings.tls is not None:
        options["ssl_context"] = _tls_context(settings.tls)
    if settings.sasl is not None:
        options["sasl_mechanism"] = settings.sasl.mechanism
        options["sasl_plain_username"] = settings.sasl.username
        options["sasl_plain_password"] = settings.sasl.password.reveal()
    return options


def bootstrap_servers(text: str) -> list[str]:
    """The ``host[:port]`` entries of ``kafka.bootstrap_servers``; ConfigError names the first malformed one."""
    servers = [entry.strip() for entry in text.split(",")]
    for server in servers:
        if not _is_server(server):
            raise ConfigError(
                [
                    f"kafka.bootstrap_servers: {server!r} is not host:port with a port from 1 to {MAX_PORT}; "
                    "write e.g. kafka-0:9092,kafka-1:9092"
                ]
            )
    return servers


def _is_server(server: str) -> bool:
    match = _SERVER.match(server)
    return match is not None and (match.group(1) is None or 0 < int(match.group(1)) <= MAX_PORT)


def connection_hint(settings: KafkaSettings) -> str:
    """What to check when the brokers cannot be reached: the servers, and the SASL and TLS settings in use."""
    checks = [f"kafka.bootstrap_servers ({settings.bootstrap_servers})"]
    if settings.sasl is not None:
        checks.append("the SASL credentials (kafka.sasl username, password, mechanism)")
    if settings.tls is not None:
        checks.append("the TLS files (kafka.tls)")
    return f"check {' and '.join(checks)}"


def _protocol(settings: KafkaSettings) -> str:
    if settings.sasl is not None:
        return "SASL_SSL" if settings.tls is not None else "SASL_PLAINTEXT"
    return "SSL" if settings.tls is not None else "PLAINTEXT"


def _tls_context(tls: KafkaTlsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.check_hostname = tls.check_hostname
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context
