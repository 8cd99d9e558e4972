"""The Helm chart renders valid, locked-down manifests for every values file in tests/unit/helm_values/.

Rendering, linting and schema checks run in-process through helm-python-sdk (Helm's Go SDK in a bundled shared
library, no helm binary, no cluster). Built-in kinds are validated offline with kubernetes-validate in strict
mode; the custom resources it has no schema for (ServiceMonitor, KafkaTopic) are checked field by field.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from borobridge.chart_schema import CONFIG_SCHEMA, config_values_schema
from borobridge.settings import load_settings

CHART_DIR = Path(__file__).parents[2] / "helm" / "borobridge"
VALUES_DIR = Path(__file__).parent / "helm_values"
GUIDE = Path(__file__).parents[2] / "docs" / "deploy.md"
VALUES_FILES = sorted(VALUES_DIR.glob("*.yaml"))
RELEASE = "demo"
NAMESPACE = "video"
FULLNAME = "demo-borobridge"
NOTES = "borobridge/templates/NOTES.txt"
CUSTOM_KINDS = frozenset({"ServiceMonitor", "KafkaTopic", "PrometheusRule"})
OLDEST_KUBERNETES = "1.27.0"  # Chart.yaml kubeVersion
POD_TMP = "/tmp"  # noqa: S108 - the pod's emptyDir mount point, never touched by the tests
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def values_of(name: str) -> dict[str, Any]:
    """The values file tests/unit/helm_values/<name>.yaml."""
    loaded: dict[str, Any] = yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return loaded


def render_files(chart: helm.Chart, values: dict[str, Any], release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, as `helm install <release> --namespace video` would produce."""
    return chart.render(values, name=release, namespace=NAMESPACE, is_install=True)


def render(chart: helm.Chart, values: dict[str, Any], release: str = RELEASE) -> list[Manifest]:
    """Every Kubernetes object the chart renders for these values."""
    files = render_files(chart, values, release)
    documents = (yaml.safe_load_all(text) for path, text in sorted(files.items()) if path != NOTES)
    return [document for stream in documents for document in stream if document]


