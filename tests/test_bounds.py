"""Absurd numbers are refused at the door and figures never fail to round: one bad
record must not stop an account's partition (it would be retried for ever)."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy, PolicyError


def _event(n: int, type_: str, customer: str | None = "C1", **data: Any) -> dict[str, Any]:
    if customer is not None:
        data = {"company": "main", "customer_id": customer, **data}
    return {"specversion": "1.0", "id": f"b-{n}", "source": "erp/test", "type": type_,
            "time": f"2026-03-01T09:{n % 60:02d}:00Z", "data": data}


def test_amounts_and_rates_beyond_the_bounds_are_rejected_with_the_field_named() -> None:
    engine = CreditEngine(Policy.default_policy())
    out = engine.process(_event(1, "erp.order.placed", order_id="O1",
                                amount="100000000000000000000000000", currency="EUR"), {})
    assert [o["type"] for o in out] == ["credit.event.rejected"]
    assert "data.amount" in out[0]["data"]["error"]
    out = engine.process(_event(2, "fx.rate.set", None, currency="USD",
                                quote_currency="EUR", rate="1e25"), {})
    assert [o["type"] for o in out] == ["credit.event.rejected"]
    assert "data.rate" in out[0]["data"]["error"]
    assert not engine.accounts  # nothing was applied


def test_the_largest_amounts_at_the_largest_rate_still_add_up_and_round() -> None:
    engine = CreditEngine(Policy.default_policy())
    engine.process(_event(0, "erp.credit_profile.set", currency="EUR",
                          credit_limit="0.01", risk_class="A"), {})
    engine.process(_event(1, "fx.rate.set", None, currency="USD", quote_currency="EUR",
                          rate="1000000000"), {})
    for n in range(2, 300):  # about 3 x 10^26 EUR: past the 28 digits of the context
        out = engine.process(_event(n, "erp.invoice.issued", invoice_id=f"I{n}",
                                    amount="999999999999999.99", currency="USD",
                                    due_date="2026-04-01"), {})
        assert all(o["type"] != "credit.event.rejected" for o in out), out
    snapshot = engine.snapshots()[0]["data"]
    assert snapshot["status"] == "HOLD"
    assert snapshot["exposure"]["total"].endswith(".00")
    assert len(snapshot["exposure"]["total"].split(".")[0]) >= 26


@pytest.mark.parametrize("table, complaint", [
    ("[score]\nlimit_multiplier_a = 1e30\n", "at most 100"),
    ("[score]\nlimit_round = 0\n", "above 0"),
    ("[score]\nreview_difference = 0\n", "above 0"),
])
def test_score_settings_beyond_reason_are_refused(table: str, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        Policy.from_toml(table)


@pytest.mark.parametrize("field, value", [
    ("time", "9999-12-31T23:00:00Z"),
    ("time", "0001-01-01T00:00:00Z"),
    ("time", "2200-01-01T00:00:00+01:00"),
    ("data.due_date", "9999-12-31"),
    ("data.due_date", "0001-01-01"),
])
def test_dates_off_the_calendar_are_rejected_with_the_field_named(field: str,
                                                                  value: str) -> None:
    engine = CreditEngine(Policy.default_policy())
    event = _event(1, "erp.invoice.issued", invoice_id="I1", amount="10.00",
                   currency="EUR", due_date="2026-04-01")
    if field == "time":
        event["time"] = value
    else:
        event["data"]["due_date"] = value
    out = engine.process(event, {})
    assert [o["type"] for o in out] == ["credit.event.rejected"]
    assert out[0]["data"]["error"].startswith(f"{field}: ")
    assert "outside the dates this monitor accepts" in out[0]["data"]["error"]
    assert not engine.accounts  # nothing was applied


@pytest.mark.parametrize("time", ["1900-01-01T00:00:00Z", "2199-12-31T23:59:59Z"])
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_the_first_and_last_accepted_days_decide_in_the_farthest_time_zones(
        time: str, zone: str) -> None:
    engine = CreditEngine(Policy.default_policy())
    events = [
        _event(0, "erp.credit_profile.set", currency="EUR", credit_limit="1000.00",
               risk_class="auto", timezone=zone),
        _event(1, "erp.invoice.issued", invoice_id="I1", amount="900.00", currency="EUR",
               due_date="1900-01-01"),
        _event(2, "erp.order.placed", order_id="O1", amount="50.00", currency="EUR"),
        _event(3, "clock.tick", None),
        _event(4, "erp.payment.received", payment_id="P1", amount="900.00",
               currency="EUR", allocations=[{"invoice_id": "I1", "amount": "900.00"}]),
    ]
    for e in events:
        e["time"] = time
        out = engine.process(e, {})
        assert all(o["type"] != "credit.event.rejected" for o in out), out
    snapshot = engine.snapshots()[0]["data"]
    assert snapshot["exposure"]["open_receivables"] == "0.00"
    assert snapshot["score"]["grade"] in {"A", "B", "C", "D"}
