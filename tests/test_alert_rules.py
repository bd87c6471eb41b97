"""Prometheus alert rules and Alertmanager routing, checked with the real tools.

* `promtool check rules` / `check config`: the rules and the scrape config load.
* `promtool test rules deploy/prometheus/rules_test.yml`: each alert fires when it
  should and stays quiet on a near miss.
* Every rule names only metrics `CreditMetrics` defines (or `up`), and has the
  labels Alertmanager routes on.
* `amtool check-config` and `amtool config routes test`: each alert reaches the
  intended receiver.

promtool and amtool are installed by `bash deploy/tools.sh`; without them these
tests fail, saying so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.metrics import CreditMetrics
from tests.promql import SCRAPE_METRICS, metric_names, require_tool

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULES_TEST = PROMETHEUS / "rules_test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

ALERTS = {
    "CreditMonitorDown",
    "ConsumerLagGrowing",
    "DecisionLatencyHigh",
    "RejectedEventsSpike",
    "HoldsRisingFast",
    "AuditBacklog",
    "SnapshotFailures",
    "InputGapsRepeated",
    "InputRecordsLost",
}


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# ---- promtool ------------------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    result = _run(require_tool("promtool"), "check", "rules", str(RULES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_accepts_the_prometheus_config_with_its_rules() -> None:
    result = _run(
        require_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml")
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = _run(require_tool("promtool"), "test", "rules", str(RULES_TEST))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]

    fired = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert fired == ALERTS
    assert quiet == ALERTS


# ---- the rules themselves ------------------------------------------------------------


def test_rules_are_the_alerts_on_call_expects() -> None:
    assert {rule["alert"] for rule in _rules()} == ALERTS


def test_rules_name_only_metrics_the_monitor_defines() -> None:
    defined = CreditMetrics().sample_names() | SCRAPE_METRICS

    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric in {rule['expr']!r}"
        assert names <= defined, f"{rule['alert']}: unknown {sorted(names - defined)}"


def test_rules_carry_routing_labels_and_text_for_people() -> None:
    for rule in _rules():
        labels = rule["labels"]
        assert labels["severity"] in {"page", "warning", "info"}, rule["alert"]
        assert labels["team"] in {"on-call", "credit-control"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


# ---- Alertmanager --------------------------------------------------------------------


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = _run(require_tool("amtool"), "check-config", str(ALERTMANAGER))

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "receiver"),
    [
        ("CreditMonitorDown", "on-call-pager"),
        ("ConsumerLagGrowing", "on-call-pager"),
        ("AuditBacklog", "on-call-pager"),
        ("DecisionLatencyHigh", "on-call-slack"),
        ("RejectedEventsSpike", "on-call-slack"),
        ("SnapshotFailures", "on-call-slack"),
        ("InputGapsRepeated", "on-call-slack"),
        ("InputRecordsLost", "on-call-pager"),
        ("HoldsRisingFast", "credit-control"),
    ],
)
def test_each_alert_reaches_its_receiver(alert: str, receiver: str) -> None:
    (rule,) = [r for r in _rules() if r["alert"] == alert]
    labels = [f"{k}={v}" for k, v in {"alertname": alert, **rule["labels"]}.items()]

    result = _run(
        require_tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        f"--verify.receivers={receiver}",
        *labels,
    )

    assert result.returncode == 0, (
        f"{alert} goes to {result.stdout.strip()!r}, not {receiver}: {result.stderr}"
    )


def test_compose_runs_prometheus_with_the_rules_and_an_alertmanager() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prometheus = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())

    assert prometheus["rule_files"] == ["rules.yml"]
    assert (
        "./deploy/prometheus/rules.yml:/etc/prometheus/rules.yml:ro"
        in (compose["prometheus"]["volumes"])
    )
    (targets,) = prometheus["alerting"]["alertmanagers"][0]["static_configs"]
    assert targets["targets"] == ["alertmanager:9093"]
    assert (
        "./deploy/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in compose["alertmanager"]["volumes"]
    )
