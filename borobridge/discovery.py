"""Which streams one pipeline polls: the configured projects, or every project Boro lists (found again every
``boro.discovery_interval``), less those of other shards; each opened from its checkpoint or at its first start."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from borobridge.boro.client import BoroClient
from borobridge.checkpoint import Checkpoint
from borobridge.errors import BoroError
from borobridge.failure_log import FailureLog
from borobridge.metrics import Metrics
from borobridge.progress import describe
from borobridge.settings import Settings
from borobridge.streams import Stream, open_stream, stream_id

DISCOVERY = "discovery"  # the key of the failure said once


class Discovery:
    """The streams opened so far, by project id; ``owns`` says which stream ids are this pipeline's (all when
    None). Opening a stream is said through ``logger`` and ``metrics``."""

    def __init__(
        self,
        client: BoroClient,
        settings: Settings,
        *,
        server: str,
        owns: Callable[[str], bool] | None,
        metrics: Metrics,
        logger: logging.Logger,
        clock: Callable[[], float],
    ) -> None:
        self.streams: dict[int, Stream] = {}
        self._client = client
        self._settings = settings
        self._server = server
        self._owns = owns
        self._metrics = metrics
        self._log = logger
        self._clock = clock
        self._failures = FailureLog(logger)
        self._saved: dict[str, Checkpoint] = {}
        self._others: set[int] = set()  # projects whose streams belong to other shards
        self._next_discovery = 0.0

    def resume_from(self, saved: dict[str, Checkpoint]) -> None:
        """The committed checkpoints that streams opened from now on resume from."""
        self._saved = saved

    async def new_streams(self) -> list[Stream]:
        """The streams of the projects found since the last call, opened; a failed discovery keeps the known ones
        (it fails only while there are none)."""
        projects = self._settings.boro.projects
        if projects != "all":
            return self._open(projects)
        if self._clock() < self._next_discovery:
            return []
        interval = self._settings.boro.discovery_interval
        opened: list[Stream] = []
        try:
            opened = self._open(await self._client.project_ids())
        except BoroError as error:
            if not self.streams:
                raise  # nothing to poll: the cycle fails
            message = "project discovery failed (%s); the known projects are still polled, discovery retried in %g s"
            self._failures.failed(DISCOVERY, error, message, error, interval)
        else:
            self._failures.ended(DISCOVERY, "project discovery works again")
        self._next_discovery = self._clock() + interval
        return opened

    def _open(self, project_ids: Iterable[int]) -> list[Stream]:
        opened: list[Stream] = []
        for project_id in project_ids:
            if project_id in self.streams or project_id in self._others:
                continue
            stream_key = stream_id(self._server, project_id, self._settings.boro)
            if self._owns is not None and not self._owns(stream_key):
                self._others.add(project_id)  # another shard's
                continue
            stream = open_stream(
                self._server, project_id, self._settings.boro, self._saved.get(stream_key), self._settings.first_start
            )
            self.streams[project_id] = stream
            self._announce(stream)
            opened.append(stream)
        return opened

    def _announce(self, stream: Stream) -> None:
        self._metrics.stream_opened(stream.id, reading_history=stream.backfill is not None)
        self._log.info("stream %s opened at %s", stream.id, describe(stream.position))
        if stream.backfill is not None:
            lane = "beside the live alarms" if stream.history_beside else "before the live alarms"
            self._log.info("stream %s: reading history from %s %s", stream.id, describe(stream.backfill), lane)
