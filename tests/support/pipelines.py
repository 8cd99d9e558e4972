"""An in-process bridge writing JSON lines, and a simulated world that moves while it runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import FileCheckpointStore
from borobridge.metrics import Metrics
from borobridge.pipeline import Pipeline
from borobridge.simulator import Simulator
from borobridge.sinks.jsonlines import JsonLinesSink
from tests.support.settings import bridge_settings


@contextlib.asynccontextmanager
async def advancing(sim: Simulator, every: float = 0.05) -> AsyncIterator[None]:
    """Let the simulated world move on while the block runs, and stand still afterwards."""

    async def tick() -> None:
        while True:
            sim.advance()
            await asyncio.sleep(every)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def bridge(
    url: str, tmp_path: Path, metrics: Metrics | None = None, *, overrides: dict[str, str] | None = None
) -> AsyncIterator[Pipeline]:
    """A restored pipeline writing JSON lines into ``tmp_path``, closed afterwards."""
    settings = bridge_settings(url, tmp_path, **(overrides or {}))
    assert settings.output.path is not None
    sink = JsonLinesSink(FileCheckpointStore(Path(settings.state.path)), Path(settings.output.path))
    async with httpx.AsyncClient() as http:
        pipeline = Pipeline(BoroClient(http, settings.boro), sink, settings, server_name="boro-test", metrics=metrics)
        try:
            await pipeline.restore()
            yield pipeline
        finally:
            sink.close()
