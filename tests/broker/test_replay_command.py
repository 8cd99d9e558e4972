"""``borobridge replay`` run as a command: periods, projects, dry runs, progress, and Ctrl-C with where to resume."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from borobridge.simulator import Simulator, serve_simulator
from tests.support.clock import ManualClock
from tests.support.expectations import expected_ids, simulator_with_history
from tests.support.kafka import KafkaCluster
from tests.support.kafka_bridge import event_topics, topic_names
from tests.support.kafka_reading import binary_events, consume, kafka_settings
from tests.support.processes import COMMAND_S, borobridge, read_url, stop
from tests.support.settings import write_config

PROGRESS: Final = re.compile(
    r"borobridge: replay up to \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: (\d+) events counted, [0-2] of 2 projects done"
)
RESUME: Final = re.compile(
    r"borobridge: interrupted after (\d+) events sent; to finish, run the same replay with --since (\S+)\n"
)


def project_ids(sim: Simulator, project: int) -> set[str]:
    """The transition ids of one project's records."""
    inside = {str(record.id) for record in sim.records() if record.project_id == project}
    return {event_id for event_id in expected_ids(sim) if event_id.rpartition("-")[0] in inside}


def boro_config(tmp_path: Path, url: str, **boro: object) -> Path:
    return write_config(tmp_path, {"boro": {"url": url, "user_id": 4, **boro}})


def test_without_boro_url_it_names_the_setting_and_the_simulators_address(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"kafka": {"bootstrap_servers": "127.0.0.1:9"}})
    done = borobridge("replay", "--config", str(config), "--since", "2h", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        2,
        "invalid configuration:\n  boro.url: replay reads a Boro server and none is configured; set boro.url "
        "(borobridge simulate serves http://127.0.0.1:8000/ctrl_api/v1/json)\n",
    )


def test_a_reversed_period_is_refused_with_both_ends(tmp_path: Path) -> None:
    done = borobridge("replay", "--since", "1763683200", "--until", "2025-11-20T00:00:00Z", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1,
        "borobridge: --until 2025-11-20T00:00:00Z is not after --since 2025-11-21T00:00:00Z; give a later --until\n",
    )


async def test_a_dry_run_of_one_project_counts_its_transitions_without_kafka(tmp_path: Path) -> None:
    sim = simulator_with_history(20, seed=71, projects=2, rate_per_second=10)
    first, second = (project.id for project in sim.projects())
    async with serve_simulator(sim) as url:
        config = boro_config(tmp_path, url)
        done = await asyncio.to_thread(
            borobridge, "replay", "--config", str(config), "--since", "30m", "--project", str(first), "--dry-run",
            cwd=tmp_path,
        )  # fmt: skip
    wanted = len(project_ids(sim, first))
    assert 0 < wanted < len(expected_ids(sim)), "the other project has transitions the count must leave out"
    assert len(project_ids(sim, second)) > 0
    assert (done.returncode, done.stderr) == (
        0,
        f"borobridge: dry run: replay would send {wanted} events; nothing was sent\n",
    ), "a short replay says only its summary: progress lines come every 10 s or 10000 events"


async def test_progress_lines_off_a_terminal_count_up_to_the_summary(tmp_path: Path) -> None:
    sim = simulator_with_history(20, seed=72, projects=2, rate_per_second=10)
    async with serve_simulator(sim) as url:
        config = boro_config(tmp_path, url, page_size=10)
        done = await asyncio.to_thread(
            borobridge, "replay", "--config", str(config), "--since", "1h", "--dry-run",
            "--progress-events", "25", "--progress-every", "3600", cwd=tmp_path,
        )  # fmt: skip
    *lines, summary = done.stderr.splitlines()
    total = len(expected_ids(sim))
    assert (done.returncode, summary) == (0, f"borobridge: dry run: replay would send {total} events; nothing was sent")
    counts = [int(match.group(1)) for line in lines if (match := PROGRESS.fullmatch(line))]
    assert len(counts) == len(lines), done.stderr
    assert 2 <= len(counts) <= total // 25, "a line every 25 events at most: rounds without 25 new events say nothing"
    assert all(later - earlier >= 25 for earlier, later in itertools.pairwise([0, *counts])), counts


