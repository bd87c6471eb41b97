"""The monitor's Prometheus metrics, all defined here, against an injected registry.

The streaming service owns one `CreditMetrics` and calls it; nothing else creates
metrics. Usage::

    metrics = CreditMetrics()  # a registry of its own; pass one to share it

    # per input event, once its outputs are handed to the producer
    metrics.input_processed("erp.order.placed", "applied")
    for output in outputs:
        metrics.output_published(output)
    metrics.decision_latency(since_arrival_seconds=0.004, since_event_seconds=1.2)

    # periodically (a timer), each call replacing the previous figures
    metrics.set_consumer_lag({("credit.events", 0): 12, ("credit.events", 1): 0})
    metrics.set_account_figures(
        accounts_by_status={"OK": 120, "WARNING": 7, "HOLD": 2},
        exposure_by_currency={"EUR": Decimal("150000.00")},
        overdue_by_currency={"EUR": Decimal("2300.00")},
        blocked_orders=3,
    )

    # once: the sink's stats are read at every scrape
    metrics.watch_audit(lambda: sink.stats)

    # the /metrics page; aiohttp refuses a charset in `content_type=`, so pass
    # the value as a header: web.bytes(body, headers={"Content-Type": ctype})
    body, ctype = metrics.render(request.headers.get("Accept"))

What is exposed (Prometheus adds `job` and `instance`):

| metric | type | labels |
| --- | --- | --- |
| credit_monitor_events_total | counter | type, outcome (applied, duplicate, rejected) |
| credit_monitor_decisions_total | counter | type (credit.order.*, credit.account.status_changed) |
| credit_monitor_decision_reasons_total | counter | type, reason (a reason code, or none) |
| credit_monitor_rejected_events_total | counter | |
| credit_monitor_decision_latency_seconds | histogram | since (event_time, arrival) |
| credit_monitor_consumer_lag_records | gauge | topic, partition |
| credit_monitor_accounts | gauge | status (OK, WARNING, HOLD) |
| credit_monitor_exposure | gauge | currency |
| credit_monitor_overdue | gauge | currency |
| credit_monitor_blocked_orders | gauge | |
| credit_monitor_audit_backlog_records | gauge | |
| credit_monitor_audit_connected | gauge | |
| credit_monitor_audit_batches_total | counter | |
| credit_monitor_audit_write_failures_total | counter | |
| credit_monitor_audit_rows_written_total | counter | table |

A decision with two reasons counts once in `decisions_total` and once per reason
in `decision_reasons_total`, so sums over `reason` count reasons, not decisions.
Amounts are per currency because adding EUR to USD means nothing. The accounts
by status appear only after the first `set_account_figures`: a restarted monitor
shows a gap rather than zero holds, which would look like a sudden rise in holds
once the real figures return. Counters of the known event and decision types
start at zero, so `rate()` and `increase()` see their first event.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from schemas.events import INPUT_TYPES, OutputEvent

__all__ = [
    "ACCOUNT_STATUSES",
    "LATENCY_BUCKETS_SECONDS",
    "AuditStats",
    "CreditMetrics",
    "Outcome",
]

log = logging.getLogger(__name__)

Outcome = Literal["applied", "duplicate", "rejected"]
_OUTCOMES: frozenset[str] = frozenset(typing.get_args(Outcome))

ACCOUNT_STATUSES = ("OK", "WARNING", "HOLD")

# From a millisecond (the service's own work) to a day: arrival latency should sit
# well under 0.1 s, the alerting target, which is a bucket boundary so the p99
# against it is exact. Event-time latency includes the ERP's delay and, during a
# replay, the age of the events, hence the hour and the day.
LATENCY_BUCKETS_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    3600.0,
    86400.0,
)

# Label values come from these sets, so a malformed record cannot create series.
_OUTPUT_TYPES: frozenset[str] = frozenset(
    cls.model_fields["type"].annotation.__args__[0]
    for cls in typing.get_args(typing.get_args(OutputEvent)[0])
)
_DECISION_TYPES = frozenset(
    {
        "credit.order.approved",
        "credit.order.blocked",
        "credit.order.released",
        "credit.account.status_changed",
        "credit.account.grade_changed",
        "credit.limit.review_suggested",
    }
)
_REJECTED_TYPE = "credit.event.rejected"
_UNKNOWN = "unknown"
_NO_REASON = "none"

_SAMPLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


class AuditStats(Protocol):
    """What `watch_audit` reads; `monitor.store.sink.SinkStats` has it."""

    @property
    def backlog(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def batches(self) -> int: ...
    @property
    def connected(self) -> bool: ...
    @property
    def rows_written(self) -> Mapping[Any, int]: ...


class CreditMetrics:
    """Every metric of the monitor, registered in one registry.

    Args:
        registry: where the metrics are registered; default a new one, so two
            instances (two tests) never share counts.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        self._events = Counter(
            "credit_monitor_events",
            "Input events processed, by event type and outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self._decisions = Counter(
            "credit_monitor_decisions",
            "Order decisions and account status changes published, by type.",
            ["type"],
            registry=r,
        )
        self._decision_reasons = Counter(
            "credit_monitor_decision_reasons",
            "Reason codes of published decisions, one per reason (none if it has none).",
            ["type", "reason"],
            registry=r,
        )
        self._rejected = Counter(
            "credit_monitor_rejected_events",
            "credit.event.rejected outputs published: input that could not be applied.",
            registry=r,
        )
        self._latency = Histogram(
            "credit_monitor_decision_latency_seconds",
            "Time from an input event to its outputs being published, measured from "
            "the event's business time or from its arrival in Kafka.",
            ["since"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self._lag = _GaugeSet(
            Gauge(
                "credit_monitor_consumer_lag_records",
                "Records on an input partition not yet processed by this instance.",
                ["topic", "partition"],
                registry=r,
            )
        )
        self._accounts = Gauge(
            "credit_monitor_accounts",
            "Accounts by credit status.",
            ["status"],
            registry=r,
        )
        self._exposure = _GaugeSet(
            Gauge(
                "credit_monitor_exposure",
                "Total exposure of all accounts, in each account currency.",
                ["currency"],
                registry=r,
            )
        )
        self._overdue = _GaugeSet(
            Gauge(
                "credit_monitor_overdue",
                "Total overdue receivables of all accounts, in each account currency.",
                ["currency"],
                registry=r,
            )
        )
        self._blocked_orders = Gauge(
            "credit_monitor_blocked_orders",
            "Orders currently blocked, waiting for release.",
            registry=r,
        )
        self._snapshot_failures = Counter(
            "credit_monitor_snapshot_failures",
            "Account snapshots that could not be made (a defect; the log names the "
            "account). The account keeps deciding; its snapshot is retried on the next "
            "event that changes it.",
            registry=r,
        )
        self._input_gaps = Counter(
            "credit_monitor_input_gaps",
            "Times records of an input partition reached the worker out of order (the "
            "Kafka client skipped some); each time the partition was read again from "
            "the first record missing, so nothing was lost. A steady rise points at the "
            "broker or the client.",
            registry=r,
        )
        self._input_lost = Counter(
            "credit_monitor_input_records_lost",
            "Input records deleted by the topic's retention before the worker applied "
            "them (it was stopped or behind for longer than the retention). Their "
            "events are lost; the log names the partition and offsets.",
            registry=r,
        )
        self._audit = _AuditCollector()
        r.register(self._audit)

        for event_type in (*sorted(INPUT_TYPES), _UNKNOWN):
            for outcome in sorted(_OUTCOMES):
                self._events.labels(type=event_type, outcome=outcome)
        for decision_type in sorted(_DECISION_TYPES):
            self._decisions.labels(type=decision_type)

    # ---- per input event ------------------------------------------------------------

    def input_processed(self, event_type: str, outcome: Outcome) -> None:
        """Count one input event; a type outside the contract counts as `unknown`."""
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {sorted(_OUTCOMES)}")
        label = event_type if event_type in INPUT_TYPES else _UNKNOWN
        self._events.labels(type=label, outcome=outcome).inc()

    def output_published(self, output: Mapping[str, Any]) -> None:
        """Count one output event (the envelope as a dict, as published).

        Decisions count by type and by each reason code in `data.reasons`;
        rejected events count in `rejected_events_total`; snapshots are not counted.
        """
        output_type = output.get("type")
        if output_type == _REJECTED_TYPE:
            self._rejected.inc()
            return
        if output_type not in _DECISION_TYPES:
            if output_type not in _OUTPUT_TYPES:
                log.warning("not counting output of unknown type %r", output_type)
            return

        self._decisions.labels(type=output_type).inc()
        for code in _reason_codes(output.get("data")) or [_NO_REASON]:
            self._decision_reasons.labels(type=output_type, reason=code).inc()

    def snapshot_failed(self) -> None:
        """Count one account snapshot that raised instead of being published."""
        self._snapshot_failures.inc()

    def input_gap(self) -> None:
        """Count one input partition sought back over records the client skipped."""
        self._input_gaps.inc()

    def input_lost(self, records: int) -> None:
        """Count input records the topic's retention deleted before they were applied."""
        self._input_lost.inc(records)

    def decision_latency(
        self, *, since_arrival_seconds: float, since_event_seconds: float | None
    ) -> None:
        """Observe how long one input event took until its outputs were published.

        Args:
            since_arrival_seconds: from the record's Kafka timestamp.
            since_event_seconds: from the event's business `time`; None when the
                event has none. A negative value (an ERP clock ahead of ours)
                counts as zero.
        """
        self._latency.labels(since="arrival").observe(max(since_arrival_seconds, 0.0))
        if since_event_seconds is not None:
            self._latency.labels(since="event_time").observe(
                max(since_event_seconds, 0.0)
            )

    # ---- periodic figures -----------------------------------------------------------

    def set_consumer_lag(self, lag_by_partition: Mapping[tuple[str, int], int]) -> None:
        """Set the lag of every partition this instance is assigned now.

        Keys are `(topic, partition)` (aiokafka's and faust's `TP` are such
        tuples). Partitions missing from the mapping (revoked) are dropped.
        """
        self._lag.replace(
            {
                (topic, str(partition)): max(lag, 0)
                for (topic, partition), lag in lag_by_partition.items()
            }
        )

    def set_account_figures(
        self,
        *,
        accounts_by_status: Mapping[str, int],
        exposure_by_currency: Mapping[str, Decimal | float],
        overdue_by_currency: Mapping[str, Decimal | float],
        blocked_orders: int,
    ) -> None:
        """Replace the figures over all accounts this instance holds.

        Every status is set (missing ones to zero); currencies missing from the
        mappings are dropped. Accounts without a currency are left out of the
        amounts by the caller.
        """
        if unknown := set(accounts_by_status) - set(ACCOUNT_STATUSES):
            raise ValueError(f"unknown account status {sorted(unknown)}")
        for status in ACCOUNT_STATUSES:
            self._accounts.labels(status=status).set(accounts_by_status.get(status, 0))

        self._exposure.replace(
            {(c,): float(v) for c, v in exposure_by_currency.items()}
        )
        self._overdue.replace({(c,): float(v) for c, v in overdue_by_currency.items()})
        self._blocked_orders.set(blocked_orders)

    def watch_audit(self, stats: Callable[[], AuditStats | None]) -> None:
        """Read the audit sink's stats at every scrape; None means no sink runs."""
        self._audit.source = stats

    # ---- exposition -----------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The /metrics page: body and Content-Type, OpenMetrics if `accept` asks."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def sample_names(self) -> frozenset[str]:
        """Every sample name the registry can expose, with or without samples yet.

        For checking that dashboards and alert rules name real metrics.
        """
        names: set[str] = set()
        for family in self.registry.collect():
            suffixes = _SAMPLE_SUFFIXES.get(family.type, ("",))
            names.update(family.name + suffix for suffix in suffixes)
        return frozenset(names)


class _AuditCollector(Collector):
    """The audit sink's counters, read from its stats when Prometheus scrapes."""

    def __init__(self) -> None:
        self.source: Callable[[], AuditStats | None] = lambda: None

    def collect(self) -> Iterable[Metric]:
        backlog = GaugeMetricFamily(
            "credit_monitor_audit_backlog_records",
            "Output records fetched by the audit sink but not yet written to "
            "PostgreSQL; stays above zero while writes fail.",
        )
        connected = GaugeMetricFamily(
            "credit_monitor_audit_connected",
            "1 if the audit sink's latest use of PostgreSQL succeeded (0 until the "
            "first write).",
        )
        batches = CounterMetricFamily(
            "credit_monitor_audit_batches",
            "Batches the audit sink wrote to PostgreSQL and committed in Kafka.",
        )
        failures = CounterMetricFamily(
            "credit_monitor_audit_write_failures",
            "Failed attempts to write a batch to PostgreSQL (each retry counts).",
        )
        rows = CounterMetricFamily(
            "credit_monitor_audit_rows_written",
            "Rows the audit sink added to each PostgreSQL table.",
            labels=["table"],
        )

        stats = self._read()
        if stats is not None:
            backlog.add_metric([], stats.backlog)
            connected.add_metric([], 1 if stats.connected else 0)
            batches.add_metric([], stats.batches)
            failures.add_metric([], stats.failures)
            for table, count in sorted(stats.rows_written.items()):
                rows.add_metric([str(table)], count)
        return [backlog, connected, batches, failures, rows]

    def _read(self) -> AuditStats | None:
        try:
            return self.source()
        except Exception as exc:  # noqa: BLE001 - any failure of the source
            # A broken source must not take the service's other metrics with it.
            log.warning("cannot read the audit sink's stats, leaving them out: %r", exc)
            return None


def _reason_codes(data: object) -> list[str]:
    if not isinstance(data, Mapping):
        return []
    reasons = data.get("reasons")
    if not isinstance(reasons, list):
        return []
    return [
        r["code"]
        for r in reasons
        if isinstance(r, Mapping) and isinstance(r.get("code"), str)
    ]


class _GaugeSet:
    """A labelled gauge whose whole set of series is replaced at each update."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._keys: set[tuple[str, ...]] = set()

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        for stale in self._keys - set(values):
            self._gauge.remove(*stale)
        for key, value in values.items():
            self._gauge.labels(*key).set(value)
        self._keys = set(values)
