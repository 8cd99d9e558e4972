"""A real Mosquitto broker for tests, and `mosquitto_sub` as an independent subscriber.

Load with ``pytest_plugins = ["tests.support.mosquitto"]``; the fixtures ``mosquitto``,
``mosquitto_password``, ``mosquitto_acl`` and ``mosquitto_tls`` each give a `MosquittoBroker` of its own, started
from ``scripts/mosquitto`` on a free 127.0.0.1 port and stopped after the test. Mosquitto is
installed on first use when it is missing. `tls_broker` starts a TLS broker with certificates the test made
(`tests.support.tls`), optionally requiring client certificates (mutual TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.tls import CertificateAuthority, Issued

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mosquitto"
SUBSCRIBER_READY_TIMEOUT_S = 10.0
MESSAGE_LINE_MARKER = "MSG "

Protocol = Literal["mqttv5", "mqttv311"]
AIOMQTT_PROTOCOLS: dict[Protocol, aiomqtt.ProtocolVersion] = {
    "mqttv5": aiomqtt.ProtocolVersion.V5,
    "mqttv311": aiomqtt.ProtocolVersion.V311,
}


@functools.cache
def ensure_installed() -> None:
    """Install Mosquitto through the project script (a no-op when it is there already)."""
    run_script("install", timeout_s=900)


def run_script(*arguments: str, timeout_s: float = 60) -> str:
    """Run ``scripts/mosquitto`` and return what it printed; its error output names any failure."""
    completed = subprocess.run(
        [str(SCRIPT), *arguments], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"scripts/mosquitto {' '.join(arguments)} failed: {completed.stderr.strip()}")
    return completed.stdout


@dataclass
class MosquittoBroker:
    """One Mosquitto process whose state (config, persistence, credentials) lives in `directory`.

    `stop` and a later `start` (or `restart`) keep the port, the credentials, the certificates and
    the persistence database, so retained messages and persistent sessions outlive an outage.
    """

    directory: Path
    with_password: bool = False
    with_tls: bool = False
    with_acl: bool = False
    with_client_certificates: bool = False
    client_certificate: Issued | None = None  # what the test's own clients present to a mutual-TLS broker
    host: str = "127.0.0.1"
    port: int = 0
    running: bool = field(default=False, init=False)

    @property
    def username(self) -> str | None:
        """The user the broker accepts, when it requires a password."""
        return "borobridge" if self.with_password else None

    @property
    def password(self) -> str | None:
        """The random password of `username`, read from the broker directory."""
        if not self.with_password:
            return None
        return (self.directory / "password").read_text().strip()

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate that signed the broker's TLS certificate."""
        return self.directory / "ca.crt" if self.with_tls else None

    @property
    def log_file(self) -> Path:
        """The broker's own log, handy in an assertion message."""
        return self.directory / "mosquitto.log"

    def start(self) -> None:
        """Start the broker (on its previous port when it ran before) and wait until it listens."""
        if self.running:
            raise RuntimeError(f"the broker in {self.directory} is already running")
        self.port = int(run_script("start", *self._start_options()).strip())
        self.running = True

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker: SIGTERM saves the database first, ``kill=True`` simulates a crash."""
        run_script("stop", "--dir", str(self.directory), *(["--kill"] if kill else []))
        self.running = False

    def set_acl(self, rules: str) -> None:
        """Replace the broker's topic rules (mosquitto ``acl_file`` syntax); a running broker re-reads them."""
        if not self.with_acl:
            raise RuntimeError("this broker was started without an ACL file")
        (self.directory / "acl").write_text(rules, encoding="utf-8")
        if self.running:
            run_script("reload", "--dir", str(self.directory))

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence directory."""
        self.stop()
        self.start()

    def client(self, *, protocol: Protocol = "mqttv5", **options: Any) -> aiomqtt.Client:
        """An aiomqtt client connected to this broker with the right credentials and CA."""
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            protocol=AIOMQTT_PROTOCOLS[protocol],
            tls_context=self.tls_context(),
            **options,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """A client TLS context that trusts only this broker's CA (None without TLS)."""
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_certificate is not None:
            context.load_cert_chain(self.client_certificate.cert_file, self.client_certificate.key_file)
        return context

    def cli_options(self) -> list[str]:
        """Connection options for mosquitto_sub / mosquitto_pub."""
        options = ["-h", self.host, "-p", str(self.port)]
        if self.username is not None and self.password is not None:
            options += ["-u", self.username, "-P", self.password]
        if self.ca_file is not None:
            options += ["--cafile", str(self.ca_file)]
        if self.client_certificate is not None:
            certificate = self.client_certificate
            options += ["--cert", str(certificate.cert_file), "--key", str(certificate.key_file)]
        return options

    def _start_options(self) -> list[str]:
        options = ["--dir", str(self.directory)]
        if self.port:
            options += ["--port", str(self.port)]
        if self.with_password:
            options.append("--password")
        if self.with_tls:
            options.append("--tls")
        if self.with_acl:
            options.append("--acl")
        if self.with_client_certificates:
            options.append("--client-certificates")
        return options


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as mosquitto_sub printed it (a repeated user property keeps its last value)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    content_type: str | None = None
    user_properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_line(cls, line: str) -> ReceivedMessage:
        """Parse ``MSG <payload hex> <mosquitto_sub %j JSON>``."""
        payload_hex, _, document = line.removeprefix(MESSAGE_LINE_MARKER).partition(" ")
        fields = json.loads(document)
        properties = fields.get("properties", {})
        return cls(
            topic=fields["topic"],
            payload=bytes.fromhex(payload_hex),
            qos=fields["qos"],
            retain=bool(fields["retain"]),
            content_type=properties.get("content-type"),
            user_properties=properties.get("user-properties", {}),
        )


