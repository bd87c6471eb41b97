"""Property tests (Hypothesis) of the ledger's invariants over random event streams."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy
from schemas.parse import validate

POLICY = Policy.default_policy()
START = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.timezone.utc)
AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("900"), places=2)
PROPS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Stream:
    """Builds a plausible random stream of contract events for a few accounts."""

    def __init__(self, draw: Any, customers: list[str], currencies: list[str]) -> None:
        self.draw, self.customers, self.currencies = draw, customers, currencies
        self.events: list[dict[str, Any]] = []
        self.time = START
        self.docs: dict[str, dict[str, list[str]]] = {
            c: {"order": [], "invoice": [], "payment": [], "delivery": []} for c in customers
        }

    def add(self, type_: str, customer: str | None, **data: Any) -> None:
        self.time += dt.timedelta(hours=self.draw(st.integers(0, 72)))
        if customer is not None:
            data = {"customer_id": customer, **data}
        self.events.append({
            "specversion": "1.0", "id": f"e{len(self.events)}", "source": "erp/prop",
            "type": type_, "time": self.time.isoformat().replace("+00:00", "Z"),
            "data": data,
        })

    def money(self) -> str:
        return str(self.draw(AMOUNTS))

    def pick(self, customer: str, kind: str) -> str:
        known = self.docs[customer][kind]
        if known and self.draw(st.integers(0, 9)) > 0:
            return self.draw(st.sampled_from(known))
        return f"{kind[:3].upper()}-unknown-{self.draw(st.integers(0, 3))}"

    def new(self, customer: str, kind: str) -> str:
        doc_id = f"{kind[:3].upper()}{len(self.events)}"
        self.docs[customer][kind].append(doc_id)
        return doc_id

    def step(self) -> None:
        c = self.draw(st.sampled_from(self.customers))
        cur = self.draw(st.sampled_from(self.currencies))
        op = self.draw(st.sampled_from([
            "order", "order", "amend", "cancel", "close", "reopen", "delivery",
            "invoice", "invoice", "invoice_cancel", "credit_note", "payment", "payment",
            "allocate", "reverse", "tick", "fx", "profile", "dispute", "resolve",
            "release",
        ]))
        if op == "order":
            self.add("erp.order.placed", c, order_id=self.new(c, "order"),
                     amount=self.money(), currency=cur)
        elif op == "amend":
            self.add("erp.order.amended", c, order_id=self.pick(c, "order"),
                     amount=self.money())
        elif op in ("cancel", "close", "reopen"):
            kind = {"cancel": "cancelled", "close": "closed", "reopen": "reopened"}[op]
            self.add(f"erp.order.{kind}", c, order_id=self.pick(c, "order"))
        elif op == "delivery":
            ref = {"order_id": self.pick(c, "order")} if self.draw(st.booleans()) else {}
            self.add("erp.delivery.posted", c, delivery_id=self.new(c, "delivery"),
                     amount=self.money(), currency=cur, **ref)
        elif op == "invoice":
            ref: dict[str, str] = {}
            which = self.draw(st.integers(0, 2))
            if which == 1:
                ref["order_id"] = self.pick(c, "order")
            elif which == 2:
                ref["delivery_id"] = self.pick(c, "delivery")
            due = (self.time + dt.timedelta(days=self.draw(st.integers(-5, 40)))).date()
            self.add("erp.invoice.issued", c, invoice_id=self.new(c, "invoice"),
                     amount=self.money(), currency=cur, due_date=str(due), **ref)
        elif op == "invoice_cancel":
            self.add("erp.invoice.cancelled", c, invoice_id=self.pick(c, "invoice"))
        elif op == "credit_note":
            ref = {"invoice_id": self.pick(c, "invoice")} if self.draw(st.booleans()) else {}
            self.add("erp.credit_note.issued", c, credit_note_id=f"CN{len(self.events)}",
                     amount=self.money(), currency=cur, **ref)
        elif op == "payment":
            amount = self.draw(AMOUNTS)
            allocations = []
            if self.draw(st.booleans()):
                share = self.draw(st.decimals(min_value=Decimal("0"), max_value=amount,
                                              places=2))
                allocations = [{"invoice_id": self.pick(c, "invoice"), "amount": str(share)}]
            self.add("erp.payment.received", c, payment_id=self.new(c, "payment"),
                     amount=str(amount), currency=cur, allocations=allocations)
        elif op == "allocate":
            self.add("erp.payment.allocated", c, payment_id=self.pick(c, "payment"),
                     invoice_id=self.pick(c, "invoice"), amount=self.money())
        elif op == "reverse":
            self.add("erp.payment.reversed", c, payment_id=self.pick(c, "payment"))
        elif op == "tick":
            self.add("clock.tick", None)
        elif op == "fx" and len(self.currencies) > 1:
            rate = self.draw(st.decimals(min_value=Decimal("0.5"), max_value=Decimal("2"),
                                         places=4))
            self.add("fx.rate.set", None, currency="USD", quote_currency="EUR",
                     rate=str(rate))
        elif op == "profile":
            self.profile(c)
        elif op == "dispute":
            self.add("erp.invoice.disputed", c, invoice_id=self.pick(c, "invoice"))
        elif op == "resolve":
            self.add("erp.invoice.dispute_resolved", c, invoice_id=self.pick(c, "invoice"))
        elif op == "release":
            # Often of an order that is not blocked or not known: a rejection.
            self.add("credit.command.release_order", c, order_id=self.pick(c, "order"),
                     by="controller", reason="customer called")

    def profile(self, customer: str) -> None:
        self.add("erp.credit_profile.set", customer, currency="EUR",
                 credit_limit=str(self.draw(st.sampled_from([500, 1000, 3000]))),
                 risk_class=self.draw(st.sampled_from(["A", "B", "D", "auto"])),
                 blocked=self.draw(st.sampled_from([False, False, False, True])))


@st.composite
def streams(draw: Any, customers: int = 2, currencies: tuple[str, ...] = ("EUR",),
            size: int = 40) -> list[dict[str, Any]]:
    s = Stream(draw, [f"C{i}" for i in range(customers)], list(currencies))
    for c in s.customers:
        if draw(st.integers(0, 4)):
            s.profile(c)
    for _ in range(draw(st.integers(1, size))):
        s.step()
    return s.events


def run(events: list[dict[str, Any]], **engine_args: Any) -> tuple[list[dict], CreditEngine]:
    engine = CreditEngine(POLICY, **engine_args)
    out: list[dict] = []
    for e in events:
        out.extend(engine.process(e, {"test": True}))
    return out, engine


def positions(engine: CreditEngine) -> dict[str, Any]:
    return {k: a.assess(engine.ctx).position for k, a in engine.accounts.items()}


@PROPS
@given(streams(currencies=("EUR", "USD")))
def test_exposure_equals_the_sum_of_its_components(events: list[dict]) -> None:
    _, engine = run(events)

    for pos in positions(engine).values():
        assert pos.total == (pos.open_orders + pos.uninvoiced_deliveries
                             + pos.open_receivables - pos.unapplied_credit)
        assert pos.open_orders >= 0 and pos.uninvoiced_deliveries >= 0
        assert pos.open_receivables >= 0 and pos.unapplied_credit >= 0
        assert sum(pos.buckets.values()) == pos.overdue_amount <= pos.open_receivables


@PROPS
@given(streams(currencies=("EUR", "USD")), st.randoms(use_true_random=False))
def test_every_event_delivered_twice_changes_nothing(events: list[dict], rnd: Any) -> None:
    redelivered = []
    for e in events:
        redelivered.append(e)
        if rnd.random() < 0.5:
            redelivered.append(e)
    if events and rnd.random() < 0.5:
        redelivered.extend(events[: len(events) // 2])  # a late batch redelivered

    # Redeliveries within the idempotency window; `test_forgetting` covers the window itself.
    window = dt.timedelta(days=100000)
    once, engine_once = run(events, retention=window)
    twice, engine_twice = run(redelivered, retention=window)

    # Every event judged once, accepted or rejected; only records that are not events
    # at all (no account to remember them by) are rejected again on each delivery.
    def judged(outputs: list[dict]) -> list[dict]:
        return [o for o in outputs
                if o["type"] != "credit.event.rejected" or o["subject"] is not None]

    assert judged(twice) == judged(once)
    assert engine_twice.snapshots() == engine_once.snapshots()


@PROPS
@given(streams(customers=1, size=25), streams(customers=1, size=25),
       st.randoms(use_true_random=False))
def test_events_of_different_accounts_commute(a: list[dict], b: list[dict], rnd: Any) -> None:
    def own(events: list[dict], customer: str) -> list[dict]:
        kept = [e for e in events if e["type"] not in ("clock.tick", "fx.rate.set")]
        return [{**e, "id": f"{customer}-{e['id']}",
                 "data": {**e["data"], "customer_id": customer}} for e in kept]

    first, second = own(a, "X"), own(b, "Y")
    merged, i, j = [], 0, 0
    while i < len(first) or j < len(second):
        if j >= len(second) or (i < len(first) and rnd.random() < 0.5):
            merged.append(first[i]); i += 1
        else:
            merged.append(second[j]); j += 1

    apart, engine_apart = run(first + second)
    together, engine_together = run(merged)

    def by_account(outputs: list[dict]) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = {}
        for o in outputs:
            grouped.setdefault(o["subject"], []).append(o)
        return grouped

    assert by_account(together) == by_account(apart)
    assert engine_together.snapshots() == engine_apart.snapshots()


@PROPS
@given(st.lists(st.tuples(AMOUNTS, st.booleans()), min_size=1, max_size=12))
def test_exposure_is_zero_when_every_order_is_invoiced_and_paid(orders: list) -> None:
    events, t = [], START

    def add(type_: str, **data: Any) -> None:
        nonlocal t
        t += dt.timedelta(hours=1)
        events.append({"specversion": "1.0", "id": f"e{len(events)}", "source": "erp/prop",
                       "type": type_, "time": t.isoformat(),
                       "data": {"customer_id": "C1", **data}})

    add("erp.credit_profile.set", currency="EUR", credit_limit="100000", risk_class="B")
    for n, (amount, with_delivery) in enumerate(orders):
        add("erp.order.placed", order_id=f"SO{n}", amount=str(amount), currency="EUR")
        ref = {"order_id": f"SO{n}"}
        if with_delivery:
            add("erp.delivery.posted", delivery_id=f"DN{n}", amount=str(amount),
                currency="EUR", order_id=f"SO{n}")
            ref = {"delivery_id": f"DN{n}"}
        add("erp.invoice.issued", invoice_id=f"INV{n}", amount=str(amount), currency="EUR",
            due_date="2026-12-31", **ref)
    for n, (amount, _) in enumerate(orders):
        add("erp.payment.received", payment_id=f"P{n}", amount=str(amount), currency="EUR",
            allocations=[{"invoice_id": f"INV{n}", "amount": str(amount)}])

    _, engine = run(events)
    pos = positions(engine)["main/C1"]

    assert pos.total == 0
    assert (pos.open_orders, pos.open_receivables, pos.unapplied_credit) == (0, 0, 0)


LOWERING = {"erp.credit_note.issued", "erp.payment.received", "erp.payment.allocated",
            "erp.order.cancelled", "erp.order.closed", "erp.invoice.cancelled"}


@PROPS
@given(streams(customers=1, size=50))
def test_credit_notes_payments_and_cancellations_never_raise_exposure(events: list) -> None:
    engine = CreditEngine(POLICY)
    for e in events:
        account = engine.accounts.get("main/C0")
        before = account.assess(engine.ctx).position.total if account else Decimal(0)
        out = engine.process(e, {})
        if e["type"] not in LOWERING or account is None:
            continue
        released = sum((Decimal(o["data"]["amount"]) for o in out
                        if o["type"] == "credit.order.released"), Decimal(0))
        after = engine.accounts["main/C0"].assess(engine.ctx).position.total

        assert after - released <= before, e
        assert not [o for o in out if o["type"] == "credit.order.blocked"], e


def _referenced_ids(event: dict) -> set[str]:
    data = event["data"]
    ids = {data.get(k) for k in ("order_id", "invoice_id", "payment_id", "delivery_id")}
    ids |= {a["invoice_id"] for a in data.get("allocations", [])}
    return {i for i in ids if i}


def _doc_ids(engine: CreditEngine, key: str) -> set[str]:
    account = engine.accounts.get(key)
    if account is None:
        return set()
    return {*account.orders, *account.invoices, *account.payments, *account.deliveries,
            *account.credit_notes}


@PROPS
@given(streams(customers=3, currencies=("EUR", "USD"), size=60))
def test_forgetting_finished_documents_changes_no_decision(events: list[dict]) -> None:
    """Up to the first event that refers to a forgotten document, forgetting finished
    documents at once (retention 0) decides exactly as keeping everything."""
    keep_all = CreditEngine(POLICY, retention=dt.timedelta(days=100000))
    forget = CreditEngine(POLICY, retention=dt.timedelta(0))
    for e in events:
        key = f"main/{e['data'].get('customer_id')}"
        if _referenced_ids(e) & (_doc_ids(keep_all, key) - _doc_ids(forget, key)):
            break  # documented: a reference to a forgotten document is an unknown one
        out_all = keep_all.process(e, {})
        out_forget = forget.process(e, {})
        assert out_forget == out_all, e

    for a, b in zip(forget.snapshots(), keep_all.snapshots(), strict=True):
        for field in ("exposure", "overdue", "status", "reasons", "blocked_orders"):
            assert a["data"][field] == b["data"][field]


class EveryAccountOnEveryTick(CreditEngine):
    """A slow reference: re-assesses every account on every tick and rate."""

    def _wake_due(self, event: Any, done: set[str]) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.accounts):
            if key not in done:
                out.extend(self._settle(self.accounts[key], event))
        return out


@PROPS
@given(streams(customers=3, currencies=("EUR", "USD"), size=60))
def test_waking_only_due_accounts_matches_assessing_all(events: list[dict]) -> None:
    fast, engine_fast = run(events)
    slow_engine = EveryAccountOnEveryTick(POLICY)
    slow = [o for e in events for o in slow_engine.process(e, {"test": True})]

    assert fast == slow
    assert engine_fast.snapshots() == slow_engine.snapshots()


@PROPS
@given(streams(customers=2, currencies=("EUR", "USD"), size=30))
def test_every_generated_event_is_valid_and_outputs_are_deterministic(events: list) -> None:
    for e in events:
        validate(e)
    assert run(events)[0] == run(events)[0]


@PROPS
@given(streams(customers=2, currencies=("EUR", "USD"), size=50))
def test_an_account_restored_from_its_state_decides_the_same(events: list[dict]) -> None:
    import orjson

    from monitor.domain.state import account_from_state, account_to_state

    reference, engine_ref = run(events)
    engine = CreditEngine(POLICY)
    restored: list[dict] = []
    for e in events:
        restored.extend(engine.process(e, {"test": True}))
        # As after a restart: every account comes back from its JSON changelog value.
        revived = CreditEngine(POLICY)
        revived.ctx = engine.ctx
        revived.adopt(
            account_from_state(orjson.loads(orjson.dumps(account_to_state(a))))
            for a in engine.accounts.values()
        )
        engine = revived

    assert restored == reference
    assert engine.snapshots() == engine_ref.snapshots()


@PROPS
@given(streams(customers=3, currencies=("EUR", "USD"), size=40))
def test_every_account_has_a_snapshot_after_every_event(events: list[dict]) -> None:
    # Including accounts known only from rejected events, before any clock tick: their
    # snapshot says nothing is owed, with no time of their own.
    engine = CreditEngine(POLICY)
    for e in events:
        engine.process(e, {"test": True})
        for key in engine.accounts:
            snap = engine.snapshot_event(key)
            assert snap["data"]["exposure"]["total"] is not None
    for key, account in engine.accounts.items():
        if account.last_time is None:
            snap = engine.snapshot(key)
            assert snap is not None and snap["as_of"] is None
            assert snap["exposure"]["total"] == "0"
