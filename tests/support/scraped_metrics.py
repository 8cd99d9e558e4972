"""What a real bridge process exposes on /metrics once it is healthy, for tests that check names against it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from borobridge.boro.simulator_http import serve_simulator
from tests.support.expectations import simulator_with_history
from tests.test_health import free_port, health_config, scrape_until_healthy


def scrape_running_bridge(tmp_path: Path) -> str:
    """Start ``borobridge run`` against the simulator over HTTP, scrape /metrics once healthy, stop it."""
    return asyncio.run(_scrape(tmp_path))


async def _scrape(tmp_path: Path) -> str:
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
                await process.wait()
        return answers["/metrics"].removeprefix("200 ")


def sample_names(text: str) -> set[str]:
    """Every sample name in an exposition (``_total``, ``_bucket``, ``_count``, ``_sum`` included)."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
