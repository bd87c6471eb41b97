"""Memory grows with open documents, not with history: what is finished is forgotten
after the retention window of event time, and redeliveries within it stay harmless
(README, "Forgetting")."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any

import orjson

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy
from monitor.domain.state import account_to_state

from .streamkit import ROOT

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
ACCOUNT = "main/C1"


def _event(n: int, time: dt.datetime, type_: str, **data: Any) -> dict[str, Any]:
    if type_ != "clock.tick":
        data = {"company": "main", "customer_id": "C1", **data}
    return {"specversion": "1.0", "id": f"e{n}", "source": "erp/test", "type": type_,
            "time": time.isoformat().replace("+00:00", "Z"), "data": data}


def _profile() -> dict[str, Any]:
    return _event(0, T0, "erp.credit_profile.set", currency="EUR", credit_limit="100000",
                  risk_class="B", blocked=False)


def _sale(day: int, n: int) -> list[dict[str, Any]]:
    """An order, its invoice and a payment that settles it, all on one day."""
    t = T0 + dt.timedelta(days=day, hours=1)
    due = (t + dt.timedelta(days=30)).date().isoformat()
    return [
        _event(n, t, "erp.order.placed", order_id=f"O{day}", amount="100.00",
               currency="EUR"),
        _event(n + 1, t + dt.timedelta(minutes=1), "erp.invoice.issued",
               invoice_id=f"I{day}", order_id=f"O{day}", amount="100.00", currency="EUR",
               due_date=due),
        _event(n + 2, t + dt.timedelta(minutes=2), "erp.payment.received",
               payment_id=f"P{day}", amount="100.00", currency="EUR",
               allocations=[{"invoice_id": f"I{day}", "amount": "100.00"}]),
    ]


def _tick(day: int, n: int) -> dict[str, Any]:
    return _event(n, T0 + dt.timedelta(days=day), "clock.tick")


def _run(events: list[dict[str, Any]], days: int) -> tuple[CreditEngine, list[dict]]:
    engine = CreditEngine(Policy.default_policy(), retention=dt.timedelta(days=days))
    out = [o for i, e in enumerate(events) for o in engine.process(orjson.dumps(e), {}, i)]
    return engine, out


def _history(days: int) -> list[dict[str, Any]]:
    events = [_profile()]
    for day in range(days):
        events.extend(_sale(day, len(events)))
        events.append(_tick(day + 1, len(events)))
    return events


def test_two_hundred_settled_sales_leave_only_the_last_weeks_documents() -> None:
    events = _history(200)

    forgetting, out_forgetting = _run(events, days=7)
    keeping, out_keeping = _run(events, days=100_000)

    kept = forgetting.accounts[ACCOUNT]
    everything = keeping.accounts[ACCOUNT]
    assert len(everything.invoices) == len(everything.orders) == 200
    # Finished groups of the last 7 days (and the day being pruned) only.
    assert len(kept.orders) <= 9 and len(kept.invoices) <= 9 and len(kept.payments) <= 9
    assert len(kept.seen) <= 4 * 9 and len(everything.seen) > 600
    # Forgetting changes no decision and no figure.
    assert out_forgetting == out_keeping
    for field in ("exposure", "overdue", "status", "reasons"):
        assert forgetting.snapshot(ACCOUNT)[field] == keeping.snapshot(ACCOUNT)[field]


def _redelivered_after(days: int) -> list[dict[str, Any]]:
    """One settled sale, daily ticks, another order the day before, and the sale's
    payment delivered again `days` later. (An account forgets at its own events: the
    order is what makes it look back.)"""
    events = [_profile(), *_sale(0, 1)]
    for day in range(1, days + 1):
        events.append(_tick(day, len(events)))
    events.append(_event(len(events), T0 + dt.timedelta(days=days - 1, hours=3),
                         "erp.order.placed", order_id="LATER", amount="10.00",
                         currency="EUR"))
    again = dict(events[3])
    again["time"] = (T0 + dt.timedelta(days=days, hours=2)).isoformat().replace("+00:00", "Z")
    events.append(again)
    return events


def test_a_redelivery_within_the_window_changes_nothing() -> None:
    events = _redelivered_after(5)
    engine, _ = _run(events[:-1], days=7)
    before = account_to_state(engine.accounts[ACCOUNT])

    out = engine.process(orjson.dumps(events[-1]), {}, len(events))

    assert out == []
    after = account_to_state(engine.accounts[ACCOUNT])
    assert after == before
    assert engine.snapshot(ACCOUNT)["exposure"]["total"] == "10.00"


def test_a_redelivery_older_than_the_window_is_a_new_payment() -> None:
    """Documented: the group was forgotten, so the payment is new money, kept as
    unapplied credit with its allocation to an invoice no longer known."""
    engine, _ = _run(_redelivered_after(10), days=7)
    assert engine.snapshot(ACCOUNT)["exposure"]["unapplied_credit"] == "100.00"

    longer, _ = _run(_redelivered_after(10), days=30)
    assert longer.snapshot(ACCOUNT)["exposure"]["unapplied_credit"] == "0.00"


def test_the_evaluator_takes_the_window_from_the_command_line(tmp_path: Any) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _redelivered_after(10)))

    def unapplied(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "evaluate", str(path), "--snapshots", *args],
            capture_output=True, check=True, cwd=ROOT,
        )
        last = orjson.loads(result.stdout.splitlines()[-1])
        return last["data"]["exposure"]["unapplied_credit"]  # type: ignore[no-any-return]

    assert unapplied() == "100.00"  # the default window, 7 days
    assert unapplied("--retention-days", "30") == "0.00"
