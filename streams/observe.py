"""What the stream processor tells Prometheus: per record, and on a timer."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from monitor.domain.engine import CreditEngine, Outcome
from monitor.metrics import CreditMetrics

def _event_seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def record(metrics: CreditMetrics, outcome: Outcome, arrival: float | None) -> None:
    """Count one input record and what it produced."""
    kind = outcome.kind or "unknown"
    if outcome.duplicate is not None:
        metrics.input_processed(kind, "duplicate")
        return
    rejected = any(o["type"] == "credit.event.rejected" for o in outcome.outputs)
    metrics.input_processed(kind, "rejected" if rejected else "applied")
    now = time.time()
    for output in outcome.outputs:
        metrics.output_published(output)
        if output["type"] == "credit.event.rejected":
            continue
        since_event = _event_seconds(output.get("time"))
        metrics.decision_latency(
            since_arrival_seconds=max(0.0, now - arrival) if arrival else 0.0,
            since_event_seconds=None if since_event is None else now - since_event,
        )


async def account_figures(metrics: CreditMetrics, engines: list[CreditEngine]) -> None:
    """Accounts by status, exposure and overdue by currency, blocked orders.

    The loop yields every 2,000 accounts so that a worker with many accounts goes on
    deciding meanwhile.
    """
    by_status: Counter[str] = Counter({"OK": 0, "WARNING": 0, "HOLD": 0})
    exposure: dict[str, Decimal] = {}
    overdue: dict[str, Decimal] = {}
    blocked = 0
    seen = 0
    for engine in engines:
        for account in list(engine.accounts.values()):
            seen += 1
            if seen % 2000 == 0:
                await asyncio.sleep(0)
            by_status[account.status] += 1
            blocked += sum(1 for o in account.orders.values() if o.is_blocked)
            if account.currency is None:
                continue
            position = account.assess(engine.ctx).position
            cur = account.currency
            exposure[cur] = exposure.get(cur, Decimal(0)) + position.total
            overdue[cur] = overdue.get(cur, Decimal(0)) + position.overdue_amount
    metrics.set_account_figures(accounts_by_status=dict(by_status),
                                exposure_by_currency=exposure,
                                overdue_by_currency=overdue, blocked_orders=blocked)


async def consumer_lag(metrics: CreditMetrics, app: Any) -> None:
    """Records not yet consumed, per assigned partition."""
    lags: dict[tuple[str, int], int] = {}
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog"):
            continue
        try:
            highwater = consumer.highwater(tp)
            position = await consumer.position(tp)
        except Exception:  # noqa: BLE001 - a partition moving away mid-read
            continue
        if highwater is not None and position is not None:
            lags[(tp.topic, tp.partition)] = max(0, int(highwater) - int(position))
    metrics.set_consumer_lag(lags)


def partition_progress(app: Any, topic: str, expected: dict[int, int],
                       committed: dict[int, int]) -> dict[str, Any]:
    """Where each input partition of this worker stands, for `/health`: the next record
    it will apply, the committed offset, and what faust and its Kafka client think of it
    (fetch position, high watermark, paused or not). An on-call engineer reads a stuck
    partition off this; nothing here changes state."""
    consumer = app.consumer
    out: dict[str, Any] = {}
    try:
        client = consumer._thread._ensure_consumer()  # the aiokafka consumer
        assignment = client._subscription.subscription.assignment
    except Exception:  # noqa: BLE001 - not started, or rebalancing
        assignment = None
    paused = getattr(consumer, "_paused_partitions", set())
    active = getattr(consumer, "_active_partitions", None)
    buffered = getattr(consumer, "_buffered_partitions", set())
    for tp in sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition)):
        if tp.topic != topic:
            continue
        row: dict[str, Any] = {
            "next": expected.get(tp.partition),
            "committed": committed.get(tp.partition),
            "paused": tp in paused,
            "active": active is None or tp in active,
            "buffered": tp in buffered,
        }
        if assignment is not None:
            try:
                state = assignment.state_value(tp)
                row["fetch_position"] = state.position if state.has_valid_position else None
                row["highwater"] = state.highwater
                row["client_paused"] = state.paused
            except Exception:  # noqa: BLE001
                pass
        out[str(tp.partition)] = row
    return {"flow_active": getattr(consumer, "flow_active", None), "partitions": out}
