"""The real ``borobridge run`` reading a Boro simulator served over HTTPS, and the line naming each TLS failure."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest

from borobridge.simulator import Simulator, serve_simulator
from tests.support.bridge_process import BridgeProcess, bridge_config, ids_written, wait_until_complete
from tests.support.expectations import expected_ids, read_events, simulator_with_history
from tests.support.tls import CertificateAuthority, Issued

SAID_S: Final = 20.0


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "pki")


@contextlib.asynccontextmanager
async def bridge_reading(url: str, directory: Path, ca_file: Path | None) -> AsyncIterator[BridgeProcess]:
    """``borobridge run`` polling ``url`` into ``directory/events.jsonl``, trusting ``ca_file``; stopped on exit."""
    config_path = bridge_config(directory, url)
    config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    if ca_file is not None:
        config["boro"]["tls"] = {"ca_file": str(ca_file)}
    config_path.write_text(json.dumps(config), encoding="utf-8")
    output, state = directory / "events.jsonl", directory / "state.json"
    bridge = BridgeProcess(
        ["--config", str(config_path), "--output", str(output), "--state", str(state)],
        directory / "bridge.log",
        directory,
    )
    await bridge.start()
    try:
        yield bridge
    finally:
        assert await bridge.stop() == 0, bridge.said()


@contextlib.asynccontextmanager
async def https_simulator(sim: Simulator, server: Issued) -> AsyncIterator[str]:
    async with serve_simulator(sim, certfile=str(server.cert_file), keyfile=str(server.key_file)) as url:
        yield url


async def test_the_bridge_reads_boro_over_https(authority: CertificateAuthority, tmp_path: Path) -> None:
    sim = simulator_with_history(5, seed=81, projects=1, rate_per_second=10)
    async with https_simulator(sim, authority.issue("boro")) as url:
        assert url.startswith("https://127.0.0.1:")
        async with bridge_reading(url, tmp_path, authority.ca_file) as bridge:
            output = tmp_path / "events.jsonl"

            async def written() -> set[str]:
                return ids_written(output)

            await wait_until_complete(written, expected_ids(sim), bridge, seconds=30)
    assert {event["id"] for event in read_events(tmp_path / "events.jsonl")} == expected_ids(sim)


async def said_within(bridge: BridgeProcess, text: str) -> str:
    """Everything the bridge logged, once ``text`` is in it (bounded by ``SAID_S``)."""
    async with asyncio.timeout(SAID_S):
        while text not in bridge.said():
            assert not bridge.ended, bridge.said()
            await asyncio.sleep(0.1)
    return bridge.said()


def cannot_reach(url: str, explained: str) -> str:
    return f'cannot reach {url}: ConnectError("{explained}")'


async def test_a_ca_that_did_not_sign_the_certificate(authority: CertificateAuthority, tmp_path: Path) -> None:
    stranger = CertificateAuthority.create(tmp_path / "stranger", "a stranger CA")
    async with https_simulator(simulator_with_history(1), authority.issue("boro")) as url:
        address = url.split("/")[2]
        explained = (
            f"TLS: the server's certificate at {address} is not signed by the configured CA (boro.tls.ca_file); set "
            "boro.tls.ca_file to the CA that signed it"
        )
        async with bridge_reading(url, tmp_path, stranger.ca_file) as bridge:
            said = await said_within(bridge, cannot_reach(url, explained))
    assert "Traceback" not in said


async def test_a_certificate_for_another_host(authority: CertificateAuthority, tmp_path: Path) -> None:
    async with https_simulator(simulator_with_history(1), authority.issue("boro", ["boro.invalid"])) as url:
        address = url.split("/")[2]
        explained = (
            f"TLS: the server's certificate at {address} is not valid for the host name 127.0.0.1; connect by a name "
            "the certificate lists, or have it reissued for this one"
        )
        async with bridge_reading(url, tmp_path, authority.ca_file) as bridge:
            said = await said_within(bridge, cannot_reach(url, explained))
    assert "Traceback" not in said


async def test_an_expired_certificate(authority: CertificateAuthority, tmp_path: Path) -> None:
    async with https_simulator(simulator_with_history(1), authority.issue("boro", expired=True)) as url:
        address = url.split("/")[2]
        explained = f"TLS: the server's certificate at {address} has expired; renew it on the server"
        async with bridge_reading(url, tmp_path, authority.ca_file) as bridge:
            said = await said_within(bridge, cannot_reach(url, explained))
    assert "Traceback" not in said


async def test_https_never_falls_back_to_a_plaintext_server(authority: CertificateAuthority, tmp_path: Path) -> None:
    sim = simulator_with_history(1)
    async with serve_simulator(sim) as plain_url:
        url = plain_url.replace("http://", "https://", 1)
        address = url.split("/")[2]
        explained = (
            f"TLS: {address} does not answer in TLS (a plaintext port?); boro.tls is set, so the bridge speaks only "
            "TLS: give the address of the server's TLS port"
        )
        async with bridge_reading(url, tmp_path, authority.ca_file) as bridge:
            await said_within(bridge, cannot_reach(url, explained))
    assert not ids_written(tmp_path / "events.jsonl")
