"""A real Apache Kafka for tests: the `KafkaCluster` helper and its pytest fixtures.

Load with ``pytest_plugins = ["tests.support.kafka"]``. Two session-scoped fixtures, each started on
first use only, through ``scripts/kafka`` (KRaft nodes on free 127.0.0.1 ports, jars fetched from Maven
when missing):

- ``kafka``: one node, with a PLAINTEXT listener (`KafkaCluster.bootstrap`) and a SASL_PLAINTEXT listener
  for SCRAM-SHA-256 and SCRAM-SHA-512 (`KafkaCluster.scram_bootstrap`, `scram_user`, `scram_password`);
- ``kafka_cluster``: three nodes, replication factor 3 and ``min.insync.replicas=2`` by default, for
  failover tests (`stop_node`, `start_node`, `restart_node`, `leader_of`).

``kafka_tls`` (a `TlsKafka`) is a third node, started only by the tests that ask for it: TLS listeners whose
certificates a CA of its own signed (`tests.support.tls`), and SCRAM users as in ``kafka``.

Tests share these brokers, so each one names its topics with `unique_topic`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from tests.support.tls import CertificateAuthority

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka"
FETCH_TIMEOUT_S = 900.0
SCRIPT_TIMEOUT_S = 180.0
DESCRIBE_RETRY_S = 30.0
SERVING_TIMEOUT_S = 60.0
NO_LEADER = -1


def unique_topic(prefix: str = "test") -> str:
    """A topic name no other test uses, e.g. ``orders.3f9c2a1b7d4e``."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def fetch_kafka_jars() -> None:
    """Copy the broker's jars into the cache unless they are there already (a no-op then)."""
    subprocess.run([str(SCRIPT), "fetch"], check=True, timeout=FETCH_TIMEOUT_S)


class KafkaScriptError(RuntimeError):
    """``scripts/kafka`` failed; the message carries what it printed (the broker log's tail on start)."""


