"""The configuration: one frozen, keyword-only msgspec Struct tree.

Sources, later ones winning: the YAML file, then ``BOROBRIDGE_<SECTION>__<KEY>`` environment variables (values
parsed as YAML scalars or flow lists), then ``<key>_file`` entries, which read a secret from a file. Every problem
is reported with its path, all at once, by :func:`load_settings`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import yaml

from borobridge.boro.hmac_auth import decode_key
from borobridge.errors import ConfigError
from borobridge.secret import Secret, masked_url
from borobridge.settings_validation import collect_errors, convert_hooks

ENV_PREFIX: Final = "BOROBRIDGE_"

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Level = Literal["ok", "warning", "error", "major", "fatal"]
TriggerGroup = Literal["eth", "etr", "qoe", "ott", "sys", "scte35"]


class Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options shared by every settings section."""


class FilterSettings(Base, frozen=True):
    """The TaskAlarms ``filter`` sent with every poll (groups AND names)."""

    level: Level | None = None
    trigger_groups: list[TriggerGroup] = []
    trigger_names: list[str] = []


class HmacSettings(Base, frozen=True):
    """APIAuth HMAC-SHA256 request signing; the key is given in base64 or hex."""

    key: Secret
    access_id: str | None = None


class RetrySettings(Base, frozen=True):
    """Backoff after a failed poll or delivery: exponential with full jitter."""

    initial_backoff: PositiveFloat = 0.5
    max_backoff: PositiveFloat = 30.0
    max_drain_requests: PositiveInt = 50