class Subscription:
    """A running ``mosquitto_sub`` that has its subscription acknowledged."""

    def __init__(self, process: asyncio.subprocess.Process, listen_s: float) -> None:
        self._process = process
        self._listen_s = listen_s

    async def wait_subscribed(self) -> None:
        """Read the debug output until the broker granted the subscription."""
        async with asyncio.timeout(SUBSCRIBER_READY_TIMEOUT_S):
            while line := await self._read_line():
                if line.startswith("Subscribed (mid:"):
                    _refuse_failed_grant(line)
                    return
        raise RuntimeError(f"mosquitto_sub ended before subscribing: {await self._error_text()}")

    async def messages(self) -> list[ReceivedMessage]:
        """Wait until mosquitto_sub got its count or its timeout passed; return what arrived."""
        async with asyncio.timeout(self._listen_s + 10):
            output, _ = await self._process.communicate()
        lines = output.decode(errors="replace").splitlines()
        return [ReceivedMessage.from_line(line) for line in lines if line.startswith(MESSAGE_LINE_MARKER)]

    def terminate(self) -> None:
        """End mosquitto_sub if it is still running."""
        if self._process.returncode is None:
            self._process.kill()

    async def _read_line(self) -> str:
        assert self._process.stdout is not None
        return (await self._process.stdout.readline()).decode(errors="replace")

    async def _error_text(self) -> str:
        assert self._process.stderr is not None
        return (await self._process.stderr.read()).decode(errors="replace").strip()


def _refuse_failed_grant(line: str) -> None:
    granted = [int(code) for code in line.rpartition(":")[2].replace(",", " ").split()]
    if any(code >= 0x80 for code in granted):
        raise RuntimeError(f"the broker refused the subscription: {line.strip()}")


@contextlib.asynccontextmanager
async def mosquitto_sub(
    broker: MosquittoBroker,
    topic_filter: str,
    *,
    count: int,
    listen_s: float = 10.0,
    protocol: Protocol = "mqttv5",
    qos: int = 1,
) -> AsyncIterator[Subscription]:
    """Run ``mosquitto_sub`` until `count` messages or `listen_s` seconds; yields once subscribed.

    Publish inside the block, then ``await subscription.messages()``.
    """
    process = await asyncio.create_subprocess_exec(
        *_sub_command(broker, topic_filter, count=count, listen_s=listen_s, protocol=protocol, qos=qos),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=16 * 1024 * 1024,
    )
    subscription = Subscription(process, listen_s)
    try:
        await subscription.wait_subscribed()
        yield subscription
    finally:
        subscription.terminate()
        await process.wait()