@dataclass(frozen=True, kw_only=True)
class PartitionState:
    """Who leads a partition and which nodes hold it, as the brokers' metadata says."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class KafkaCluster:
    """Kafka nodes whose configuration, data and logs live in `directory` (node ids are 1..brokers).

    Starting and stopping the whole cluster is synchronous (fixtures); node operations are coroutines so
    that clients running in the test's event loop keep working while a node goes down or comes back.
    """

    def __init__(
        self,
        directory: Path,
        *,
        brokers: int = 1,
        scram: bool = False,
        listeners: dict[str, str] | None = None,
        config: Path | None = None,
    ) -> None:
        self.directory = directory
        self.brokers = brokers
        self.scram = scram
        self.listeners = listeners or {}  # extra listener name → security protocol
        self.config = config  # extra broker properties
        self.bootstrap = ""
        self.scram_bootstrap: str | None = None
        self.listener_bootstrap: dict[str, str] = {}

    @property
    def node_ids(self) -> range:
        """The ids of the cluster's nodes, which are also their broker ids."""
        return range(1, self.brokers + 1)

    @property
    def scram_user(self) -> str | None:
        """The SCRAM user created when the storage was formatted."""
        return "borobridge" if self.scram else None

    @property
    def scram_password(self) -> str | None:
        """The random password of `scram_user`, read from the cluster directory."""
        if not self.scram:
            return None
        return (self.directory / "scram-password").read_text().strip()

    def log_file(self, node: int) -> Path:
        """The server log of one node, handy in an assertion message."""
        return self.directory / f"node-{node}" / "logs" / "server.log"

    def start(self) -> None:
        """Format the storage (first time only), start every node and wait until all of them serve."""
        shape = ["--brokers", str(self.brokers), *(["--scram"] if self.scram else [])]
        for name, protocol in self.listeners.items():
            shape += ["--listener", f"{name}:{protocol}"]
        if self.config is not None:
            shape += ["--config", str(self.config)]
        lines = self._run("start", *shape, "--owner-pid", str(os.getpid())).splitlines()
        self.bootstrap = lines[0]
        self.scram_bootstrap = lines[1] if self.scram else None
        extra = lines[2:] if self.scram else lines[1:]
        self.listener_bootstrap = dict(line.split(" ", 1) for line in extra)
        with ThreadPoolExecutor(max_workers=1) as worker:  # the caller may be inside a running event loop
            worker.submit(asyncio.run, self._wait_until_serving(self.node_ids)).result()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after a bounded wait)."""
        self._run("stop")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    async def stop_node(self, node: int, *, kill: bool = False) -> None:
        """Stop one node: a clean shutdown, or a crash with ``kill=True``."""
        await self._run_async("stop-node", "--node", str(node), *(["--kill"] if kill else []))

    async def start_node(self, node: int) -> None:
        """Start a stopped node again and wait until it serves."""
        await self._run_async("start-node", "--node", str(node))
        await self._wait_until_serving([node])

    async def wait_until_serving(self, node: int) -> None:
        """Wait until a node that was paused (SIGSTOP, SIGCONT) serves its metadata again."""
        await self._wait_until_serving([node])

    async def restart_node(self, node: int, *, kill: bool = False) -> None:
        """Stop one node and start it again on the same ports with the same data."""
        await self.stop_node(node, kill=kill)
        await self.start_node(node)

    async def partition_state(self, topic: str, partition: int = 0) -> PartitionState:
        """The leader, replicas and in-sync replicas of one partition, asked from a live broker."""
        state = await self._describe_partition(topic, partition)
        if state is None:
            raise LookupError(f"the brokers know no partition {topic}/{partition}")
        return state

    async def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node leading the partition, or `NO_LEADER` while none does."""
        return (await self.partition_state(topic, partition)).leader

    async def wait_for_partition(
        self, topic: str, partition: int = 0, *, isr_size: int, timeout_s: float = 60.0
    ) -> PartitionState:
        """Poll until the partition has a leader and `isr_size` in-sync replicas; fail after `timeout_s`.

        A partition the brokers do not know yet (just created) counts as not ready.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            state = await self._describe_partition(topic, partition)
            if state is not None and state.leader != NO_LEADER and len(state.isr) == isr_size:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}/{partition} still {state} after {timeout_s}s")
            await asyncio.sleep(0.25)

    async def _wait_until_serving(self, nodes: Iterable[int]) -> None:
        """Wait until each node's metadata lists every node: a node that just started may still be
        applying its own registration and would answer with no brokers at all."""
        addresses = self.bootstrap.split(",")
        deadline = time.monotonic() + SERVING_TIMEOUT_S
        for node in nodes:
            while await _brokers_known_to(addresses[node - 1]) < self.brokers:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {node} did not list all nodes; see {self.log_file(node)}")
                await asyncio.sleep(0.2)

    async def _describe_partition(self, topic: str, partition: int) -> PartitionState | None:
        """Ask the brokers, retrying while the one asked is down (metadata lists a crashed node for a while)."""
        deadline = time.monotonic() + DESCRIBE_RETRY_S
        while True:
            try:
                return _find_partition(await self._describe_topic(topic), topic, partition)
            except KafkaError as error:
                if not error.retriable or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.25)

    async def _describe_topic(self, topic: str) -> list[dict[str, Any]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
        await admin.start()
        try:
            described: list[dict[str, Any]] = await admin.describe_topics([topic])
        finally:
            await admin.close()
        return described

    def _command(self, action: str, *options: str) -> list[str]:
        return [str(SCRIPT), action, "--dir", str(self.directory), *options]

    def _run(self, action: str, *options: str) -> str:
        try:
            completed = subprocess.run(
                self._command(action, *options),
                check=False,
                capture_output=True,
                text=True,
                timeout=SCRIPT_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as error:
            raise KafkaScriptError(f"scripts/kafka {action} took over {SCRIPT_TIMEOUT_S}s") from error
        if completed.returncode != 0:
            raise KafkaScriptError(f"scripts/kafka {action} failed:\n{completed.stderr}")
        return completed.stdout

    async def _run_async(self, action: str, *options: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *self._command(action, *options), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise KafkaScriptError(f"scripts/kafka {action} took over {SCRIPT_TIMEOUT_S}s") from None
        if process.returncode != 0:
            raise KafkaScriptError(f"scripts/kafka {action} failed:\n{stderr.decode(errors='replace')}")
        return stdout.decode()


def _find_partition(described: list[dict[str, Any]], topic: str, partition: int) -> PartitionState | None:
    for entry in described:
        if entry["topic"] != topic or entry["error_code"] != 0:
            continue
        for found in entry["partitions"]:
            if found["partition"] == partition:
                return PartitionState(
                    leader=int(found["leader"]),
                    replicas=tuple(int(node) for node in found["replicas"]),
                    isr=tuple(int(node) for node in found["isr"]),
                )
    return None


async def _brokers_known_to(address: str) -> int:
    """How many brokers the node at `address` lists in its metadata (0 while it cannot answer)."""
    client = AIOKafkaClient(bootstrap_servers=address, request_timeout_ms=5_000)
    try:
        await client.bootstrap()
        return len(client.cluster.brokers())
    except KafkaError:
        return 0
    finally:
        await client.close()


def _started_cluster(directory: Path, *, brokers: int, scram: bool) -> Iterator[KafkaCluster]:
    fetch_kafka_jars()
    with KafkaCluster(directory, brokers=brokers, scram=scram) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One Kafka node with a PLAINTEXT and a SCRAM (SHA-256 and SHA-512) listener, shared by the session."""
    yield from _started_cluster(tmp_path_factory.mktemp("kafka"), brokers=1, scram=True)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three Kafka nodes (replication factor 3, min.insync.replicas=2), shared by the session."""
    yield from _started_cluster(tmp_path_factory.mktemp("kafka-cluster"), brokers=3, scram=False)


@dataclass(frozen=True)
class TlsKafka:
    """One Kafka node with TLS listeners, each a `KafkaCluster.listener_bootstrap` entry:

    - ``SSL``: TLS, a certificate for 127.0.0.1 signed by `authority`;
    - ``SASL_SSL``: the same certificate, and SCRAM-SHA-256/512 (`cluster.scram_user`, `scram_password`);
    - ``WRONGNAME``: TLS with a certificate `authority` signed for another host name (``kafka.invalid``);
    - ``EXPIRED``: TLS with a certificate `authority` signed for 127.0.0.1 that expired yesterday.

    ``cluster.bootstrap`` is its PLAINTEXT listener, for the tests that prove the bridge never falls back to it.
    """

    cluster: KafkaCluster
    authority: CertificateAuthority

    def bootstrap(self, listener: str) -> str:
        """The bootstrap servers of one listener."""
        return self.cluster.listener_bootstrap[listener]


TLS_LISTENERS = {"SSL": "SSL", "SASL_SSL": "SASL_SSL", "WRONGNAME": "SSL", "EXPIRED": "SSL"}


def tls_properties(authority: CertificateAuthority) -> str:
    """The broker properties of the `TlsKafka` listeners: inline PEM keystores, SCRAM on SASL_SSL."""
    good = authority.issue("kafka")
    certificates = {
        "ssl": good,
        "sasl_ssl": good,
        "wrongname": authority.issue("kafka-wrong-name", ["kafka.invalid"]),
        "expired": authority.issue("kafka-expired", expired=True),
    }
    lines = []
    for listener, issued in certificates.items():
        prefix = f"listener.name.{listener}.ssl"
        lines += [
            f"{prefix}.keystore.type=PEM",
            f"{prefix}.keystore.certificate.chain={_property_text(issued.cert_pem)}",
            f"{prefix}.keystore.key={_property_text(issued.key_pem)}",
        ]
    scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    lines += [f"listener.name.sasl_ssl.scram-sha-{bits}.sasl.jaas.config={scram_login}" for bits in (256, 512)]
    return "\n".join(lines) + "\n"


def _property_text(pem: str) -> str:
    """PEM text as one Java properties value: its line breaks as ``\\n`` escapes."""
    return pem.strip().replace("\n", "\\n")


@pytest.fixture(scope="session")
def kafka_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """One Kafka node with the `TlsKafka` listeners, shared by the session; started on first use only."""
    directory = tmp_path_factory.mktemp("kafka-tls")
    authority = CertificateAuthority.create(directory / "pki")
    config = directory / "tls.properties"
    config.write_text(tls_properties(authority), encoding="ascii")
    fetch_kafka_jars()
    with KafkaCluster(directory / "cluster", scram=True, listeners=TLS_LISTENERS, config=config) as cluster:
        yield TlsKafka(cluster, authority)