async def test_a_crowded_second_that_is_boro_s_present_is_replayed_whole(tmp_path: Path) -> None:
    """A replay from second S, when S and S + 1 hold more than a page and the clock has not left them: the window
    is paged (its changes sit in its first two seconds, the later one Boro's present as far as the pages tell), and
    its first page, the one that showed it, belongs to the pass like the others."""
    start = int(time.time())
    clock = ManualClock(start + 0.5)
    sim = Simulator(seed=3, projects=1, rate_per_second=0.0, clock=clock)
    task = sim.tasks()[0].task_id
    for second in (start, start + 1):  # events only: no check of the window's states can bring a page back
        clock.now = second + 0.5
        for _ in range(7):
            sim.trigger(task, "PtsError")
    async with serve_simulator(sim) as url:
        config = boro_config(tmp_path, url, page_size=10)
        done = await asyncio.to_thread(
            borobridge, "replay", "--config", str(config), "--since", str(start), "--dry-run", cwd=tmp_path
        )
    total = len(expected_ids(sim))
    assert (done.returncode, done.stderr) == (
        0,
        f"borobridge: dry run: replay would send {total} events; nothing was sent\n",
    )


async def test_replay_reads_borobridge_simulate_with_both_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOROBRIDGE_")}
    simulate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "borobridge", "simulate", "--port", "0", stderr=asyncio.subprocess.PIPE, env=env,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        assert simulate.stderr is not None
        url = await read_url(simulate.stderr)
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "borobridge", "replay", "--since", "1h", "--dry-run",
            stderr=asyncio.subprocess.PIPE, env=env | {"BOROBRIDGE_BORO__URL": url}, cwd=tmp_path,
        )  # fmt: skip
        async with asyncio.timeout(COMMAND_S):
            _, stderr = await replay.communicate()
    finally:
        await stop(simulate)
    said = stderr.decode()
    assert replay.returncode == 0, said
    assert re.fullmatch(r"borobridge: dry run: replay would send \d+ events; nothing was sent\n", said), said


@contextlib.asynccontextmanager
async def gated_boro(upstream: str, answers: int) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A Boro endpoint relaying ``answers`` requests to ``upstream``, then holding every further one unanswered;
    the event is set once a request is held."""
    held = asyncio.Event()
    relayed = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal relayed
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                if relayed >= answers:
                    held.set()
                    await reader.read()  # until the client goes away
                    break
                relayed += 1
                reply = await http.post(upstream, content=body, headers={"content-type": "application/json"})
                writer.write(
                    b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                    % (reply.status_code, len(reply.content))
                    + reply.content
                )
                await writer.drain()
        writer.close()

    async with httpx.AsyncClient() as http:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"http://127.0.0.1:{port}/ctrl_api/v1/json", held


@pytest.mark.kafka
async def test_ctrl_c_names_the_since_that_finishes_the_replay(kafka: KafkaCluster, tmp_path: Path) -> None:
    settings, prefix = kafka_settings(kafka.bootstrap)
    sim = simulator_with_history(30, seed=73, projects=2, rate_per_second=10)
    since = min(record.updated_at for record in sim.records())
    kafka_config = {"bootstrap_servers": kafka.bootstrap, "topics": topic_names(settings)}
    async with serve_simulator(sim) as upstream, gated_boro(upstream, answers=12) as (gated, held):
        boro = {"user_id": 4, "page_size": 10, "server_name": "boro-test"}
        config = write_config(tmp_path, {"name": prefix, "boro": {"url": gated, **boro}, "kafka": kafka_config})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "borobridge", "replay", "--config", str(config), "--since", str(since),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(COMMAND_S):
                await held.wait()
                process.send_signal(signal.SIGINT)
                _, stderr = await process.communicate()
        finally:
            await stop(process)
        ours = "".join(line for line in stderr.decode().splitlines(keepends=True) if " aiokafka" not in line)
        assert process.returncode == 130, ours
        said = RESUME.fullmatch(ours)
        assert said is not None, ours
        sent, resume = int(said.group(1)), said.group(2)
        config = write_config(tmp_path, {"name": prefix, "boro": {"url": upstream, **boro}, "kafka": kafka_config})
        done = await asyncio.to_thread(borobridge, "replay", "--config", str(config), "--since", resume, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = binary_events(await consume(kafka.bootstrap, event_topics(prefix, sim)))
    counts = Counter(event["id"] for event in events)
    assert set(counts) == expected_ids(sim, since), "the two runs together sent every transition of the period"
    assert 0 < sent < len(events), "the first run got part of the way"
    assert sum(counts.values()) < 2 * len(counts), "the second run started where the first stopped, not over"