def _sub_command(
    broker: MosquittoBroker, topic_filter: str, *, count: int, listen_s: float, protocol: Protocol, qos: int
) -> list[str]:
    return [
        *["stdbuf", "--output=L"],  # line-buffered, so the subscription acknowledgement shows at once
        "mosquitto_sub",
        *broker.cli_options(),
        *["-V", protocol, "-t", topic_filter, "-q", str(qos), "-d"],
        *["-C", str(count), "-W", str(max(1, round(listen_s)))],
        *["-F", f"{MESSAGE_LINE_MARKER}%x %j"],
    ]


async def collect(
    broker: MosquittoBroker,
    topic_filter: str,
    count: int,
    listen_s: float = 10.0,
    protocol: Protocol = "mqttv5",
) -> list[ReceivedMessage]:
    """Subscribe with mosquitto_sub and return the messages already there (retained ones)."""
    async with mosquitto_sub(broker, topic_filter, count=count, listen_s=listen_s, protocol=protocol) as sub:
        return await sub.messages()


def publish_properties(*, content_type: str | None = None, **user_properties: str) -> Properties:
    """MQTT 5 PUBLISH properties: a content type and user properties, in the given order."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped
    if content_type is not None:
        properties.ContentType = content_type
    if user_properties:
        properties.UserProperty = list(user_properties.items())
    return properties


def session_properties(*, expiry_s: int = 3600) -> Properties:
    """MQTT 5 CONNECT properties that keep the session `expiry_s` seconds after a disconnect."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho is untyped
    properties.SessionExpiryInterval = expiry_s
    return properties


def user_properties_of(message: aiomqtt.Message) -> dict[str, str]:
    """The MQTT 5 user properties of a message received with aiomqtt."""
    pairs: list[tuple[str, str]] = getattr(message.properties, "UserProperty", [])
    return dict(pairs)


def content_type_of(message: aiomqtt.Message) -> str | None:
    """The MQTT 5 content type of a message received with aiomqtt."""
    content_type: str | None = getattr(message.properties, "ContentType", None)
    return content_type


@contextlib.contextmanager
def running_broker(
    directory: Path,
    *,
    with_password: bool = False,
    with_tls: bool = False,
    with_acl: bool = False,
    with_client_certificates: bool = False,
) -> Iterator[MosquittoBroker]:
    """A started broker, stopped on exit whatever happened."""
    ensure_installed()
    broker = MosquittoBroker(
        directory,
        with_password=with_password,
        with_tls=with_tls,
        with_acl=with_acl,
        with_client_certificates=with_client_certificates,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def tls_broker(
    directory: Path, authority: CertificateAuthority, server: Issued, *, client_certificates: bool = False
) -> Iterator[MosquittoBroker]:
    """A started TLS-only broker presenting ``server``; with ``client_certificates``, it admits only clients whose
    certificate ``authority`` signed."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(authority.ca_file, directory / "ca.crt")
    shutil.copyfile(server.cert_file, directory / "server.crt")
    shutil.copyfile(server.key_file, directory / "server.key")
    with running_broker(directory, with_tls=True, with_client_certificates=client_certificates) as broker:
        if client_certificates:
            broker.client_certificate = authority.issue("test-subscriber", ["test-subscriber"], client=True)
        yield broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain broker: anonymous access, no TLS."""
    with running_broker(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def mosquitto_password(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker that accepts only the user `borobridge` with its random password."""
    with running_broker(tmp_path / "mosquitto-password", with_password=True) as broker:
        yield broker


@pytest.fixture
def mosquitto_acl(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A password broker whose topic rules (an ACL file, at first allowing everything) `set_acl` replaces."""
    with running_broker(tmp_path / "mosquitto-acl", with_password=True, with_acl=True) as broker:
        yield broker


@pytest.fixture
def mosquitto_tls(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A TLS-only broker whose certificate (127.0.0.1 / localhost) is signed by `ca_file`."""
    with running_broker(tmp_path / "mosquitto-tls", with_tls=True) as broker:
        yield broker