class BoroTlsSettings(Base, frozen=True):
    """HTTPS to Boro: the CA that signed its certificate (else the system's CAs), a client certificate for
    mutual TLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class BoroSettings(Base, frozen=True):
    """Where and how to poll the Boro Control API."""

    url: str = ""
    server_name: str | None = None
    user_id: int = 1
    projects: list[int] | Literal["all"] = "all"
    task_ids: list[int] | Literal["*"] = "*"
    poll_interval: PositiveFloat = 2.0
    request_timeout: PositiveFloat = 10.0
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50
    page_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    discovery_interval: PositiveFloat = 300.0
    reply_order: Literal["oldest_first", "newest_first"] = "oldest_first"
    filter: FilterSettings = FilterSettings()
    hmac: HmacSettings | None = None
    tls: BoroTlsSettings | None = None
    retry: RetrySettings = RetrySettings()


class FirstStartSettings(Base, frozen=True):
    """What a stream with no cursor does: ``now``, ``since`` a time, or ``all`` history; and whether that history is
    read ``first`` (before the live alarms, each task's order kept throughout) or ``beside`` the live alarms (they
    flow at once; a task's older history may reach consumers after its newer live changes)."""

    mode: Literal["now", "since", "all"] = "now"
    since: dt.datetime | None = None
    history: Literal["first", "beside"] = "first"


Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
ReplyOrder = Literal["oldest_first", "newest_first"]


class SimulatorFaultSettings(Base, frozen=True):
    """How often the simulator misbehaves: probabilities 0..1, per request unless said otherwise."""

    http_5xx: Probability = 0.0
    http_429: Probability = 0.0
    retry_after: NonNegativeFloat = 1.0
    slow: Probability = 0.0
    slow_seconds: NonNegativeFloat = 2.0
    malformed: Probability = 0.0
    error_item: Probability = 0.0
    repeat: Probability = 0.0
    burst: Probability = 0.0


class ReconcileSettings(Base, frozen=True):
    """The reconciliation sweep: every ``interval`` seconds each stream re-reads the last ``window`` seconds of
    Boro's clock by period and delivers whatever the token path missed."""

    interval: PositiveFloat = 300.0
    window: PositiveInt = 900


class SimulatorWebhookSettings(Base, frozen=True):
    """Webhooks the simulator sends for every record change, as a Boro project's notification profile would,
    and how often they go wrong (probabilities 0..1 per webhook)."""

    url: str | None = None
    hmac: HmacSettings | None = None
    lost: Probability = 0.0
    delayed: Probability = 0.0
    delay_seconds: NonNegativeFloat = 2.0
    duplicated: Probability = 0.0
    bad_signature: Probability = 0.0


class SimulatorSettings(Base, frozen=True):
    """The built-in Boro simulator (the embedded default, and ``borobridge simulate``): its world, the reading
    of the Boro API it plays (its personality, docs/simulator.md) and its faults.
    """

    seed: int = 1
    projects: PositiveInt = 2
    rate_per_second: NonNegativeFloat = 5.0
    token_mode: Literal["sequence", "timestamp", "record_time", "reply_time"] = "sequence"  # noqa: S105 - a mode
    token_compare: Literal["inclusive", "exclusive"] = "inclusive"  # noqa: S105 - a comparison, not a password
    token_order: ReplyOrder = "oldest_first"  # noqa: S105 - an order, not a password
    period_order: ReplyOrder = "oldest_first"
    clock_offset: Annotated[float, msgspec.Meta(ge=-3600, le=3600)] = 0.0
    probe_stops: Probability = 0.0
    stop_seconds: PositiveFloat = 30.0
    moving_records: Probability = 0.0
    faults: SimulatorFaultSettings = SimulatorFaultSettings()
    webhooks: SimulatorWebhookSettings = SimulatorWebhookSettings()


class OutputSettings(Base, frozen=True):
    """The JSON-lines sink of the embedded default: stdout, or a file when ``path`` is set."""

    path: str | None = None


class StateSettings(Base, frozen=True):
    """The local cursor file used when there is no Kafka."""

    path: str = "borobridge-state.json"


class HealthSettings(Base, frozen=True):
    """The HTTP listener for /livez, /readyz and /metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"  # a pod sets 0.0.0.0 (the Helm chart does) so that probes and scrapers reach it
    port: Port = 8080


class WebhookHmacSettings(Base, frozen=True):
    """The APIAuth HMAC-SHA256 signature every webhook must carry; the key is given in base64 or hex."""

    key: Secret
    access_id: str | None = None
    max_skew: PositiveFloat = 60.0


class WebhookSettings(Base, frozen=True):
    """The listener for Boro webhooks: each one makes the bridge poll at once (coalesced), besides the regular
    poll interval."""

    enabled: bool = False
    host: str = "127.0.0.1"  # a pod sets 0.0.0.0 (the Helm chart does) so that Boro reaches it
    port: Port = 8081
    max_body_bytes: PositiveInt = 65_536
    min_gap: NonNegativeFloat = 0.05
    hmac: WebhookHmacSettings | None = None


class KafkaSaslSettings(Base, frozen=True):
    """SASL authentication: PLAIN or SCRAM."""

    username: str
    password: Secret
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"


class KafkaTlsSettings(Base, frozen=True):
    """TLS to the brokers: a CA file, and a client certificate for mutual TLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True


class KafkaTopicSettings(Base, frozen=True):
    """Topic names; ``events`` is a template with ``{project_id}``."""

    events: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._{}-]+$")] = "boro.alarms.{project_id}"
    active: str = "boro.alarms.active"
    checkpoints: str = "_borobridge.checkpoints"
    schemas: str = "_borobridge.schemas"
    dead_letters: str = "boro.alarms.dlq"
    create: bool = True
    partitions: PositiveInt = 6
    replication_factor: Annotated[int, msgspec.Meta(ge=-1)] = -1
    events_retention_ms: int | None = None


class KafkaSettings(Base, frozen=True):
    """Apache Kafka delivery: exactly-once (transactions) by default, or at-least-once."""

    bootstrap_servers: str
    transactional: bool = True
    mode: Literal["binary", "structured"] = "binary"
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    linger_ms: Annotated[int, msgspec.Meta(ge=0)] = 5
    max_batch_bytes: PositiveInt = 1_048_576
    transaction_timeout_ms: PositiveInt = 60_000
    request_timeout_ms: PositiveInt = 30_000
    delivery_timeout_ms: PositiveInt = 60_000
    topics: KafkaTopicSettings = KafkaTopicSettings()
    sasl: KafkaSaslSettings | None = None
    tls: KafkaTlsSettings | None = None


