"""Connection options shared by every aiokafka client of the bridge (producer, consumers, admin), and what is wrong
when the brokers cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Final

from borobridge import tls
from borobridge.errors import ConfigError
from borobridge.kafka.errors import quoted
from borobridge.settings import KafkaSettings

_SERVER: Final = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$")
MAX_PORT: Final = 65535
DEFAULT_PORT: Final = 9092  # aiokafka's, for a server given without one


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Bootstrap servers, security protocol, TLS context and SASL credentials as aiokafka keywords."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings.bootstrap_servers),
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": _protocol(settings),
    }
    if settings.tls is not None:
        options["ssl_context"] = tls.client_context(
            settings.tls, "kafka.tls", check_hostname=settings.tls.check_hostname
        )
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


async def connection_problem(settings: KafkaSettings, error: BaseException) -> str:
    """Why the brokers could not be reached, for an error message: the failed TLS handshake (:func:`tls_problem`),
    else the error and :func:`connection_hint`."""
    return await tls_problem(settings) or f"{quoted(error)}; {connection_hint(settings)}"


async def tls_problem(settings: KafkaSettings) -> str | None:
    """With TLS configured, what fails in a handshake with the first bootstrap server it fails with, explained
    (aiokafka logs it, but raises only "Unable to bootstrap"); None without TLS or a failing handshake."""
    if settings.tls is None:
        return None
    context = tls.client_context(settings.tls, "kafka.tls", check_hostname=settings.tls.check_hostname)
    servers = bootstrap_servers(settings.bootstrap_servers)
    problems = await asyncio.gather(*(tls.probe(*_host_port(server), context, "kafka.tls") for server in servers))
    return next((problem for problem in problems if problem is not None), None)


async def any_reachable(settings: KafkaSettings, seconds: float) -> bool:
    """Whether any bootstrap server accepts a TCP connection within ``seconds``."""
    servers = [_host_port(server) for server in bootstrap_servers(settings.bootstrap_servers)]
    return any(await asyncio.gather(*(_accepts(host, port, seconds) for host, port in servers)))


async def _accepts(host: str, port: int, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _host_port(server: str) -> tuple[str, int]:
    match = _SERVER.match(server)
    port = match.group(1) if match is not None else None
    host = server.rpartition(":")[0] if port is not None else server
    return host.strip("[]"), int(port or DEFAULT_PORT)


def _protocol(settings: KafkaSettings) -> str:
    if settings.sasl is not None:
        return "SASL_SSL" if settings.tls is not None else "SASL_PLAINTEXT"
    return "SSL" if settings.tls is not None else "PLAINTEXT"
