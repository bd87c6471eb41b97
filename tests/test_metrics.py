"""CreditMetrics: what each call adds to a fresh registry, read back as samples."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from monitor.metrics import LATENCY_BUCKETS_SECONDS, CreditMetrics
from monitor.store.sink import SinkStats


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> CreditMetrics:
    return CreditMetrics(registry)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def output(type_: str, *codes: str, **data: Any) -> dict[str, Any]:
    reasons = [{"code": c, "detail": "", "values": {}} for c in codes]
    return {"type": type_, "id": "x", "data": {"reasons": reasons, **data}}


# ---- input events --------------------------------------------------------------------


def test_input_events_count_by_type_and_outcome(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.input_processed("erp.order.placed", "applied")
    metrics.input_processed("erp.order.placed", "applied")
    metrics.input_processed("erp.order.placed", "duplicate")
    metrics.input_processed("erp.payment.received", "rejected")

    name = "credit_monitor_events_total"
    assert sample(registry, name, type="erp.order.placed", outcome="applied") == 2
    assert sample(registry, name, type="erp.order.placed", outcome="duplicate") == 1
    assert sample(registry, name, type="erp.payment.received", outcome="rejected") == 1
    assert sample(registry, name, type="erp.payment.received", outcome="applied") == 0


def test_event_type_outside_the_contract_counts_as_unknown(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.input_processed("erp.something.odd", "rejected")
    metrics.input_processed("", "rejected")

    name = "credit_monitor_events_total"
    assert sample(registry, name, type="unknown", outcome="rejected") == 2
    assert sample(registry, name, type="erp.something.odd", outcome="rejected") is None


def test_outcome_outside_the_three_is_refused(metrics: CreditMetrics) -> None:
    with pytest.raises(ValueError, match="outcome 'skipped'"):
        metrics.input_processed("erp.order.placed", "skipped")  # type: ignore[arg-type]


def test_known_types_start_at_zero_so_the_first_event_shows_in_rate(
    registry: CollectorRegistry,
) -> None:
    CreditMetrics(registry)

    assert (
        sample(
            registry,
            "credit_monitor_events_total",
            type="clock.tick",
            outcome="applied",
        )
        == 0
    )
    assert (
        sample(registry, "credit_monitor_decisions_total", type="credit.order.blocked")
        == 0
    )
    assert sample(registry, "credit_monitor_rejected_events_total") == 0


# ---- outputs -------------------------------------------------------------------------


def test_blocked_order_counts_once_and_once_per_reason(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    blocked = "credit.order.blocked"
    metrics.output_published(output(blocked, "LIMIT_EXCEEDED"))
    metrics.output_published(output(blocked, "ACCOUNT_ON_HOLD", "LIMIT_EXCEEDED"))

    assert sample(registry, "credit_monitor_decisions_total", type=blocked) == 2
    reasons = "credit_monitor_decision_reasons_total"
    assert sample(registry, reasons, type=blocked, reason="LIMIT_EXCEEDED") == 2
    assert sample(registry, reasons, type=blocked, reason="ACCOUNT_ON_HOLD") == 1


def test_decision_without_reasons_counts_reason_none(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.output_published(output("credit.order.approved"))
    metrics.output_published(
        output("credit.account.status_changed", status="OK", previous_status="HOLD")
    )
    metrics.output_published(
        {"type": "credit.order.released", "data": {"by": "auto", "reason": "free text"}}
    )

    reasons = "credit_monitor_decision_reasons_total"
    for type_ in (
        "credit.order.approved",
        "credit.account.status_changed",
        "credit.order.released",
    ):
        assert sample(registry, "credit_monitor_decisions_total", type=type_) == 1
        assert sample(registry, reasons, type=type_, reason="none") == 1
    # A release's reason is a person's free text: never a label value.
    assert (
        sample(registry, reasons, type="credit.order.released", reason="free text")
        is None
    )


def test_rejected_output_counts_as_rejected_event_not_decision(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.output_published(
        {"type": "credit.event.rejected", "data": {"error": "bad", "event": "{"}}
    )
    metrics.output_published({"type": "credit.event.rejected", "data": {}})

    assert sample(registry, "credit_monitor_rejected_events_total") == 2
    decisions = [
        s
        for family in registry.collect()
        if family.name == "credit_monitor_decisions"
        for s in family.samples
        if s.name.endswith("_total") and s.value
    ]
    assert decisions == []


def test_snapshot_and_unknown_outputs_are_not_counted(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.output_published(output("credit.account.snapshot", "OVERDUE"))
    metrics.output_published(output("credit.something.else", "OVERDUE"))
    metrics.output_published({"data": None})

    body, _ = metrics.render()
    assert b"credit.account.snapshot" not in body
    assert b"credit.something.else" not in body
    assert b'reason="OVERDUE"' not in body


# ---- latency -------------------------------------------------------------------------


def test_latency_lands_in_the_buckets_of_its_origin(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.decision_latency(since_arrival_seconds=0.003, since_event_seconds=7200.0)

    bucket = "credit_monitor_decision_latency_seconds_bucket"
    assert sample(registry, bucket, since="arrival", le="0.0025") == 0
    assert sample(registry, bucket, since="arrival", le="0.005") == 1
    assert sample(registry, bucket, since="event_time", le="3600.0") == 0
    assert sample(registry, bucket, since="event_time", le="86400.0") == 1
    assert sample(
        registry, "credit_monitor_decision_latency_seconds_sum", since="event_time"
    ) == pytest.approx(7200.0)
    assert (
        sample(
            registry, "credit_monitor_decision_latency_seconds_count", since="arrival"
        )
        == 1
    )


def test_latency_without_event_time_observes_arrival_only(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.decision_latency(since_arrival_seconds=0.02, since_event_seconds=None)

    count = "credit_monitor_decision_latency_seconds_count"
    assert sample(registry, count, since="arrival") == 1
    assert sample(registry, count, since="event_time") is None


def test_event_time_ahead_of_our_clock_counts_as_zero_latency(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.decision_latency(since_arrival_seconds=-0.5, since_event_seconds=-30.0)

    bucket = "credit_monitor_decision_latency_seconds_bucket"
    assert sample(registry, bucket, since="event_time", le="0.001") == 1
    assert (
        sample(registry, "credit_monitor_decision_latency_seconds_sum", since="arrival")
        == 0
    )


def test_latency_buckets_cover_the_alert_target_and_replays() -> None:
    assert 0.1 in LATENCY_BUCKETS_SECONDS  # DecisionLatencyHigh's p99 target
    assert LATENCY_BUCKETS_SECONDS[0] <= 0.001
    assert LATENCY_BUCKETS_SECONDS[-1] >= 86400
    assert list(LATENCY_BUCKETS_SECONDS) == sorted(set(LATENCY_BUCKETS_SECONDS))


# ---- periodic figures ----------------------------------------------------------------


def test_consumer_lag_is_per_partition_and_drops_revoked_ones(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    lag = "credit_monitor_consumer_lag_records"
    metrics.set_consumer_lag({("credit.events", 0): 12, ("credit.events", 1): 3})
    assert sample(registry, lag, topic="credit.events", partition="0") == 12
    assert sample(registry, lag, topic="credit.events", partition="1") == 3

    metrics.set_consumer_lag({("credit.events", 1): 0})

    assert sample(registry, lag, topic="credit.events", partition="0") is None
    assert sample(registry, lag, topic="credit.events", partition="1") == 0


def test_account_figures_set_every_status_and_drop_a_vanished_currency(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    metrics.set_account_figures(
        accounts_by_status={"OK": 10, "HOLD": 2},
        exposure_by_currency={"EUR": Decimal("1500.50"), "USD": Decimal(20)},
        overdue_by_currency={"EUR": Decimal("300.25")},
        blocked_orders=3,
    )
    assert sample(registry, "credit_monitor_accounts", status="OK") == 10
    assert sample(registry, "credit_monitor_accounts", status="WARNING") == 0
    assert sample(registry, "credit_monitor_accounts", status="HOLD") == 2
    assert sample(registry, "credit_monitor_exposure", currency="EUR") == 1500.5
    assert sample(registry, "credit_monitor_exposure", currency="USD") == 20
    assert sample(registry, "credit_monitor_overdue", currency="EUR") == 300.25
    assert sample(registry, "credit_monitor_blocked_orders") == 3

    metrics.set_account_figures(
        accounts_by_status={"OK": 11, "WARNING": 1, "HOLD": 0},
        exposure_by_currency={"EUR": 900.0},
        overdue_by_currency={},
        blocked_orders=0,
    )
    assert sample(registry, "credit_monitor_accounts", status="HOLD") == 0
    assert sample(registry, "credit_monitor_exposure", currency="EUR") == 900
    assert sample(registry, "credit_monitor_exposure", currency="USD") is None
    assert sample(registry, "credit_monitor_overdue", currency="EUR") is None
    assert sample(registry, "credit_monitor_blocked_orders") == 0


def test_accounts_by_status_are_absent_until_the_first_figures(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    # Zero holds before the first figures would look like a rise once they came.
    assert sample(registry, "credit_monitor_accounts", status="HOLD") is None


def test_unknown_account_status_is_refused(metrics: CreditMetrics) -> None:
    with pytest.raises(ValueError, match="BLOCKED"):
        metrics.set_account_figures(
            accounts_by_status={"BLOCKED": 1},
            exposure_by_currency={},
            overdue_by_currency={},
            blocked_orders=0,
        )


# ---- audit sink ----------------------------------------------------------------------


def test_audit_figures_are_read_from_the_sink_stats_at_each_scrape(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    stats = SinkStats()
    metrics.watch_audit(lambda: stats)
    assert sample(registry, "credit_monitor_audit_connected") == 0
    assert sample(registry, "credit_monitor_audit_backlog_records") == 0

    stats.backlog = 250
    stats.failures = 4
    assert sample(registry, "credit_monitor_audit_backlog_records") == 250
    assert sample(registry, "credit_monitor_audit_write_failures_total") == 4

    stats.backlog = 0
    stats.connected = True
    stats.batches = 7
    stats.rows_written["audit_log"] = 30
    stats.rows_written["account_snapshots"] = 12
    assert sample(registry, "credit_monitor_audit_backlog_records") == 0
    assert sample(registry, "credit_monitor_audit_connected") == 1
    assert sample(registry, "credit_monitor_audit_batches_total") == 7
    rows = "credit_monitor_audit_rows_written_total"
    assert sample(registry, rows, table="audit_log") == 30
    assert sample(registry, rows, table="account_snapshots") == 12
    assert sample(registry, rows, table="rejected_events") == 0


def test_without_a_sink_no_audit_samples_are_exposed(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    assert sample(registry, "credit_monitor_audit_backlog_records") is None
    metrics.watch_audit(lambda: None)
    assert sample(registry, "credit_monitor_audit_connected") is None


def test_failing_audit_source_leaves_the_other_metrics_scrapable(
    metrics: CreditMetrics, registry: CollectorRegistry
) -> None:
    def broken() -> SinkStats:
        raise RuntimeError("sink gone")

    metrics.watch_audit(broken)
    metrics.input_processed("erp.order.placed", "applied")

    body, _ = metrics.render()
    assert (
        b'credit_monitor_events_total{outcome="applied",type="erp.order.placed"} 1.0'
        in body
    )
    assert b"\ncredit_monitor_audit_backlog_records " not in body


# ---- exposition ----------------------------------------------------------------------


def test_render_gives_prometheus_text_by_default(metrics: CreditMetrics) -> None:
    metrics.set_consumer_lag({("credit.events", 2): 40})

    body, content_type = metrics.render()

    assert content_type.startswith("text/plain")
    families = {f.name: f for f in parse_text(body.decode())}
    (lag,) = families["credit_monitor_consumer_lag_records"].samples
    assert lag.labels == {"topic": "credit.events", "partition": "2"}
    assert lag.value == 40


def test_render_gives_openmetrics_when_the_scraper_asks(metrics: CreditMetrics) -> None:
    metrics.output_published(output("credit.order.blocked", "FX_RATE_MISSING"))

    body, content_type = metrics.render(
        "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
    )

    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(body.decode())}
    totals = [
        s
        for s in families["credit_monitor_decision_reasons"].samples
        if s.name == "credit_monitor_decision_reasons_total"
    ]
    assert [(s.labels["reason"], s.value) for s in totals] == [("FX_RATE_MISSING", 1)]


def test_two_instances_never_share_counts() -> None:
    first, second = CreditMetrics(), CreditMetrics()
    first.input_processed("erp.order.placed", "applied")

    labels = {"type": "erp.order.placed", "outcome": "applied"}
    assert first.registry.get_sample_value("credit_monitor_events_total", labels) == 1
    assert second.registry.get_sample_value("credit_monitor_events_total", labels) == 0


def test_sample_names_list_every_exposable_series_name(metrics: CreditMetrics) -> None:
    names = metrics.sample_names()

    assert {
        "credit_monitor_events_total",
        "credit_monitor_decision_latency_seconds_bucket",
        "credit_monitor_decision_latency_seconds_count",
        "credit_monitor_accounts",
        "credit_monitor_audit_write_failures_total",
        "credit_monitor_audit_backlog_records",
    } <= names
    assert "credit_monitor_events" not in names
    assert all(name.startswith("credit_monitor_") for name in names)
