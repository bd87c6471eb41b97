"""The worker's snapshot flush, without Kafka: what it hands to the producer.

The producer is replaced by a list here; this tests the flush's own logic (which
accounts, and what happens when one snapshot cannot be made), not Kafka.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy
from streams.app import CreditStreams, PartitionEngine

from .streamkit import make_settings


def _event(n: int, customer: str, type_: str, **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"e{n}", "source": "erp/test", "type": type_,
            "time": f"2026-01-01T0{n}:00:00Z",
            "data": {"company": "main", "customer_id": customer, **data}}


def test_a_snapshot_that_fails_is_counted_and_the_others_still_go_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    streams = CreditStreams(make_settings(tmp_path), Policy.default_policy())
    engine = CreditEngine(Policy.default_policy())
    for n, customer in enumerate(["C1", "C2", "C3"], start=1):
        engine.process(_event(n, customer, "erp.credit_profile.set", currency="EUR",
                              credit_limit="1000.00", risk_class="B"), {"test": True})
    pe = PartitionEngine(0, engine)
    pe.dirty.update(dict.fromkeys(["main/C1", "main/C2", "main/C3"]))
    streams.engines = {0: pe}

    real = engine.snapshot_event

    def snapshot_event(key: str) -> dict[str, Any]:
        if key == "main/C2":
            raise RuntimeError("a defect in making this snapshot")
        return real(key)

    monkeypatch.setattr(engine, "snapshot_event", snapshot_event)
    sent: list[tuple[bytes | None, dict[str, Any]]] = []

    async def send(topic: Any, key: bytes | None, value: bytes,
                   partition: int | None = None) -> None:
        sent.append((key, orjson.loads(value)))

    monkeypatch.setattr(streams, "_send", send)

    assert asyncio.run(streams.flush_snapshots()) == 2
    assert [k for k, _ in sent] == [b"main/C1", b"main/C3"]
    assert all(doc["type"] == "credit.account.snapshot" for _, doc in sent)
    assert pe.dirty == {}
    body, _ = streams.metrics.render(None)
    assert b"credit_monitor_snapshot_failures_total 1.0" in body


def test_account_figures_add_up_what_the_snapshots_show() -> None:
    # A blocked order counts in no exposure, though the gate weighed it.
    from monitor.metrics import CreditMetrics
    from streams import observe

    engines = [CreditEngine(Policy.default_policy()) for _ in range(2)]
    n = 0
    for e, customers in zip(engines, (["C1", "C2"], ["C3"])):
        for customer in customers:
            n += 1
            e.process(_event(n, customer, "erp.credit_profile.set", currency="EUR",
                             credit_limit="1000.00", risk_class="B"), {"test": True})
            n += 1
            e.process(_event(n, customer, "erp.order.placed", order_id=f"O{n}",
                             amount=f"{n}00.50", currency="EUR"), {"test": True})
    n += 1  # one blocked order: more than the limit
    engines[1].process(_event(n, "C3", "erp.order.placed", order_id="BIG",
                              amount="5000.00", currency="EUR"), {"test": True})
    metrics = CreditMetrics()
    asyncio.run(observe.account_figures(metrics, engines))
    body = metrics.render(None)[0].decode()
    want = sum(float(s["data"]["exposure"]["total"])
               for e in engines for s in e.snapshots())
    assert want == 200.50 + 400.50 + 600.50
    assert f'credit_monitor_exposure{{currency="EUR"}} {want}' in body
    assert "credit_monitor_blocked_orders 1.0" in body
    assert 'credit_monitor_accounts{status="OK"} 3.0' in body