def only(manifests: list[Manifest], kind: str) -> Manifest:
    """The one object of this kind."""
    found = [manifest for manifest in manifests if manifest["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(manifests: list[Manifest]) -> Manifest:
    spec: Manifest = only(manifests, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(manifests: list[Manifest]) -> Manifest:
    containers: list[Manifest] = pod_spec(manifests)["containers"]
    assert [entry["name"] for entry in containers] == ["borobridge"]
    return containers[0]


def config_file(manifests: list[Manifest]) -> dict[str, Any]:
    """The configuration file the bridge's ConfigMap holds, parsed (the dashboard's ConfigMap holds none)."""
    [config_map] = [m for m in manifests if m["kind"] == "ConfigMap" and "config.yaml" in m.get("data", {})]
    parsed: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return parsed


def checksum(manifests: list[Manifest]) -> str:
    annotation: str = only(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    return annotation


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda path: path.stem)
@pytest.mark.parametrize("kubernetes", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_built_in_kinds_pass_strict_kubernetes_validation(
    chart: helm.Chart, values_file: Path, kubernetes: str
) -> None:
    manifests = render(chart, values_of(values_file.stem))
    built_in = [manifest for manifest in manifests if manifest["kind"] not in CUSTOM_KINDS]
    assert {manifest["kind"] for manifest in built_in} >= {"ConfigMap", "Deployment", "Service"}
    for manifest in built_in:
        kubernetes_validate.validate(manifest, kubernetes, strict=True)


def test_all_features_render_every_kind(chart: helm.Chart) -> None:
    kinds = sorted(manifest["kind"] for manifest in render(chart, values_of("all-features")))
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Ingress",
            "Pod",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
        + ["KafkaTopic"] * 4
    )


def test_defaults_render_no_optional_resources(chart: helm.Chart) -> None:
    kinds = sorted(manifest["kind"] for manifest in render(chart, values_of("defaults")))
    assert kinds == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda path: path.stem)
def test_lint_strict_finds_nothing(values_file: Path) -> None:
    report = helm.lint(CHART_DIR, values_of(values_file.stem), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [message for message in report["messages"] if message["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"service": {"port": "8080"}}, "/service/port"),
        ({"config": {"health": {"port": "http"}}}, "/config/health/port"),
        ({"config": {"health": {"enabled": False}}}, "/config/health/enabled"),
        ({"podDisruptionBudget": {"enabled": "yes"}}, "/podDisruptionBudget/enabled"),
        ({"existingSecret": {"name": "creds", "env": {"kafka_password": "x"}}}, "'kafka_password'"),
        ({"existingSecret": {"env": {"BOROBRIDGE_MQTT__PASSWORD": "mqtt-password"}}}, "/existingSecret/name"),
        ({"kafkaTopics": {"enabled": True}}, "/kafkaTopics/clusterName"),
        ({"replicas": 2}, "replicas"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"serviceMonitor": {"interval": 30}}, "/serviceMonitor/interval"),
        ({"config": {"kafak": {"bootstrap_servers": "kafka:9092"}}}, "'kafak'"),
        ({"config": {"boro": {"poll_interval": "fast"}}}, "/config/boro/poll_interval"),
        ({"config": {"boro": {"url": 12}}}, "/config/boro/url"),
        ({"config": {"kafka": {"topics": {"partitions": 0}}}}, "/config/kafka"),
        ({"webhook": {"ingress": {"enabled": True}}}, "/webhook/ingress/host"),
    ],
    ids=[
        "string-port",
        "named-health-port",
        "no-health-listener",
        "string-bool",
        "env-name",
        "no-secret-name",
        "no-cluster",
        "replicas",
        "no-replica",
        "number-interval",
        "misspelt-section",
        "word-for-a-number",
        "number-for-a-url",
        "zero-partitions",
        "ingress-without-host",
    ],
)
def test_schema_refuses_wrong_values(chart: helm.Chart, values: dict[str, Any], path: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(path)):
        render(chart, values)


def test_chart_types_config_by_the_configuration_schema(chart: helm.Chart) -> None:
    assert chart.schema is not None
    expected = config_values_schema(json.loads(CONFIG_SCHEMA.read_text(encoding="utf-8")))
    assert chart.schema["properties"]["config"] == expected, "stale: run `python -m borobridge.chart_schema`"


FULL_CONFIG: dict[str, Any] = {
    "boro": {
        "url": "https://boro.example.internal",
        "projects": [23, 24],
        "poll_interval": 0.5,
        "filter": {"level": "major", "trigger_groups": ["etr"]},
        "hmac": {"access_id": "borobridge", "key_file": "/var/run/secrets/borobridge/boro-hmac-key"},
    },
    "first_start": {"mode": "since", "since": "2026-11-01T00:00:00Z"},
    "kafka": {
        "bootstrap_servers": "kafka:9093",
        "mode": "structured",
        "sasl": {"username": "borobridge", "password_file": "/var/run/secrets/borobridge/kafka-password"},
        "topics": {"events": "plant.alarms.{project_id}", "partitions": 12},
    },
    "mqtt": {"host": "mqtt", "protocol": "mqttv311", "topics": {"status": "plant/{bridge}/status"}},
}


def test_a_full_configuration_renders_and_borobridge_accepts_it(chart: helm.Chart, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("boro-hmac-key", "kafka-password"):
        (secrets / name).write_text("c2VjcmV0LWtleS1ieXRlcw==\n", encoding="utf-8")
    rendered = config_file(render(chart, {"config": FULL_CONFIG}))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered).replace("/var/run/secrets/borobridge", str(secrets)), encoding="utf-8")
    settings = load_settings(path, environ={})
    assert settings.kafka is not None
    assert settings.kafka.topics.events == "plant.alarms.{project_id}"
    assert settings.boro.poll_interval == 0.5


ROLLING_UPDATE = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
SESSION_TIMEOUT_SECONDS = 10  # the bridge's Kafka consumer group default
KAFKA_ONLY = {"config": {"kafka": {"bootstrap_servers": "kafka:9092"}}}


def test_without_kafka_one_pod_runs_and_stops_before_the_next(chart: helm.Chart) -> None:
    spec = only(render(chart, values_of("defaults")), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_one_kafka_replica_starts_its_successor_before_it_stops(chart: helm.Chart) -> None:
    """The new pod joins the group and fences the old one shard by shard, so it may start first."""
    spec = only(render(chart, values_of("all-features")), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == ROLLING_UPDATE


def test_three_kafka_replicas_roll_over_under_a_budget_and_spread_across_nodes(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("ha-kafka"))
    deployment = only(manifests, "Deployment")["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == ROLLING_UPDATE
    assert deployment["minReadySeconds"] >= SESSION_TIMEOUT_SECONDS
    budget = only(manifests, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget
    assert budget["selector"] == deployment["selector"]
    [spread] = pod_spec(manifests)["topologySpreadConstraints"]
    assert spread == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": deployment["selector"],
        "matchLabelKeys": ["pod-template-hash"],
    }


@pytest.mark.parametrize(
    "values",
    [{}, {"config": {"mqtt": {"host": "mqtt"}}}, {"config": {"kafka": {}}}],
    ids=["json-lines", "mqtt-only", "empty-kafka"],
)
def test_several_replicas_without_kafka_are_refused(chart: helm.Chart, values: dict[str, Any]) -> None:
    message = (
        "replicaCount is 2, but without config.kafka the bridge keeps its cursor in a local file "
        "(config.state.path), so exactly one replica may run: set replicaCount to 1, or configure config.kafka"
    )
    with pytest.raises(Exception, match=re.escape(message)):
        render(chart, values | {"replicaCount": 2})


@pytest.mark.parametrize(
    "values",
    [
        {"extraEnv": [{"name": "BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS", "value": "kafka:9092"}]},
        {"existingSecret": {"name": "creds", "env": {"BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS": "kafka-bootstrap"}}},
    ],
    ids=["extra-env", "secret"],
)
def test_kafka_from_the_environment_allows_several_replicas(chart: helm.Chart, values: dict[str, Any]) -> None:
    spec = only(render(chart, values | {"replicaCount": 2}), "Deployment")["spec"]
    assert (spec["replicas"], spec["strategy"]) == (2, ROLLING_UPDATE)


@pytest.mark.parametrize(
    ("values", "budget"),
    [
        ({"replicaCount": 2} | KAFKA_ONLY, True),
        ({"replicaCount": 2, "podDisruptionBudget": {"enabled": False}} | KAFKA_ONLY, False),
        ({"podDisruptionBudget": {"enabled": True}}, True),
        (KAFKA_ONLY, False),
    ],
    ids=["several", "several-switched-off", "one-switched-on", "one"],
)
def test_budget_follows_the_replica_count_unless_set(chart: helm.Chart, values: dict[str, Any], budget: bool) -> None:
    assert any(m["kind"] == "PodDisruptionBudget" for m in render(chart, values)) is budget


def test_spread_constraints_are_overridable(chart: helm.Chart) -> None:
    hard = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}]
    manifests = render(chart, {"topologySpreadConstraints": hard})
    [spread] = pod_spec(manifests)["topologySpreadConstraints"]
    assert spread == hard[0] | {"labelSelector": only(manifests, "Deployment")["spec"]["selector"]}
    assert "topologySpreadConstraints" not in pod_spec(render(chart, {"topologySpreadConstraints": []}))


def test_readiness_follows_group_membership_within_a_session_timeout(chart: helm.Chart) -> None:
    """A pod out of the group is out of the Service about when its shards move, and no restart interrupts it."""
    main = container(render(chart, values_of("ha-kafka")))
    readiness, liveness = main["readinessProbe"], main["livenessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= SESSION_TIMEOUT_SECONDS
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > 2 * SESSION_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "one pod (no Kafka: the cursor is in a local file, so an upgrade stops it before starting the next)"),
        (KAFKA_ONLY, "one pod (an upgrade starts the new pod first; it takes the streams over within seconds)"),
        (values_of("ha-kafka"), "3 pods sharing the streams through a Kafka consumer group"),
    ],
    ids=["no-kafka", "one-kafka", "three-kafka"],
)
def test_notes_say_how_many_pods_run(chart: helm.Chart, values: dict[str, Any], expected: str) -> None:
    notes = " ".join(render_files(chart, values)[NOTES].split())
    assert expected in notes


