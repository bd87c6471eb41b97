"""A seeded stream of contract events over many accounts, for differential, crash and
benchmark runs. Every kind of input event appears, with references to unknown
documents, out-of-order allocations, reversals, FX rates, daily ticks and bad records."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def generate(n_events: int, n_accounts: int, seed: int = 7,
             bad_every: int = 500) -> list[dict[str, Any]]:
    """About `n_events` events (ticks included) over `n_accounts` accounts."""
    rnd = random.Random(seed)
    events: list[dict[str, Any]] = []
    docs: dict[str, dict[str, list[str]]] = {}
    t = START

    def add(type_: str, customer: str | None, **data: Any) -> None:
        if customer is not None:
            data = {"company": "main", "customer_id": customer, **data}
        events.append({"specversion": "1.0", "id": f"g{seed}-{len(events)}",
                       "source": "erp/gen", "type": type_, "time": _iso(t), "data": data})

    def money(low: int = 5, high: int = 900) -> str:
        return str(Decimal(rnd.randint(low * 100, high * 100)) / 100)

    def pick(c: str, kind: str) -> str:
        known = docs[c][kind]
        if known and rnd.random() < 0.95:
            return rnd.choice(known[-20:])
        return f"{kind}-unknown-{rnd.randint(0, 5)}"

    def new(c: str, kind: str) -> str:
        doc_id = f"{kind[:2].upper()}{len(events)}"
        docs[c][kind].append(doc_id)
        return doc_id

    customers = [f"G{i:05d}" for i in range(n_accounts)]
    for c in customers:
        docs[c] = {"order": [], "invoice": [], "payment": [], "delivery": []}
        if rnd.random() < 0.97:
            add("erp.credit_profile.set", c, currency=rnd.choice(["EUR"] * 9 + ["USD"]),
                credit_limit=str(rnd.choice([500, 1000, 2000, 5000])),
                risk_class=rnd.choice("ABCD"), timezone=rnd.choice(
                    ["UTC", "Europe/Berlin", "America/Sao_Paulo"]))
    add("fx.rate.set", None, currency="USD", quote_currency="EUR", rate="0.9")
    day = t.date()
    while len(events) < n_events:
        t += dt.timedelta(seconds=rnd.randint(1, 120 * max(1, 1000 // n_accounts)))
        if t.date() != day:
            day = t.date()
            add("clock.tick", None)
            if rnd.random() < 0.1:
                add("fx.rate.set", None, currency="USD", quote_currency="EUR",
                    rate=str(Decimal(rnd.randint(80, 100)) / 100))
        c = rnd.choice(customers)
        cur = "EUR" if rnd.random() < 0.95 else "USD"
        op = rnd.random()
        if bad_every and len(events) % bad_every == 0:
            add("erp.order.placed", c, order_id="BAD", amount="-1", currency="EUR")
        elif op < 0.22:
            add("erp.order.placed", c, order_id=new(c, "order"), amount=money(), currency=cur)
        elif op < 0.25:
            add("erp.order.amended", c, order_id=pick(c, "order"), amount=money())
        elif op < 0.28:
            add(rnd.choice(["erp.order.cancelled", "erp.order.closed", "erp.order.reopened"]),
                c, order_id=pick(c, "order"))
        elif op < 0.32:
            ref = {"order_id": pick(c, "order")} if rnd.random() < 0.7 else {}
            add("erp.delivery.posted", c, delivery_id=new(c, "delivery"), amount=money(),
                currency=cur, **ref)
        elif op < 0.55:
            ref = {}
            if docs[c]["order"] and rnd.random() < 0.7:
                ref = {"order_id": pick(c, "order")}
            elif docs[c]["delivery"] and rnd.random() < 0.3:
                ref = {"delivery_id": pick(c, "delivery")}
            due = (t + dt.timedelta(days=rnd.choice([0, 14, 30, 30, 30, 60]))).date()
            add("erp.invoice.issued", c, invoice_id=new(c, "invoice"), amount=money(),
                currency=cur, due_date=str(due), **ref)
        elif op < 0.57:
            add("erp.invoice.cancelled", c, invoice_id=pick(c, "invoice"))
        elif op < 0.60:
            ref = {"invoice_id": pick(c, "invoice")} if rnd.random() < 0.5 else {}
            add("erp.credit_note.issued", c, credit_note_id=f"CN{len(events)}",
                amount=money(1, 100), currency=cur, **ref)
        elif op < 0.82:
            amount = Decimal(money())
            allocations = []
            if rnd.random() < 0.8:
                allocations = [{"invoice_id": pick(c, "invoice"), "amount": str(amount)}]
            add("erp.payment.received", c, payment_id=new(c, "payment"), amount=str(amount),
                currency=cur, allocations=allocations)
        elif op < 0.85:
            add("erp.payment.allocated", c, payment_id=pick(c, "payment"),
                invoice_id=pick(c, "invoice"), amount=money(1, 50))
        elif op < 0.86:
            add("erp.payment.reversed", c, payment_id=pick(c, "payment"))
        elif op < 0.88:
            add(rnd.choice(["erp.invoice.disputed", "erp.invoice.dispute_resolved"]), c,
                invoice_id=pick(c, "invoice"))
        elif op < 0.89:
            add("credit.command.release_order", c, order_id=pick(c, "order"), by="ops",
                reason="generated")
        elif op < 0.90 and events:
            events.append(dict(rnd.choice(events[-50:])))  # a redelivery
        else:
            add("erp.order.placed", c, order_id=new(c, "order"), amount=money(1, 50),
                currency=cur)
    return events
