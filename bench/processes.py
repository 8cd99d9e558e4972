"""Child processes of the benchmarks: the simulator, the bridge, a Kafka broker; and /proc readings of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.support.kafka import KafkaCluster, fetch_kafka_jars

REPO: Final = Path(__file__).resolve().parents[1]
LINE_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 15.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


class SimulatorProcess:
    """A running ``bench.sim_server``: its endpoint URL, and a backlog on demand."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    async def add_backlog(self) -> int:
        """Ask for the backlog; returns how many changes it made, once they are visible."""
        self.process.send_signal(signal.SIGUSR1)
        return int(await _read_line(self.process, "backlog "))


@contextlib.asynccontextmanager
async def simulator_process(options: Sequence[str]) -> AsyncIterator[SimulatorProcess]:
    """Start the simulator with these command-line options; stop it on exit."""
    command = [sys.executable, "-m", "bench.sim_server", *options]
    process = await asyncio.create_subprocess_exec(*command, cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        yield SimulatorProcess(process, await _read_line(process, "url "))
    finally:
        await stop_process(process)


async def _read_line(process: asyncio.subprocess.Process, prefix: str) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(LINE_TIMEOUT):
        while line := (await process.stdout.readline()).decode():
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()
    raise RuntimeError(f"the simulator ended before printing {prefix.strip()!r}")


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL when it does not end within ``STOP_TIMEOUT``."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.contextmanager
def kafka_broker() -> Iterator[KafkaCluster]:
    """One KRaft Kafka node on 127.0.0.1 in a temporary directory, started by ``scripts/kafka``."""
    fetch_kafka_jars()
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as directory, KafkaCluster(Path(directory)) as cluster:
        yield cluster


@dataclass(frozen=True)
class ProcessReading:
    """CPU seconds used so far (user + system) and resident memory of one process."""

    cpu_seconds: float
    rss_bytes: int


def read_process(pid: int) -> ProcessReading:
    """Read ``/proc/<pid>/stat`` (utime, stime) and ``/proc/<pid>/status`` (VmRSS)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    rss = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return ProcessReading(cpu, rss)


def machine_load() -> str:
    """The load averages and CPU count, for the record."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"
