"""``borobridge`` commands run as real processes: to their end, in the background, stopped."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

STOP_S = 30.0
COMMAND_S: Final = 60.0


async def bridge_process(config: Path, log: Path) -> asyncio.subprocess.Process:
    """``borobridge run --config`` with its log (stderr) in a file."""
    with log.open("wb") as stderr:  # the child keeps its own descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "borobridge", "run", "--config", str(config), stderr=stderr
        )


async def stop(process: asyncio.subprocess.Process) -> int:
    """SIGTERM unless it ended already; SIGKILL past `STOP_S`. Returns the exit status."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_S):
            return await process.wait()
    except TimeoutError:
        process.kill()
        return await process.wait()


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


async def read_url(stream: asyncio.StreamReader) -> str:
    """The endpoint URL the simulate command logs once its port is bound."""
    async with asyncio.timeout(20):
        while line := (await stream.readline()).decode():
            if found := re.search(r"serving (http://127\.0\.0\.1:\d+/ctrl_api/v1/json)", line):
                return found.group(1)
    raise AssertionError("the simulate command never said where it serves")