class MqttTlsSettings(Base, frozen=True):
    """TLS to the MQTT broker: a CA file, and a client certificate for mutual TLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class MqttTopicSettings(Base, frozen=True):
    """Topic templates; fields: {project} {task} {group} {name} {alarm_id} {bridge}."""

    transitions: str = "boro/{project}/{task}/{group}/{name}"
    active: str = "boro/{project}/{task}/active/{alarm_id}"
    status: str = "borobridge/{bridge}/status"
    schemas: str = "borobridge/schemas/{name}"


class MqttSettings(Base, frozen=True):
    """MQTT delivery (QoS 1): relayed from the committed Kafka topics, or direct when there is no Kafka."""

    host: str
    port: Port = 1883
    protocol: Literal["mqttv5", "mqttv311"] = "mqttv5"
    username: str | None = None
    password: Secret | None = None
    tls: MqttTlsSettings | None = None
    client_id: str | None = None
    keepalive: PositiveInt = 30
    publish_timeout: PositiveFloat = 10.0
    max_inflight: PositiveInt = 200
    topics: MqttTopicSettings = MqttTopicSettings()


class LoggingSettings(Base, frozen=True):
    """Log level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(Base, frozen=True):
    """The whole configuration of one bridge instance."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = "borobridge"
    boro: BoroSettings = BoroSettings()
    first_start: FirstStartSettings = FirstStartSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    output: OutputSettings = OutputSettings()
    state: StateSettings = StateSettings()
    health: HealthSettings = HealthSettings()
    webhook: WebhookSettings = WebhookSettings()
    logging: LoggingSettings = LoggingSettings()
    kafka: KafkaSettings | None = None
    mqtt: MqttSettings | None = None


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file and the environment into validated settings, or raise ConfigError listing every fault."""
    raw = _read_yaml(path) if path is not None else {}
    errors: list[str] = []
    _apply_environment(raw, environ or {}, errors)
    _read_secret_files(raw, errors)
    errors += collect_errors(raw, Settings)
    errors += _cross_field_errors(raw)
    if errors:
        raise ConfigError(errors)
    return msgspec.convert(raw, Settings, strict=False, dec_hook=convert_hooks.decode)


def settings_to_builtins(settings: Settings) -> Any:
    """The effective configuration as plain data, secrets masked (``user:password@`` of the Boro URL too), for
    ``check-config``."""
    data = msgspec.to_builtins(settings, enc_hook=convert_hooks.encode)
    data["boro"]["url"] = masked_url(settings.boro.url)
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the file ({exc.strerror})"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"{path}: expected a mapping at the top level, got {type(loaded).__name__}"])
    return loaded


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str], errors: list[str]) -> None:
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name.removeprefix(ENV_PREFIX).lower().split("__")
        value: Any = text if _is_secret_key(keys[-1]) else _parse_scalar(text)
        _set_path(raw, keys, value, name, errors)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _is_secret_key(key: str) -> bool:
    return key in {"password", "key"} or key.endswith("_file")


def _set_path(raw: dict[str, Any], keys: list[str], value: Any, origin: str, errors: list[str]) -> None:
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            errors.append(f"{origin}: cannot set {'.'.join(keys)}: {key} is not a section")
            return
        node = child
    node[keys[-1]] = value


def _read_secret_files(node: dict[str, Any], errors: list[str], path: str = "") -> None:
    """Replace ``password_file`` and ``key_file`` entries by the secret read from the file; a ``tls`` section's
    ``key_file`` is the path of a client certificate's key, which the TLS library reads itself."""
    for key in list(node):
        value = node[key]
        if isinstance(value, dict):
            _read_secret_files(value, errors, f"{path}{key}.")
        elif _names_a_secret_file(key) and not path.endswith("tls."):
            target = key.removesuffix("_file")
            try:
                node[target] = Path(str(value)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                errors.append(f"{path}{key}: cannot read secret file {value!r} ({exc.strerror})")
            del node[key]


def _names_a_secret_file(key: str) -> bool:
    return key.endswith("_file") and key.removesuffix("_file") in {"password", "key"}


def _cross_field_errors(raw: dict[str, Any]) -> list[str]:
    errors = []
    first_start = raw.get("first_start")
    if isinstance(first_start, dict) and first_start.get("mode") == "since" and not first_start.get("since"):
        errors.append("first_start.since: required when first_start.mode is 'since' (an RFC 3339 time)")
    boro: dict[str, Any] = raw["boro"] if isinstance(raw.get("boro"), dict) else {}
    url = str(boro.get("url") or "")
    if boro.get("tls") is not None and url.lower().startswith("http://"):
        errors.append(f"boro.tls: set, but boro.url is {masked_url(url)}, which is plaintext; write https://")
    for path in (("boro", "hmac"), ("webhook", "hmac"), ("simulator", "webhooks", "hmac")):
        errors += _key_errors(raw, path)
    return errors


def _key_errors(raw: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    """The problem with the API key at ``path``.key, if it is there and neither hex nor base64."""
    node: Any = raw
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict) or not isinstance(node.get("key"), str | int):
        return []
    try:
        decode_key(str(node["key"]))
    except ValueError as exc:
        return [f"{'.'.join(path)}.key: {exc}"]
    return []
