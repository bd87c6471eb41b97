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