def test_pod_is_locked_down(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("defaults"))
    pod = pod_spec(manifests)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(manifests)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    assert only(manifests, "ServiceAccount")["automountServiceAccountToken"] is False


def test_no_service_links_reach_the_environment(chart: helm.Chart) -> None:
    """A Service named borobridge would otherwise inject BOROBRIDGE_SERVICE_HOST, read as configuration."""
    assert pod_spec(render(chart, values_of("defaults")))["enableServiceLinks"] is False


def test_only_tmp_is_writable(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("sasl-tls"))
    writable = [mount["mountPath"] for mount in container(manifests)["volumeMounts"] if not mount.get("readOnly")]
    assert writable == [POD_TMP]
    volumes = {volume["name"]: volume for volume in pod_spec(manifests)["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}


def test_no_default_resources(chart: helm.Chart) -> None:
    assert "resources" not in container(render(chart, values_of("defaults")))
    assert container(render(chart, values_of("all-features")))["resources"]["limits"] == {"memory": "256Mi"}


def test_probes_hit_the_health_endpoints_on_the_configured_port(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("all-features"))
    main = container(manifests)
    assert main["ports"][0] == {"name": "http", "containerPort": 9095, "protocol": "TCP"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert only(manifests, "Service")["spec"]["ports"][0] == {
        "name": "http",
        "port": 8080,
        "targetPort": "http",
        "protocol": "TCP",
    }


def test_probes_are_rendered_as_given(chart: helm.Chart) -> None:
    """Helm merges values into the defaults; null removes a key, so a probe can switch handler or go."""
    values = {"livenessProbe": {"httpGet": None, "tcpSocket": {"port": "http"}}, "startupProbe": None}
    main = container(render(chart, values))
    assert main["livenessProbe"] == {
        "tcpSocket": {"port": "http"},
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 6,
    }
    assert "startupProbe" not in main


def test_container_reads_the_rendered_configuration(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("defaults"))
    main = container(manifests)
    assert main["args"] == ["run", "--config", "/etc/borobridge/config.yaml"]
    assert {"name": "config", "mountPath": "/etc/borobridge", "readOnly": True} in main["volumeMounts"]
    volumes = {volume["name"]: volume for volume in pod_spec(manifests)["volumes"]}
    assert volumes["config"]["configMap"]["name"] == only(manifests, "ConfigMap")["metadata"]["name"]


def test_default_configuration_is_accepted_by_borobridge(chart: helm.Chart, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(only(render(chart, values_of("defaults")), "ConfigMap")["data"]["config.yaml"])
    settings = load_settings(path, environ={})
    assert settings.name == FULLNAME
    assert settings.health.port == 8080
    assert settings.health.host == "0.0.0.0", "the kubelet's probes and Prometheus come from outside the pod"  # noqa: S104
    assert load_settings(None, environ={}).health.host == "127.0.0.1", "outside a pod the listener stays local"
    assert settings.logging.format == "json"
    assert settings.state.path.startswith(f"{POD_TMP}/")


def test_bridge_name_defaults_to_the_release_and_can_be_set(chart: helm.Chart) -> None:
    assert config_file(render(chart, values_of("defaults")))["name"] == FULLNAME
    assert config_file(render(chart, values_of("all-features")))["name"] == "plant-a"


def test_config_passes_through_unchanged(chart: helm.Chart) -> None:
    values = values_of("sasl-tls")
    rendered = config_file(render(chart, values))
    assert rendered == chart.merge_values(values)["config"]
    assert values["config"].items() <= rendered.items()


def test_checksum_follows_the_configuration_only(chart: helm.Chart) -> None:
    base = checksum(render(chart, {}))
    assert checksum(render(chart, {"config": {"logging": {"level": "DEBUG"}}})) != base
    assert checksum(render(chart, {"podAnnotations": {"note": "unrelated"}})) == base
    assert checksum(render(chart, {})) == base


def test_pod_annotations_keep_the_checksum(chart: helm.Chart) -> None:
    annotations = only(render(chart, values_of("all-features")), "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert set(annotations) == {"checksum/config", "example.internal/team"}


def test_secret_keys_become_environment_variables(chart: helm.Chart) -> None:
    env = container(render(chart, values_of("sasl-tls")))["env"]
    assert env == [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": "borobridge-credentials", "key": key}}}
        for variable, key in [
            ("BOROBRIDGE_BORO__HMAC__KEY", "boro-hmac-key"),
            ("BOROBRIDGE_KAFKA__SASL__PASSWORD", "kafka-password"),
            ("BOROBRIDGE_MQTT__PASSWORD", "mqtt-password"),
        ]
    ]


def test_secret_files_are_mounted_where_the_configuration_points(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("sasl-tls"))
    directory = "/var/run/secrets/borobridge"
    mount = {"name": "credentials", "mountPath": directory, "readOnly": True}
    assert mount in container(manifests)["volumeMounts"]
    volumes = {volume["name"]: volume for volume in pod_spec(manifests)["volumes"]}
    assert volumes["credentials"]["secret"] == {"secretName": "borobridge-credentials", "defaultMode": 0o440}
    ca_file = config_file(manifests)["kafka"]["tls"]["ca_file"]
    assert ca_file.startswith(f"{directory}/")


def test_no_secret_no_credentials(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("defaults"))
    assert "env" not in container(manifests)
    assert [volume["name"] for volume in pod_spec(manifests)["volumes"]] == ["config", "tmp"]


def test_extra_env_follows_the_secret_variables(chart: helm.Chart) -> None:
    values = values_of("sasl-tls") | {"extraEnv": [{"name": "BOROBRIDGE_LOGGING__LEVEL", "value": "DEBUG"}]}
    names = [entry["name"] for entry in container(render(chart, values))["env"]]
    assert names[-1] == "BOROBRIDGE_LOGGING__LEVEL"
    assert len(names) == 4


def test_image_defaults_to_the_app_version_and_prefers_a_digest(chart: helm.Chart) -> None:
    assert container(render(chart, {}))["image"] == "borobridge:0.1.0"
    assert container(render(chart, values_of("all-features")))["image"] == (
        "registry.example.internal/borobridge@sha256:" + "0123456789abcdef" * 4
    )


def test_pod_disruption_budget_only_when_enabled(chart: helm.Chart) -> None:
    assert not [m for m in render(chart, values_of("defaults")) if m["kind"] == "PodDisruptionBudget"]
    manifests = render(chart, values_of("all-features"))
    budget = only(manifests, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert budget["selector"] == only(manifests, "Deployment")["spec"]["selector"]


def test_service_monitor_scrapes_the_service(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("all-features"))
    monitor = only(manifests, "ServiceMonitor")
    service = only(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
    assert endpoint["metricRelabelings"][0]["action"] == "drop"


def test_monitoring_renders_the_rules_and_the_dashboard_as_documented(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("monitoring"))
    assert sorted(manifest["kind"] for manifest in manifests) == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "Pod", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"]
    )
    rule = only(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load((CHART_DIR.parents[1] / "docs/monitoring/prometheus-rules.yaml").read_text())
    [dashboard] = [m for m in manifests if m["kind"] == "ConfigMap" and "grafana_dashboard" in m["metadata"]["labels"]]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Video"}
    assert dashboard["metadata"]["namespace"] == NAMESPACE
    dashboard_file = CHART_DIR.parents[1] / "docs/monitoring/grafana-dashboard.json"
    assert json.loads(dashboard["data"]["borobridge.json"]) == json.loads(dashboard_file.read_text())


def test_webhooks_get_a_port_and_an_ingress_only_when_enabled(chart: helm.Chart) -> None:
    defaults = render(chart, {})
    assert [port["name"] for port in container(defaults)["ports"]] == ["http"]
    assert [port["name"] for port in only(defaults, "Service")["spec"]["ports"]] == ["http"]
    assert config_file(defaults)["webhook"]["enabled"] is False
    manifests = render(chart, values_of("all-features"))
    assert {"name": "webhook", "containerPort": 9096, "protocol": "TCP"} in container(manifests)["ports"]
    service_ports = only(manifests, "Service")["spec"]["ports"]
    assert {"name": "webhook", "port": 80, "targetPort": "webhook", "protocol": "TCP"} in service_ports
    ingress = only(manifests, "Ingress")
    assert ingress["metadata"]["name"] == f"{FULLNAME}-webhooks"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "borobridge.example.internal"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhooks/boro/", "Prefix")
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "webhook"}}
    notes = render_files(chart, values_of("all-features"))[NOTES]
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:80/webhooks/boro/<project_id>" in notes
    assert "https://borobridge.example.internal/webhooks/boro/<project_id>" in notes
    assert "webhooks/boro" not in render_files(chart, {})[NOTES]


def test_an_ingress_without_the_webhook_listener_is_refused(chart: helm.Chart) -> None:
    values = {"webhook": {"ingress": {"enabled": True, "host": "borobridge.example.internal"}}}
    with pytest.raises(Exception, match=r"needs config\.webhook\.enabled"):
        render(chart, values)


def test_kafka_topics_match_the_bridge_defaults(chart: helm.Chart) -> None:
    topics = [m for m in render(chart, values_of("all-features")) if m["kind"] == "KafkaTopic"]
    policies = {topic["spec"]["topicName"]: topic["spec"]["config"]["cleanup.policy"] for topic in topics}
    assert policies == {
        "_borobridge.checkpoints": "compact",
        "boro.alarms.active": "compact",
        "_borobridge.schemas": "compact",
        "boro.alarms.dlq": "delete",
    }
    for topic in topics:
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["namespace"] == "kafka"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "main"
        assert topic["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert DNS_SUBDOMAIN.match(topic["metadata"]["name"])
        assert len(topic["metadata"]["name"]) <= 63
        assert (topic["spec"]["partitions"], topic["spec"]["replicas"]) == (1, 3)


def test_kafka_topics_can_be_released_on_uninstall(chart: helm.Chart) -> None:
    values = {"kafkaTopics": {"enabled": True, "clusterName": "main", "keepOnUninstall": False}}
    topics = [m for m in render(chart, values) if m["kind"] == "KafkaTopic"]
    assert len(topics) == 4
    assert all("annotations" not in topic["metadata"] for topic in topics)


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda path: path.stem)
def test_notes_name_resources_the_chart_renders(chart: helm.Chart, values_file: Path) -> None:
    values = values_of(values_file.stem)
    files = render_files(chart, values)
    rendered = {(m["kind"].lower(), m["metadata"]["name"]) for m in render(chart, values)}
    references = set(re.findall(r"\b(deployment|service)/([a-z0-9-]+)", files[NOTES]))
    assert references == {("deployment", FULLNAME), ("service", FULLNAME)}
    assert references <= rendered
    assert f"8080:{values.get('service', {}).get('port', 8080)}" in files[NOTES]


def test_notes_list_what_the_secret_must_hold(chart: helm.Chart) -> None:
    notes = render_files(chart, values_of("sasl-tls"))[NOTES]
    assert "video/borobridge-credentials" in notes
    for key, variable in [
        ("kafka-password", "BOROBRIDGE_KAFKA__SASL__PASSWORD"),
        ("mqtt-password", "BOROBRIDGE_MQTT__PASSWORD"),
    ]:
        assert f"{key}  -> environment variable {variable}" in notes
    assert "/var/run/secrets/borobridge/<key>" in notes
    assert "No Secret is used" in render_files(chart, {})[NOTES]


def test_notes_describe_optional_resources_only_when_rendered(chart: helm.Chart) -> None:
    notes = render_files(chart, values_of("all-features"))[NOTES]
    assert f"ServiceMonitor monitoring/{FULLNAME}" in notes
    assert "_borobridge.checkpoints (compact)" in notes
    assert "boro.alarms.dlq (delete)" in notes
    defaults = render_files(chart, {})[NOTES]
    assert "ServiceMonitor" not in defaults
    assert "KafkaTopic" not in defaults


def docs_values_blocks() -> list[str]:
    """The values snippets of the deployment guide."""
    guide = GUIDE.read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", guide, flags=re.DOTALL)


@pytest.mark.parametrize("block", range(len(docs_values_blocks())))
def test_deployment_guide_values_are_accepted(chart: helm.Chart, block: int) -> None:
    values = yaml.safe_load(docs_values_blocks()[block])
    assert only(render(chart, values, release="borobridge"), "Deployment")["metadata"]["name"] == "borobridge"


def test_deployment_guide_names_what_the_chart_renders(chart: helm.Chart) -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    values = {"kafkaTopics": {"enabled": True, "clusterName": "main"}}
    rendered = {(m["kind"].lower(), m["metadata"]["name"]) for m in render(chart, values, release="borobridge")}
    references = re.findall(r"\b(deployment|service)/([a-z0-9-]+)", guide)
    topics = re.findall(r"`(borobridge-[a-z]+)`", guide)
    assert len(references) >= 4
    assert len(topics) == 4
    assert set(references) | {("kafkatopic", name) for name in topics} <= rendered
    assert len(docs_values_blocks()) >= 4


def schema_leaves(values: Any, schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Each default value with the schema node that types it, down to the objects given whole."""
    for key, value in values.items():
        node = schema.get("properties", {}).get(key) or schema.get("additionalProperties") or {}
        yield f"{path}.{key}", node
        structured = "properties" in node or isinstance(node.get("additionalProperties"), dict)
        if isinstance(value, dict) and structured:
            yield from schema_leaves(value, node, f"{path}.{key}")


def test_every_default_value_is_typed(chart: helm.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    untyped = [path for path, node in schema_leaves(chart.values, schema) if "type" not in node]
    assert untyped == []


def values_keys(text: str) -> Iterator[tuple[str, bool]]:
    """The dotted path of every key in a values file, and whether a comment line sits right above it."""
    parents: list[tuple[int, str]] = []
    previous = ""
    for line in text.splitlines():
        match = re.match(r"^( *)([\w.]+):", line)
        if match:
            indent = len(match[1])
            parents = [(level, key) for level, key in parents if level < indent]
            parents.append((indent, match[2]))
            yield ".".join(key for _, key in parents), previous.lstrip().startswith("#")
        if line.strip():
            previous = line


def test_every_value_is_commented() -> None:
    """Each key of values.yaml has a comment above it, except inside Kubernetes objects given whole."""
    given_whole = re.compile(
        r"^(podSecurityContext|securityContext|topologySpreadConstraints|\w+Probe|kafkaTopics\.topics\.\w+\.config)\."
    )
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    undocumented = [path for path, commented in values_keys(text) if not commented and not given_whole.match(path)]
    assert undocumented == []
    assert len(list(values_keys(text))) > 50


SIMULATOR_WARNING = "config.boro.url is empty"


@pytest.mark.parametrize(
    ("values", "warned"),
    [
        ({"config": {"kafka": {"bootstrap_servers": "kafka:9092"}}}, True),
        ({"config": {"boro": {"url": ""}, "mqtt": {"host": "mqtt"}}}, True),
        ({}, False),
        (values_of("sasl-tls"), False),
        (
            {
                "config": {"kafka": {"bootstrap_servers": "kafka:9092"}},
                "extraEnv": [{"name": "BOROBRIDGE_BORO__URL", "value": "https://boro.example.internal"}],
            },
            False,
        ),
    ],
    ids=["kafka-no-url", "mqtt-empty-url", "demo-mode", "url-set", "url-from-env"],
)
def test_notes_warn_when_the_simulator_feeds_a_real_broker(
    chart: helm.Chart, values: dict[str, Any], warned: bool
) -> None:
    assert (SIMULATOR_WARNING in render_files(chart, values)[NOTES]) is warned


def test_chart_names_its_home_sources_and_maintainers(chart: helm.Chart) -> None:
    metadata = chart.metadata
    assert metadata["home"] in metadata["sources"]
    assert all(source.startswith("https://") for source in metadata["sources"])
    assert [maintainer["name"] for maintainer in metadata["maintainers"]] != []


def the_test_pod(manifests: list[Manifest]) -> Manifest:
    pods = [manifest for manifest in manifests if manifest["kind"] == "Pod"]
    assert len(pods) == 1, "one helm test pod"
    return pods[0]


def test_helm_test_pod_checks_readyz_through_the_service(chart: helm.Chart) -> None:
    manifests = render(chart, values_of("all-features"))
    pod = the_test_pod(manifests)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    [probe] = pod["spec"]["containers"]
    assert probe["image"] == container(manifests)["image"]
    assert probe["securityContext"] == container(manifests)["securityContext"]
    assert pod["spec"]["securityContext"] == pod_spec(manifests)["securityContext"]
    assert probe["args"] == [f"http://{FULLNAME}.{NAMESPACE}.svc:8080/readyz"]


class Health(BaseHTTPRequestHandler):
    """/readyz as the bridge answers it: 200 when ready, 503 with the reason otherwise."""

    status = 200

    def do_GET(self) -> None:
        body = b"ready" if self.status == 200 else b"kafka: not connected"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.mark.parametrize(("status", "returncode"), [(200, 0), (503, 1)])
def test_helm_test_pod_command_passes_only_when_ready(chart: helm.Chart, status: int, returncode: int) -> None:
    probe = the_test_pod(render(chart, {}))["spec"]["containers"][0]
    handler = type("Answer", (Health,), {"status": status})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        command = [sys.executable if part == "python" else part for part in probe["command"]]
        done = subprocess.run([*command, url], capture_output=True, text=True, timeout=30, check=False)
        server.shutdown()
        thread.join(timeout=5)
    assert done.returncode == returncode, done.stderr
    if returncode:
        assert done.stderr.strip() == f"{url}: HTTP 503: kafka: not connected"
        assert "Traceback" not in done.stderr
