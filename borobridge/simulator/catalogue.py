"""The trigger catalogue: names from the Boro documentation, details shaped like its partial description of
``info``."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from borobridge.simulator.world import JSON

LEVELS = ("ok", "warning", "error", "major", "fatal")
TRIGGER_GROUPS = ("eth", "etr", "qoe", "ott", "sys", "scte35")

DetailBuilder = Callable[[random.Random], JSON]


class Trigger(NamedTuple):
    name: str
    group: str
    type: Literal["state", "event"]
    levels: tuple[str, ...]
    weight: int
    details: DetailBuilder


def _metric(unit: str, threshold: float, spread: float) -> DetailBuilder:
    def build(rng: random.Random) -> JSON:
        value = round(threshold + rng.uniform(-spread, spread), 3)
        return {"event_data": {"value": value, "threshold": threshold, "unit": unit}}

    return build


def _header_field(field: str, expected: int, seen: Sequence[int]) -> DetailBuilder:
    def build(rng: random.Random) -> JSON:
        return {"event_data": {"field": field, "value": rng.choice(seen), "expected": expected}}

    return build


def _audio_pid(rng: random.Random) -> JSON:
    return {"event_data": {"pid": rng.choice((7010, 7011, 7020))}}


def _no_signal(rng: random.Random) -> JSON:
    return {"event_data": {"reason": rng.choice(("no data", "no sync byte", "source unreachable"))}}


def _pid_errors(kind: str) -> DetailBuilder:
    def build(rng: random.Random) -> JSON:
        pids: dict[str, JSON] = {}
        for pid in rng.sample((256, 4096, 7010, 7011, 7020), k=rng.randint(1, 3)):
            stream_type = 27 if pid == 256 else 15
            pids[f"PID{pid}"] = {
                "count": rng.randint(1, 40),
                "type": stream_type,
                "detectedType": stream_type + rng.choice((0, 0, 0x100)),
                "program": f"Program {rng.randint(1, 4)}",
            }
        total = sum(pid["count"] for pid in pids.values())
        return {"count": total, "pids": pids, "event_data": {"error": kind, "threshold": 1}}

    return build


def _psi_diff(rng: random.Random) -> JSON:
    old_pid = rng.choice((4096, 4097, 4098))
    diff = [
        {"op": "replace", "path": "/programs/0/pmt_pid", "value": old_pid + 1, "prevValue": old_pid},
        {"op": "add", "path": "/programs/0/streams/2", "value": {"pid": 7012, "type": 15}},
    ]
    if rng.random() < 0.5:
        diff.append({"op": "remove", "path": "/programs/1", "prevValue": {"number": 2, "pmt_pid": 4200}})
    return {"event_data": {"table": rng.choice(("PAT", "PMT", "SDT")), "diff": diff}}


def _replace(path: str, options: Sequence[Any], rng: random.Random) -> JSON:
    """A JSON Patch ``replace`` between two different values, with Boro's ``prevValue`` beside ``value``."""
    previous, value = rng.sample(list(options), k=2)
    return {"op": "replace", "path": path, "value": value, "prevValue": previous}


def _video_diff(rng: random.Random) -> JSON:
    diff = [_replace("/width", (1920, 1280, 720), rng), _replace("/frame_rate", (25, 50, 29.97), rng)]
    if rng.random() < 0.5:
        diff.append(_replace("/codec", ("h264", "hevc", "mpeg2"), rng))
    return {"event_data": {"pid": 256, "diff": diff}}


def _audio_diff(rng: random.Random) -> JSON:
    diff = [_replace("/channels", (1, 2, 6), rng), _replace("/sample_rate", (32000, 44100, 48000), rng)]
    if rng.random() < 0.3:
        diff.append({"op": "remove", "path": "/language", "prevValue": "rus"})
    return {"event_data": {"pid": 7010, "diff": diff}}


def _http_error(rng: random.Random) -> JSON:
    code, reason = rng.choice(((404, "Not Found"), (403, "Forbidden"), (500, "Internal Server Error")))
    segment = f"https://cdn.example.net/live/index_{rng.randint(1000, 9999)}.ts"
    message = {
        "id": 1203,
        "params": {"url": segment},
        "HTTP_error": {"code": code, "reason": reason, "url": segment},
        "CURL_error": {"code": 22, "message": "HTTP response code said error"},
    }
    return {"messages": [message], "event_data": {"url": segment}}


