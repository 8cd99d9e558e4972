"""The alert rules: promtool accepts them and their unit tests pass, the chart and the docs hold the same file,
and every metric they read is one a running bridge exposes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promql_names import metric_names
from tests.support.scraped_metrics import sample_names, scrape_running_bridge

ROOT = Path(__file__).parents[2]
RULES = ROOT / "docs" / "monitoring" / "prometheus-rules.yaml"
CHART_RULES = ROOT / "helm" / "borobridge" / "files" / "prometheus-rules.yaml"
RULE_TESTS = ROOT / "docs" / "monitoring" / "alerts.test.yaml"
GUIDE = ROOT / "docs" / "monitoring.md"


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (Debian's prometheus package, installed by scripts/install-system-packages)."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run scripts/install-system-packages (Debian package prometheus)")
    return subprocess.run([binary, *arguments], capture_output=True, text=True, timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_every_alert_fires_and_stays_quiet_in_its_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tested for case in test["alert_rule_test"]]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} is never shown firing"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} is never shown quiet"


def test_the_chart_and_the_docs_hold_the_same_rules() -> None:
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), f"copy {CHART_RULES} to {RULES}"


def test_every_alert_is_explained_in_the_guide() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    for rule in rules():
        assert f"### {rule['alert']}" in guide
        assert rule["annotations"]["runbook"] == f"docs/monitoring.md#{rule['alert'].lower()}"


def test_every_metric_the_rules_read_is_exposed_by_a_running_bridge(tmp_path: Path) -> None:
    exposed = sample_names(scrape_running_bridge(tmp_path))
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert {"borobridge_ready", "process_start_time_seconds"} <= used
    assert used - exposed == set()


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job) (rate(a_total{kind=~"x|y"}[5m])) > 0 unless on (job) b', {"a_total", "b"}),
        ("time() - c > on (job, instance) group_left () clamp_min(10 * d, 120)", {"c", "d"}),
        ('histogram_quantile(0.5, sum by (le) (rate(e_bucket{job=~"$job"}[$__rate_interval])))', {"e_bucket"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
