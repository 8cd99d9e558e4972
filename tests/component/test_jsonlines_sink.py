"""The JSON-lines sink keeps its output whole: it cuts back only the file its state file describes, writes a
retried round once, and lets one process at a time use a state file."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from borobridge.checkpoint import Checkpoint, FileCheckpointStore, LocalState
from borobridge.errors import CheckpointError, SinkError
from borobridge.events import CloudEvent
from borobridge.sinks import Batch
from borobridge.sinks.jsonlines import JsonLinesSink
from borobridge.sinks.output_file import FileCalls
from borobridge.transitions import Transition

STREAM = "boro-test/23"
PROCESS_TIMEOUT = 60.0


def event(number: int) -> CloudEvent:
    """A structurally complete CloudEvent whose id is ``number``."""
    names = ("type", "subject", "time", "datacontenttype", "dataschema", "partitionkey")
    attributes = {"specversion": "1.0", "id": str(number), "source": "boro-test/23/7"}
    attributes |= {name: f"{name}-{number}" for name in names}
    attributes |= {"severity": "major", "triggergroup": "etr", "project": "23", "task": "7", "probe": "p"}
    return CloudEvent(attributes, b'{"n":%d}' % number, Transition.EVENT, number)


def round_of(*numbers: int) -> Batch:
    """One round: these events and the stream's checkpoint at the last of them."""
    return Batch(events=[event(n) for n in numbers], checkpoints=[Checkpoint(stream=STREAM, update_token=numbers[-1])])


def lines_of(*numbers: int) -> bytes:
    return b"".join(event(n).structured() + b"\n" for n in numbers)


def saved_state(tmp_path: Path) -> LocalState:
    return msgspec.json.decode((tmp_path / "state.json").read_bytes(), type=LocalState)


@contextlib.asynccontextmanager
async def restored(tmp_path: Path, output: Path, calls: FileCalls | None = None) -> AsyncIterator[JsonLinesSink]:
    """A sink on ``tmp_path/state.json`` writing ``output``, restored, and closed afterwards."""
    store = FileCheckpointStore(tmp_path / "state.json")
    sink = JsonLinesSink(store, output, calls=calls) if calls else JsonLinesSink(store, output)
    try:
        await sink.restore()
        yield sink
    finally:
        sink.close()


# ---- which file is cut back --------------------------------------------------------------------------------------


async def test_without_a_state_file_the_output_is_kept_and_appended_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "events.jsonl"
    earlier = b'{"earlier": "run"}\n' * 1000
    output.write_bytes(earlier)
    caplog.set_level(logging.INFO)
    async with restored(tmp_path, output) as sink:
        await sink.deliver(round_of(1, 2))
    assert output.read_bytes() == earlier + lines_of(1, 2)
    notes = [r.getMessage() for r in caplog.records if "appending" in r.getMessage()]
    assert len(notes) == 1
    assert str(output) in notes[0]
    assert str(len(earlier)) in notes[0]
    assert saved_state(tmp_path).output_offset == output.stat().st_size


async def test_only_the_file_the_state_describes_is_cut_back(tmp_path: Path) -> None:
    described, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    async with restored(tmp_path, described) as sink:
        await sink.deliver(round_of(1))
    committed = described.read_bytes()
    with described.open("ab") as handle:  # a crash between writing a round and saving its checkpoint
        handle.write(lines_of(2))
    other_content = b'{"other": "file"}\n' * 200
    other.write_bytes(other_content)
    async with restored(tmp_path, other):
        pass
    assert other.read_bytes() == other_content
    async with restored(tmp_path, described):
        pass
    assert described.read_bytes() == committed


async def test_a_file_rewritten_in_place_is_not_cut_back(tmp_path: Path) -> None:
    output = tmp_path / "events.jsonl"
    async with restored(tmp_path, output) as sink:
        await sink.deliver(round_of(1, 2, 3))
    inode = output.stat().st_ino
    rewritten = b'{"rewritten": "by hand"}\n' * 100
    output.write_bytes(rewritten)  # same inode, other bytes
    assert output.stat().st_ino == inode
    assert len(rewritten) > saved_state(tmp_path).output_offset  # type: ignore[operator]
    async with restored(tmp_path, output) as sink:
        await sink.deliver(round_of(4))
    assert output.read_bytes() == rewritten + lines_of(4)