def _download_error(rng: random.Random) -> JSON:
    code, text = rng.choice(
        ((28, "Timeout was reached"), (7, "Couldn't connect to server"), (6, "Could not resolve host"))
    )
    message = {"id": 1207, "params": {"attempt": rng.randint(1, 3)}, "CURL_error": {"code": code, "message": text}}
    return {"messages": [message]}


def _scte35_splice(rng: random.Random) -> JSON:
    return {
        "event_data": {
            "pid": 500,
            "command": "splice_insert",
            "event_id": rng.randint(1, 10**6),
            "duration": rng.choice((15.0, 30.0, 60.0)),
        }
    }


def _scte35_missing(rng: random.Random) -> JSON:
    return {"event_data": {"pid": 500, "silence": rng.randint(600, 3600)}}


def _restart(rng: random.Random) -> JSON:
    return {"event_data": {"reason": rng.choice(("watchdog", "config changed", "probe restarted"))}}


CATALOGUE: tuple[Trigger, ...] = (
    Trigger("TosDscp", "eth", "event", ("warning",), 3, _header_field("dscp", 46, (0, 8, 34))),
    Trigger("Ttl", "eth", "event", ("warning", "error"), 3, _header_field("ttl", 64, (1, 2, 16))),
    Trigger("IatError", "eth", "state", ("error", "major"), 4, _metric("ms", 40.0, 30.0)),
    Trigger("IatWarning", "eth", "state", ("warning",), 5, _metric("ms", 20.0, 10.0)),
    Trigger("MlrError", "eth", "state", ("error", "major"), 3, _metric("packets/s", 10.0, 8.0)),
    Trigger("MlrWarning", "eth", "state", ("warning",), 4, _metric("packets/s", 1.0, 0.9)),
    Trigger("MaxBitrate", "eth", "state", ("warning", "error"), 2, _metric("bit/s", 12e6, 2e6)),
    Trigger("MinBitrate", "eth", "state", ("warning", "error"), 2, _metric("bit/s", 2e6, 1e6)),
    Trigger("ContinuityCountError", "etr", "event", ("warning", "error"), 6, _pid_errors("continuity_count")),
    Trigger("PtsError", "etr", "event", ("warning", "error"), 4, _pid_errors("pts")),
    Trigger("PsiChanged", "etr", "event", ("ok", "warning"), 2, _psi_diff),
    Trigger("AudioTrackMissing", "qoe", "state", ("warning", "error"), 4, _audio_pid),
    Trigger("VI_changed", "qoe", "event", ("ok", "warning"), 2, _video_diff),
    Trigger("AudioInformation_changed", "qoe", "event", ("ok", "warning"), 2, _audio_diff),
    Trigger("HttpError", "ott", "event", ("warning", "error", "major"), 5, _http_error),
    Trigger("DownloadError", "ott", "event", ("error", "major"), 3, _download_error),
    Trigger("BadSource", "sys", "state", ("major", "fatal"), 2, _no_signal),
    Trigger("TaskRestarted", "sys", "event", ("warning", "fatal"), 1, _restart),
    Trigger("Scte35SpliceInsert", "scte35", "event", ("ok",), 2, _scte35_splice),
    Trigger("Scte35Missing", "scte35", "state", ("warning", "major"), 1, _scte35_missing),
)
TRIGGER_NAMES: Mapping[str, str] = {trigger.name: trigger.group for trigger in CATALOGUE}
"""Every trigger name the simulator raises, with its group."""

EXTRA_INFO: tuple[JSON, ...] = (
    {"probe_build": "5.4.2-1187"},
    {"stream": {"index": 2, "bitrate": 3_500_000}},
    {"tags": ["night-shift", "backup-feed"]},
    {"reference": "a3f1c2d4-0b1e-4c8a-9f27-6d2e8b7c5a10", "severity_score": 0.73},
)


def triggers_for(transport: Literal["udp", "http"]) -> tuple[Trigger, ...]:
    """Ethernet triggers watch multicast inputs only, OTT triggers HTTP inputs only."""
    excluded = "ott" if transport == "udp" else "eth"
    return tuple(trigger for trigger in CATALOGUE if trigger.group != excluded)
