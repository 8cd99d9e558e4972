"""What a real bridge process exposes on /metrics once it is healthy, for tests that check names against it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from borobridge.simulator import serve_simulator
from tests.support.expectations import simulator_with_history
from tests.support.ports import free_port


def scrape_running_bridge(tmp_path: Path) -> str:
    """Start ``borobridge run`` against the simulator over HTTP, scrape /metrics once healthy, stop it."""
    answers, _ = asyncio.run(run_bridge_until_healthy(tmp_path))
    return answers["/metrics"].removeprefix("200 ")


async def run_bridge_until_healthy(tmp_path: Path) -> tuple[dict[str, str], int]:
    """Start ``borobridge run`` against the simulator over HTTP, wait until its endpoints look healthy, stop it
    with SIGTERM; the last answers by path, and the process's exit code."""
    sim = simulator_with_history(10, seed=4, rate_per_second=20)
    async with serve_simulator(sim, advance_every=0.1) as boro_url:
        port = free_port()
        config = health_config(tmp_path, boro_url, port)
        command = [sys.executable, "-m", "borobridge", "run", "--config", str(config)]
        process = await asyncio.create_subprocess_exec(
            *command, env=os.environ | {"BOROBRIDGE_LOGGING__LEVEL": "WARNING"}
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as client:
                answers = await scrape_until_healthy(client)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                code = await process.wait()
        return answers, code


def sample_names(text: str) -> set[str]:
    """Every sample name in an exposition (``_total``, ``_bucket``, ``_count``, ``_sum`` included)."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def health_config(tmp_path: Path, boro_url: str, port: int) -> Path:
    config = {
        "boro": {"url": boro_url, "user_id": 4, "poll_interval": 0.2},
        "first_start": {"mode": "all"},
        "output": {"path": str(tmp_path / "events.jsonl")},
        "state": {"path": str(tmp_path / "state.json")},
        "health": {"host": "127.0.0.1", "port": port},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


async def scrape_until_healthy(client: httpx.AsyncClient, seconds: float = 30.0) -> dict[str, str]:
    """Poll the three endpoints until all look healthy (bounded in time); the last answers by path."""
    answers: dict[str, str] = {}
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        answers = {path: await _answer(client, path) for path in ("/livez", "/readyz", "/metrics")}
        if _healthy(answers):
            return answers
    pytest.fail(f"the bridge did not look healthy within {seconds:g} s; last answers: {answers}")


def sample_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and sorted labels."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[_key(sample)] = sample.value
    return found


def _key(sample: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
    return sample.name, tuple(sorted(sample.labels.items()))


async def _answer(client: httpx.AsyncClient, path: str) -> str:
    try:
        response = await client.get(path)
    except httpx.TransportError as error:
        return f"unreachable: {error!r}"
    return f"{response.status_code} {response.text}"


def _healthy(answers: dict[str, str]) -> bool:
    if not answers or not answers["/livez"].startswith("200") or not answers["/readyz"].startswith("200"):
        return False
    samples = sample_values(answers["/metrics"].removeprefix("200 "))
    transitions = sum(v for (name, _), v in samples.items() if name == "borobridge_transitions_total")
    return transitions > 0 and samples.get(("borobridge_polls_total", (("outcome", "ok"),)), 0.0) > 0