async def test_an_output_cut_short_outside_the_bridge_is_refused_naming_both_lengths(tmp_path: Path) -> None:
    output = tmp_path / "events.jsonl"
    async with restored(tmp_path, output) as sink:
        await sink.deliver(round_of(1, 2))
    committed = output.stat().st_size
    os.truncate(output, 10)
    sink = JsonLinesSink(FileCheckpointStore(tmp_path / "state.json"), output)
    try:
        with pytest.raises(CheckpointError, match=rf"holds 10 bytes, fewer than the {committed} bytes") as raised:
            await sink.restore()
    finally:
        sink.close()
    assert "move" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert output.stat().st_size == 10


# ---- a failed write or fsync -------------------------------------------------------------------------------------


class FailingDisk:
    """Real writes and fsyncs, one of which fails with EIO when armed (a write after storing half its bytes)."""

    def __init__(self) -> None:
        self.armed: str | None = None

    def calls(self) -> FileCalls:
        return FileCalls(write=self.write, fsync=self.fsync)

    def write(self, descriptor: int, data: memoryview) -> int:
        if self.armed == "write":
            self.armed = None
            os.write(descriptor, data[: len(data) // 2])
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return os.write(descriptor, data)

    def fsync(self, descriptor: int) -> None:
        if self.armed == "fsync":
            self.armed = None
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(descriptor)


@pytest.mark.parametrize("failing", ["write", "fsync"])
async def test_a_round_retried_after_a_disk_error_is_written_once(tmp_path: Path, failing: str) -> None:
    output, disk = tmp_path / "events.jsonl", FailingDisk()
    async with restored(tmp_path, output, disk.calls()) as sink:
        await sink.deliver(round_of(1))
        disk.armed = failing
        with pytest.raises(SinkError, match="Input/output error"):
            await sink.deliver(round_of(2, 3))
        assert saved_state(tmp_path).output_offset == len(lines_of(1))
        await sink.deliver(round_of(2, 3))
    assert output.read_bytes() == lines_of(1, 2, 3)
    assert saved_state(tmp_path).output_offset == output.stat().st_size


# ---- one process per state file ----------------------------------------------------------------------------------


async def test_a_second_sink_on_a_state_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = JsonLinesSink(FileCheckpointStore(tmp_path / "state.json"), tmp_path / "a.jsonl")
    second = JsonLinesSink(FileCheckpointStore(tmp_path / "state.json"), tmp_path / "b.jsonl")
    try:
        await first.restore()
        holder = f"pid {os.getpid()} on host {socket.gethostname()}"
        with pytest.raises(CheckpointError, match=f"is in use by {holder}"):
            await second.restore()
        assert not (tmp_path / "b.jsonl").exists()
        first.close()
        await second.restore()
        await second.deliver(round_of(1))
    finally:
        first.close()
        second.close()
    assert (tmp_path / "b.jsonl").read_bytes() == lines_of(1)


async def _start_bridge(tmp_path: Path, output: str, level: str) -> asyncio.subprocess.Process:
    environment = os.environ | {"BOROBRIDGE_HEALTH__ENABLED": "false", "BOROBRIDGE_LOGGING__LEVEL": level}
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "borobridge", "run", "--output", output, "--state", "state.json"),
        cwd=tmp_path,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _wait_for_line(process: asyncio.subprocess.Process, fragment: str) -> None:
    assert process.stderr is not None
    for _ in range(200):
        line = await asyncio.wait_for(process.stderr.readline(), PROCESS_TIMEOUT)
        assert line, f"the bridge ended before logging {fragment!r}"
        if fragment in line.decode():
            return
    pytest.fail(f"no {fragment!r} in the bridge's first 200 log lines")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_a_second_bridge_process_is_refused_with_one_line_naming_the_holder(tmp_path: Path) -> None:
    first = await _start_bridge(tmp_path, "a.jsonl", "INFO")
    second: asyncio.subprocess.Process | None = None
    try:
        await _wait_for_line(first, "stream checkpoints")  # restored: it holds the state file
        assert first.stderr is not None
        draining = asyncio.ensure_future(first.stderr.read())
        second = await _start_bridge(tmp_path, "b.jsonl", "WARNING")
        _, errors = await asyncio.wait_for(second.communicate(), PROCESS_TIMEOUT)
        assert second.returncode == 1
        lines = errors.decode().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("borobridge: the state file state.json is in use by ")
        assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0]
        assert not (tmp_path / "b.jsonl").exists()
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), PROCESS_TIMEOUT) == 0
        await draining
    finally:
        await _stop(first)
        if second is not None:
            await _stop(second)
    store = FileCheckpointStore(tmp_path / "state.json")
    try:
        assert store.load().output_offset == (tmp_path / "a.jsonl").stat().st_size  # released on exit
    finally:
        store.close()
