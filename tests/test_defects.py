"""An account event that the domain code fails on (a defect, not bad input) is rejected
with the error, its account goes back to where it was before it, and everything after it
is decided as if it had never come: one such event must not stop a partition."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.domain import account as account_module
from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy
from monitor.domain.state import account_to_state


def _event(n: int, type_: str, customer: str = "C1", **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"d-{n}", "source": "erp/test", "type": type_,
            "time": f"2026-03-{1 + n // 24:02d}T{n % 24:02d}:00:00Z",
            "data": {"company": "main", "customer_id": customer, **data}}


BEFORE = [
    _event(0, "erp.credit_profile.set", currency="EUR", credit_limit="1000.00",
           risk_class="B"),
    _event(1, "erp.order.placed", order_id="O1", amount="400.00", currency="EUR"),
    _event(2, "erp.invoice.issued", invoice_id="I1", amount="300.00", currency="EUR",
           due_date="2026-04-01"),
]
POISON = _event(3, "erp.order.placed", order_id="BOOM", amount="100.00", currency="EUR")
AFTER = [
    _event(4, "erp.order.placed", order_id="O2", amount="500.00", currency="EUR"),
    _event(5, "erp.payment.received", payment_id="P1", amount="300.00", currency="EUR",
           allocations=[{"invoice_id": "I1", "amount": "300.00"}]),
    _event(6, "erp.order.placed", order_id="O3", amount="450.00", currency="EUR"),
]


@pytest.fixture
def defect_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """The order handler fails on order BOOM after it has half recorded the order."""
    real = account_module._HANDLERS["erp.order.placed"]

    def failing(account: Any, event: Any, ctx: Any, gate: Any) -> None:
        real(account, event, ctx, gate)
        if event.data.order_id == "BOOM":
            raise ZeroDivisionError("a defect")

    monkeypatch.setitem(account_module._HANDLERS, "erp.order.placed", failing)


def _run(engine: CreditEngine, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in events:
        out.extend(engine.process(e, {"test": True}))
    return out


@pytest.mark.usefixtures("defect_on_boom")
def test_a_failing_event_is_rejected_and_undone_and_the_rest_decides_as_without_it(
) -> None:
    clean = CreditEngine(Policy.default_policy())
    want = _run(clean, BEFORE + AFTER)

    engine = CreditEngine(Policy.default_policy())
    _run(engine, BEFORE)
    before = account_to_state(engine.accounts["main/C1"])
    outcome = engine.process_outcome(POISON, {"test": True})
    assert [o["type"] for o in outcome.outputs] == ["credit.event.rejected"]
    error = outcome.outputs[0]["data"]["error"]
    assert error.startswith("internal error while applying this event (ZeroDivisionError")
    assert outcome.failure is not None and "ZeroDivisionError" in outcome.failure
    after_poison = account_to_state(engine.accounts["main/C1"])
    assert set(engine.accounts["main/C1"].orders) == {"O1"}  # BOOM is not counted
    assert after_poison["orders"] == before["orders"]
    assert after_poison == before | {"seen": after_poison["seen"]}

    got = _run(engine, AFTER)
    # The same decisions with the same ids as if BOOM had never come.
    assert got == want[len(_run(CreditEngine(Policy.default_policy()), BEFORE)):]
    assert engine.snapshots()[0]["data"]["exposure"] == clean.snapshots()[0]["data"]["exposure"]

    # Delivered again, it is a duplicate like any judged event: nothing comes out.
    assert engine.process(POISON, {"test": True}) == []


@pytest.mark.usefixtures("defect_on_boom")
def test_a_failing_first_event_leaves_an_empty_account() -> None:
    engine = CreditEngine(Policy.default_policy())
    out = engine.process(_event(0, "erp.order.placed", customer="C9", order_id="BOOM",
                                amount="10.00", currency="EUR"), {"test": True})
    assert [o["type"] for o in out] == ["credit.event.rejected"]
    snapshot = engine.snapshot("main/C9")
    assert snapshot is not None
    assert snapshot["exposure"]["total"] == "0" and snapshot["documents"]["orders"] == []


@pytest.mark.usefixtures("defect_on_boom")
def test_the_saved_state_the_engine_is_given_is_what_it_goes_back_to() -> None:
    # The streaming service hands the engine its changelog table's copy.
    table: dict[str, dict[str, Any]] = {}
    engine = CreditEngine(Policy.default_policy(), saved_state=table.get)
    for e in BEFORE:
        outcome = engine.process_outcome(e, {"test": True})
        for key in outcome.changed:
            table[key] = account_to_state(engine.accounts[key])
    engine.process(POISON, {"test": True})
    assert set(engine.accounts["main/C1"].orders) == {"O1"}
    assert engine._images is None  # it keeps no copies of its own


def test_a_tick_that_fails_for_one_account_still_moves_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CreditEngine(Policy.default_policy())
    for n, customer in enumerate(["C1", "C2"]):
        _run(engine, [
            _event(10 * n, "erp.credit_profile.set", customer, currency="EUR",
                   credit_limit="1000.00", risk_class="B"),
            _event(10 * n + 1, "erp.invoice.issued", customer, invoice_id="I1",
                   amount="500.00", currency="EUR", due_date="2026-03-02"),
        ])
    before = account_to_state(engine.accounts["main/C2"])
    real = account_module.Account.settle

    def settle(self: Any, ctx: Any) -> Any:
        if self.customer_id == "C2":
            self.status = "HALF-DONE"  # changed, then the defect
            raise KeyError("a defect")
        return real(self, ctx)

    monkeypatch.setattr(account_module.Account, "settle", settle)
    tick = {"specversion": "1.0", "id": "t1", "source": "erp/test", "type": "clock.tick",
            "time": "2026-05-01T00:00:00Z", "data": {}}
    outcome = engine.process_outcome(tick, {"test": True})

    assert outcome.failure is not None and "KeyError" in outcome.failure
    moved = [o for o in outcome.outputs if o["type"] == "credit.account.status_changed"]
    assert [(o["subject"], o["data"]["status"]) for o in moved] == [("main/C1", "HOLD")]
    assert account_to_state(engine.accounts["main/C2"]) == before
