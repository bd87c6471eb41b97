"""An account as plain JSON-able data and back, for changelog-backed tables.

Decimals travel as strings and datetimes as ISO text, so a restored account decides
exactly as the one that was saved. `account_from_state(account_to_state(a))` equals `a`.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from decimal import Decimal
from typing import Any

import orjson

from schemas.parse import validate

from .account import Account, Pending
from .documents import (
    CreditNote,
    Delivery,
    Invoice,
    MoneyAllocation,
    Order,
    Payment,
    Profile,
)
from .score import Settlement

STATE_VERSION = 2
"""2 added the credit-score history; a version-1 state is read with an empty one."""


def _t(value: dt.datetime | None) -> str | None:
    return None if value is None else _iso_cached(value)


@lru_cache(maxsize=65536)
def _iso_cached(value: dt.datetime) -> str:
    # An account's documents keep their times while it is written again and again.
    # Every time in an account is in UTC (the envelope converts it), so two equal
    # datetimes here also have the same text.
    return value.isoformat()


def _pt(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _d(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _pd(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def kept_json(value: Any) -> bytes:
    """`orjson.dumps(value)` as a right-sized copy, for bytes that are kept.

    orjson (3.12 and later) returns bytes whose allocation is rounded up to at least
    4 KiB and never shrunk; a worker that keeps one such image per account in its
    changelog table held about 4 to 16 KiB per account for a state of about 1.4 KiB.
    The copy costs a memcpy; bytes that are sent and dropped do not need it.
    """
    return bytes(memoryview(orjson.dumps(value)))


def account_to_state(a: Account) -> dict[str, Any]:
    p = a.profile
    return {
        "v": STATE_VERSION,
        "company": a.company,
        "customer_id": a.customer_id,
        "profile": None if p is None else [
            p.currency, str(p.credit_limit), p.risk_class, _d(p.valid_until), p.timezone,
            p.blocked, p.payment_terms_days,
        ],
        "currency": a.currency,
        "last_time": _t(a.last_time),
        "status": a.status,
        "reasons": a.reasons,
        "orders": [
            [o.order_id, str(o.amount), o.currency, o.seq, _t(o.placed_at), _t(o.changed_at),
             o.state, str(o.held), o.block_code, o.block_reason, _t(o.blocked_at), o.block_seq]
            for o in a.orders.values()
        ],
        "deliveries": [
            [d.delivery_id, str(d.amount), d.currency, d.seq, d.order_id, _t(d.changed_at)]
            for d in a.deliveries.values()
        ],
        "invoices": [
            [i.invoice_id, str(i.amount), i.currency, _d(i.due_date), i.seq, _t(i.issued_at),
             _t(i.changed_at), i.order_id, i.delivery_id, i.cancelled, i.disputed,
             _d(i.settled_on)]
            for i in a.invoices.values()
        ],
        "payments": [
            [p_.payment_id, str(p_.amount), p_.currency, p_.seq, _t(p_.received_at),
             _t(p_.changed_at), [[m.invoice_id, str(m.amount), m.seq] for m in p_.allocations],
             p_.reversed]
            for p_ in a.payments.values()
        ],
        "credit_notes": [
            [c.credit_note_id, str(c.amount), c.currency, c.seq, _t(c.issued_at),
             _t(c.changed_at), c.invoice_id]
            for c in a.credit_notes.values()
        ],
        "pending": [
            [list(w.waits_for), _t(w.time), w.seq, w.event.model_dump(mode="json")]
            for w in a.pending
        ],
        "seen": {k: _t(t) for k, t in a.seen.items()},
        "seq": a.seq,
        "wake_at": _t(a.wake_at),
        "next_prune_at": _t(a.next_prune_at),
        "overdue": a.overdue,
        "first_time": _t(a.first_time),
        "settlements": [[x.invoice_id, _d(x.due_date), _d(x.settled_on)]
                        for x in a.settlements],
        "months": {m: {c: [str(v[0]), str(v[1])] for c, v in by.items()}
                   for m, by in a.months.items()},
        "reversal_days": [_d(d) for d in a.reversal_days],
        "grade": a.grade,
        "last_review": None if a.last_review is None else str(a.last_review),
        "record": a.record,
    }


def account_from_state(s: dict[str, Any]) -> Account:
    if s.get("v") not in (1, STATE_VERSION):
        raise ValueError(f"account state version {s.get('v')!r} is not {STATE_VERSION}")
    p = s["profile"]
    a = Account(company=s["company"], customer_id=s["customer_id"])
    if p is not None:
        a.profile = Profile(p[0], Decimal(p[1]), p[2], _pd(p[3]), p[4], p[5], p[6])
    a.currency = s["currency"]
    a.last_time = _pt(s["last_time"])
    a.status = s["status"]
    a.reasons = s["reasons"]
    for o in s["orders"]:
        a.orders[o[0]] = Order(
            order_id=o[0], amount=Decimal(o[1]), currency=o[2], seq=o[3],
            placed_at=_pt(o[4]), changed_at=_pt(o[5]),  # type: ignore[arg-type]
            state=o[6], held=Decimal(o[7]), block_code=o[8], block_reason=o[9],
            blocked_at=_pt(o[10]), block_seq=o[11],
        )
    for d in s["deliveries"]:
        a.deliveries[d[0]] = Delivery(d[0], Decimal(d[1]), d[2], d[3], d[4], _pt(d[5]))  # type: ignore[arg-type]
    for i in s["invoices"]:
        a.invoices[i[0]] = Invoice(
            invoice_id=i[0], amount=Decimal(i[1]), currency=i[2],
            due_date=_pd(i[3]), seq=i[4], issued_at=_pt(i[5]),  # type: ignore[arg-type]
            changed_at=_pt(i[6]), order_id=i[7], delivery_id=i[8],  # type: ignore[arg-type]
            cancelled=i[9], disputed=i[10], settled_on=_pd(i[11]) if len(i) > 11 else None,
        )
    for q in s["payments"]:
        a.payments[q[0]] = Payment(
            payment_id=q[0], amount=Decimal(q[1]), currency=q[2], seq=q[3],
            received_at=_pt(q[4]), changed_at=_pt(q[5]),  # type: ignore[arg-type]
            allocations=[MoneyAllocation(m[0], Decimal(m[1]), m[2]) for m in q[6]],
            reversed=q[7],
        )
    for c in s["credit_notes"]:
        a.credit_notes[c[0]] = CreditNote(
            c[0], Decimal(c[1]), c[2], c[3], _pt(c[4]), _pt(c[5]), c[6]  # type: ignore[arg-type]
        )
    a.pending = [
        Pending((w[0][0], w[0][1]), _pt(w[1]), w[2], validate(w[3]))  # type: ignore[arg-type]
        for w in s["pending"]
    ]
    a.seen = {k: _pt(t) for k, t in s["seen"].items()}  # type: ignore[misc]
    a.seq = s["seq"]
    a.wake_at = _pt(s["wake_at"])
    a.next_prune_at = _pt(s["next_prune_at"])
    a.overdue = s["overdue"]
    a.first_time = _pt(s.get("first_time"))
    a.settlements = [Settlement(x[0], _pd(x[1]), _pd(x[2]))  # type: ignore[arg-type]
                     for x in s.get("settlements", [])]
    a.months = {m: {c: [Decimal(v[0]), Decimal(v[1])] for c, v in by.items()}
                for m, by in s.get("months", {}).items()}
    a.reversal_days = [_pd(d) for d in s.get("reversal_days", [])]  # type: ignore[misc]
    a.grade = s.get("grade")
    review = s.get("last_review")
    a.last_review = None if review is None else Decimal(review)
    a.record = s.get("record")
    return a
