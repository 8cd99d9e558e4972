"""The Grafana dashboard: a well-formed dashboard whose every query reads metrics a running bridge exposes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.promql_names import metric_names
from tests.support.scraped_metrics import sample_names, scrape_running_bridge

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "docs" / "monitoring" / "grafana-dashboard.json"
CHART_DASHBOARD = ROOT / "helm" / "borobridge" / "files" / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def graphs() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def test_the_chart_and_the_docs_hold_the_same_dashboard() -> None:
    assert CHART_DASHBOARD.read_bytes() == DASHBOARD.read_bytes(), f"copy {CHART_DASHBOARD} to {DASHBOARD}"


def test_the_data_source_is_a_variable() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in graphs():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_panels_have_unique_ids_titles_and_queries() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert dashboard()["uid"] == "borobridge"
    for panel in graphs():
        assert panel["title"]
        assert panel["description"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_panels_cover_what_an_operator_watches() -> None:
    used = {name for panel in graphs() for target in panel["targets"] for name in metric_names(target["expr"])}
    wanted = {
        "borobridge_transitions_total",
        "borobridge_poll_duration_seconds_bucket",
        "borobridge_publish_duration_seconds_bucket",
        "borobridge_boro_request_seconds_bucket",
        "borobridge_cursor_commit_timestamp_seconds",
        "borobridge_errors_total",
        "borobridge_ready",
        "borobridge_dead_letters_total",
        "borobridge_mqtt_relay_lag",
        "borobridge_reconciled_transitions_total",
    }
    assert wanted <= used


def test_every_query_reads_metrics_a_running_bridge_exposes(tmp_path: Path) -> None:
    exposed = sample_names(scrape_running_bridge(tmp_path))
    for panel in graphs():
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            assert names - exposed == set(), panel["title"]
