"""The in-process HTTP listener over real loopback sockets: signals stay the program's, stopping, HTTPS."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from borobridge.asgi_server import Receive, Scope, Send, serve_asgi
from tests.support.tls import CertificateAuthority


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello\n"})


@pytest.fixture
async def own_sigterm_handler() -> AsyncIterator[asyncio.Event]:
    """The program's SIGTERM handler on the running loop: it sets the event it yields."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    yield stopping
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, previous)


def refuses_connections(url: str) -> bool:
    host, _, port = url.removeprefix("http://").rpartition(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


async def test_the_listener_leaves_signal_handling_to_the_program(own_sigterm_handler: asyncio.Event) -> None:
    sigint_before = signal.getsignal(signal.SIGINT)
    async with serve_asgi(hello, "127.0.0.1", 0, name="hello") as url:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
            assert (await client.get("/")).text == "hello\n"
        assert signal.getsignal(signal.SIGINT) == sigint_before
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(5.0):
            await own_sigterm_handler.wait()  # our handler ran: the listener took neither SIGTERM nor SIGINT
    assert signal.getsignal(signal.SIGINT) == sigint_before
    assert refuses_connections(url)


async def test_leaving_the_block_stops_the_listener_with_a_client_still_connected() -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        async with asyncio.timeout(5.0), serve_asgi(hello, "127.0.0.1", 0, name="hello") as url:
            assert (await client.get(url)).status_code == 200  # the connection stays open (keep-alive)
        assert refuses_connections(url)


async def test_a_connection_made_as_the_block_starts_is_answered() -> None:
    async with serve_asgi(hello, "127.0.0.1", 0, name="hello") as url:
        host, _, port = url.removeprefix("http://").rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        async with asyncio.timeout(5.0):
            answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"\r\n\r\n" in answer
    assert b"hello\n" in answer.partition(b"\r\n\r\n")[2]


async def test_https_with_the_key_in_the_certificate_file(tmp_path: Path) -> None:
    authority = CertificateAuthority.create(tmp_path)
    issued = authority.issue("server")
    combined = tmp_path / "combined.pem"
    combined.write_text(issued.cert_pem + issued.key_pem, encoding="ascii")
    trusted = ssl.create_default_context(cafile=authority.ca_file)
    async with (
        serve_asgi(hello, "127.0.0.1", 0, name="hello", certfile=str(combined)) as url,
        httpx.AsyncClient(base_url=url, verify=trusted, timeout=5.0) as client,
    ):
        assert url.startswith("https://127.0.0.1:")
        assert (await client.get("/")).text == "hello\n"


async def test_an_unreadable_certificate_fails_before_anything_listens(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(FileNotFoundError):
        async with serve_asgi(hello, "127.0.0.1", 0, name="hello", certfile=str(missing)):
            pytest.fail("the block ran without a certificate")
