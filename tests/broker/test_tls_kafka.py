"""TLS to a real Kafka: delivery over SSL and SASL_SSL (SCRAM-SHA-512), and one line naming each TLS failure.

The broker (`kafka_tls`) has a TLS listener with a good certificate, one whose certificate names another host,
one whose certificate expired, and its PLAINTEXT listener; the bridge runs as the real ``borobridge`` command.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from borobridge.simulator import serve_simulator
from tests.support.expectations import assert_exactly_once_in_order, expected_ids, simulator_with_history
from tests.support.kafka import TlsKafka
from tests.support.kafka_bridge import event_topics, kafka_bridge
from tests.support.kafka_reading import binary_events, consume, kafka_settings
from tests.support.settings import write_config
from tests.support.tls import CertificateAuthority

pytestmark = pytest.mark.kafka

COMMAND_S: Final = 60.0
LOG_LINE: Final = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@pytest.fixture(scope="module")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA that signed none of the broker's certificates."""
    return CertificateAuthority.create(tmp_path_factory.mktemp("stranger-ca"), "a stranger CA")


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
async def test_the_bridge_delivers_over_tls(kafka_tls: TlsKafka, listener: str) -> None:
    overrides = {"TLS__CA_FILE": str(kafka_tls.authority.ca_file)}
    if listener == "SASL_SSL":
        cluster = kafka_tls.cluster
        overrides |= {
            "SASL__USERNAME": str(cluster.scram_user),
            "SASL__PASSWORD": str(cluster.scram_password),
            "SASL__MECHANISM": "SCRAM-SHA-512",
        }
    settings, prefix = kafka_settings(kafka_tls.bootstrap(listener), **overrides)
    sim = simulator_with_history(5, seed=61, projects=1, rate_per_second=10)
    async with serve_simulator(sim) as url, kafka_bridge(url, settings, prefix) as pipeline:
        await pipeline.poll_once()
    events = binary_events(await consume(kafka_tls.cluster.bootstrap, event_topics(prefix, sim)))
    assert_exactly_once_in_order(events, sim, expected_ids(sim))


def address(bootstrap: str) -> str:
    return bootstrap.split(",", maxsplit=1)[0]


NOT_SIGNED = (
    "TLS: the server's certificate at {} is not signed by the configured CA (kafka.tls.ca_file); "
    "set kafka.tls.ca_file to the CA that signed it"
)
WRONG_HOST = (
    "TLS: the server's certificate at {} is not valid for the host name 127.0.0.1; connect by a name the "
    "certificate lists, or have it reissued for this one"
)
EXPIRED = "TLS: the server's certificate at {} has expired; renew it on the server"
PLAINTEXT = (
    "TLS: {} does not answer in TLS (a plaintext port?); kafka.tls is set, so the bridge speaks only TLS: give "
    "the address of the server's TLS port"
)

Case = tuple[Callable[[TlsKafka], str], bool, str]
CASES: Final[dict[str, Case]] = {
    "a CA that did not sign it": (lambda broker: broker.bootstrap("SSL"), True, NOT_SIGNED),
    "a certificate for another host": (lambda broker: broker.bootstrap("WRONGNAME"), False, WRONG_HOST),
    "an expired certificate": (lambda broker: broker.bootstrap("EXPIRED"), False, EXPIRED),
    "a plaintext listener": (lambda broker: broker.cluster.bootstrap, False, PLAINTEXT),
}


@pytest.mark.parametrize("case", CASES)
def test_a_tls_failure_stops_the_bridge_with_one_line_naming_it(
    kafka_tls: TlsKafka, stranger_ca: CertificateAuthority, tmp_path: Path, case: str
) -> None:
    servers, stranger, message = CASES[case]
    ca_file = stranger_ca.ca_file if stranger else kafka_tls.authority.ca_file
    config = write_config(
        tmp_path, {"kafka": {"bootstrap_servers": servers(kafka_tls), "tls": {"ca_file": str(ca_file)}}}
    )
    done = borobridge("run", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    *logged, last = done.stderr.splitlines()
    assert last == f"borobridge: cannot start Kafka clients: {message.format(address(servers(kafka_tls)))}", done.stderr
    assert all(LOG_LINE.match(line) for line in logged), done.stderr  # log lines only: no traceback


def test_tail_names_the_tls_failure_too(kafka_tls: TlsKafka, stranger_ca: CertificateAuthority, tmp_path: Path) -> None:
    servers = kafka_tls.bootstrap("SSL")
    config = write_config(
        tmp_path, {"kafka": {"bootstrap_servers": servers, "tls": {"ca_file": str(stranger_ca.ca_file)}}}
    )
    done = borobridge("tail", "--config", str(config), "--idle-exit", "1", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == f"borobridge: cannot read Kafka: {NOT_SIGNED.format(servers)}"


def borobridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command to its end in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "borobridge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_S,
        check=False,
    )
