"""Checks of a loaded configuration for what would otherwise only fail once the bridge runs.

The settings types check each value on its own; these check what a value means: that a URL parses, that a
template names only fields the bridge fills in, that the brokers' addresses are ``host:port``, that the state
file can be written, that a start time has passed. ``run`` and ``check-config`` both refuse such a configuration.
"""

from __future__ import annotations

import datetime as dt
import string
import tempfile
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from borobridge.errors import ConfigError
from borobridge.kafka.connection import bootstrap_servers
from borobridge.secret import masked_url
from borobridge.settings import BoroSettings, FirstStartSettings, KafkaSettings, MqttSettings, Settings

_ALARM_FIELDS: Final = ("project", "task", "group", "name", "alarm_id")
TEMPLATE_FIELDS: Final = {
    "kafka.topics.events": ("project_id",),
    "mqtt.topics.transitions": _ALARM_FIELDS,
    "mqtt.topics.active": _ALARM_FIELDS,
    "mqtt.topics.status": ("bridge",),
    "mqtt.topics.schemas": ("name",),
}


def check_runtime(settings: Settings, now: dt.datetime | None = None) -> None:
    """Raise ConfigError listing every problem :func:`runtime_problems` finds."""
    problems = runtime_problems(settings, now)
    if problems:
        raise ConfigError(problems)


def runtime_problems(settings: Settings, now: dt.datetime | None = None) -> list[str]:
    """One ``path: problem; fix`` line per setting that would make the running bridge fail."""
    return [
        *_url_problems(settings.boro),
        *_template_problems(settings.kafka, settings.mqtt),
        *_bootstrap_problems(settings.kafka),
        *_state_problems(settings),
        *_first_start_problems(settings.first_start, now or dt.datetime.now(dt.UTC)),
    ]


def _url_problems(boro: BoroSettings) -> list[str]:
    if not boro.url:
        return []
    parts = urlsplit(boro.url)
    shown = masked_url(boro.url)
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        return [f"boro.url: {shown!r} has an invalid port; write e.g. https://boro.example/ctrl_api/v1/json"]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"boro.url: {shown!r} is not an http(s) URL; write e.g. https://boro.example/ctrl_api/v1/json"]
    if boro.hmac is not None and "@" in parts.netloc:
        return [
            f"boro.url: {shown!r} carries user:password@, which is sent as HTTP Basic authorisation and would "
            "replace the boro.hmac signature in the same Authorization header; remove one of them"
        ]
    return []


def _template_problems(kafka: KafkaSettings | None, mqtt: MqttSettings | None) -> list[str]:
    templates = {}
    if kafka is not None:
        templates["kafka.topics.events"] = kafka.topics.events
    if mqtt is not None:
        topics = mqtt.topics
        templates |= {
            "mqtt.topics.transitions": topics.transitions,
            "mqtt.topics.active": topics.active,
            "mqtt.topics.status": topics.status,
            "mqtt.topics.schemas": topics.schemas,
        }
    return [problem for path, text in templates.items() if (problem := _template_problem(path, text)) is not None]


def _template_problem(path: str, template: str) -> str | None:
    allowed = TEMPLATE_FIELDS[path]
    choices = ", ".join(f"{{{field}}}" for field in allowed)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        return f"{path}: {template!r} is not a template ({exc}); write fields as {choices}"
    unknown = [field for field in fields if field not in allowed]
    if unknown:
        return f"{path}: unknown template field {{{unknown[0]}}} in {template!r}; use {choices}"
    return None


def _bootstrap_problems(kafka: KafkaSettings | None) -> list[str]:
    if kafka is None:
        return []
    try:
        bootstrap_servers(kafka.bootstrap_servers)
    except ConfigError as exc:
        return exc.errors
    return []


def _state_problems(settings: Settings) -> list[str]:
    """The local state file is used only without Kafka; its directory must take a new file."""
    if settings.kafka is not None:
        return []
    path = Path(settings.state.path)
    if path.is_dir():
        return [f"state.path: {path} is a directory; name a file, e.g. {path / 'borobridge-state.json'}"]
    directory = _existing_ancestor(path.parent)
    if not directory.is_dir():
        return [f"state.path: {directory} is not a directory; choose a state.path in a writable directory"]
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".borobridge-probe-"):
            pass
    except OSError as exc:
        return [
            f"state.path: cannot write in {directory} ({exc.strerror}); choose a state.path in a writable directory"
        ]
    return []


def _existing_ancestor(directory: Path) -> Path:
    """The directory itself, or the nearest parent that exists (the bridge creates the missing ones)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def _first_start_problems(first_start: FirstStartSettings, now: dt.datetime) -> list[str]:
    since = first_start.since
    if first_start.mode != "since" or since is None:
        return []
    moment = since if since.tzinfo is not None else since.replace(tzinfo=dt.UTC)
    if moment <= now:
        return []
    return [f"first_start.since: {since.isoformat()} is in the future; give a time that has passed, or use mode now"]
