"""Connection options shared by every aiokafka client of the bridge (producer, consumers, admin)."""

from __future__ import annotations

import ssl
from typing import Any

from borobridge.settings import KafkaSettings, KafkaTlsSettings


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Bootstrap servers, security protocol, TLS context and SASL credentials as aiokafka keywords."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
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
