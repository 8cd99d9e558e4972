"""The world the simulator plays: projects, probes (apps) and the tasks they run."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

JSON = dict[str, Any]


class SimProject(msgspec.Struct, frozen=True):
    id: int
    title: str
    founder: int
    role: str


class SimProbe(msgspec.Struct, frozen=True):
    app_id: int
    project_id: int
    name: str


class SimTask(msgspec.Struct, frozen=True):
    """A monitored channel; ``start_f`` is the Unix time it started, the origin of ``info.time``."""

    task_id: int
    app_id: int
    project_id: int
    profile_id: int
    name: str
    uri: str
    start_f: float

    @property
    def transport(self) -> Literal["udp", "http"]:
        return "http" if self.uri.startswith("http") else "udp"
