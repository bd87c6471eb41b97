"""Exposure and overdue of one account, derived from its documents (CONTRACT 4 and 5).

`compute_position` is a pure function of the documents, the account currency, the
exchange rates and the local date. It is the only place that decides what an invoice
consumes of its order, what a payment applies to an invoice, and what is overdue.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, ParamSpec, TypeVar

from .documents import CreditNote, Delivery, Invoice, Order, Payment
from .fx import FxBook, FxRate
from .money import ZERO

BUCKETS = ("1-30", "31-60", "61-90", "90+")


def bucket_of(days: int) -> str:
    if days <= 30:
        return "1-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"


@dataclass(slots=True)
class Position:
    """What the account could owe, in the account currency, exact (unrounded)."""

    currency: str | None
    open_orders: Decimal = ZERO
    uninvoiced_deliveries: Decimal = ZERO
    open_receivables: Decimal = ZERO
    unapplied_credit: Decimal = ZERO
    overdue_amount: Decimal = ZERO
    oldest_overdue_days: int = 0
    buckets: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(BUCKETS, ZERO))
    unconverted: list[dict[str, Any]] = field(default_factory=list)
    rates_used: dict[tuple[str, str], FxRate] = field(default_factory=dict)
    # Open value of each document in its own currency, for snapshots and pruning.
    order_open: dict[str, Decimal] = field(default_factory=dict)
    order_consumed: dict[str, Decimal] = field(default_factory=dict)
    delivery_open: dict[str, Decimal] = field(default_factory=dict)
    invoice_open: dict[str, Decimal] = field(default_factory=dict)
    payment_unapplied: dict[str, Decimal] = field(default_factory=dict)
    note_unapplied: dict[str, Decimal] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return (
            self.open_orders
            + self.uninvoiced_deliveries
            + self.open_receivables
            - self.unapplied_credit
        )

    @property
    def missing_fx(self) -> list[str]:
        return sorted({u["currency"] for u in self.unconverted})


class _Converter:
    """Converts into the account currency, remembering the rates it used."""

    __slots__ = ("fx", "currency", "position")

    def __init__(self, fx: FxBook, currency: str, position: Position) -> None:
        self.fx = fx
        self.currency = currency
        self.position = position

    def __call__(self, amount: Decimal, currency: str, kind: str, doc_id: str) -> Decimal:
        if currency == self.currency or not amount:
            return amount
        rate = self.fx.quote(currency, self.currency)
        if rate is None:
            self.position.unconverted.append(
                {"document": kind, "id": doc_id, "currency": currency, "amount": str(amount)}
            )
            return ZERO
        self.position.rates_used[(rate.base, rate.quote)] = rate
        converted = self.fx.convert(amount, currency, self.currency)
        assert converted is not None
        return converted


# Sums of converted amounts are exact: conversions are carried to 20 decimal places
# and added with 100 significant digits, so no figure depends on the order in which
# documents are summed (the aging buckets add up to the overdue amount exactly, and
# every component to the total, whatever the rates).
SUM_PRECISION = 100

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _exact_sums(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run `fn` with SUM_PRECISION significant digits."""
    @functools.wraps(fn)
    def inner(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with localcontext(prec=SUM_PRECISION):
            return fn(*args, **kwargs)
    return inner


@_exact_sums
def compute_position(
    *,
    currency: str | None,
    orders: dict[str, Order],
    deliveries: dict[str, Delivery],
    invoices: dict[str, Invoice],
    payments: dict[str, Payment],
    credit_notes: dict[str, CreditNote],
    fx: FxBook,
    today: dt.date,
    grace_days: int,
) -> Position:
    """Derive exposure and overdue from the documents.

    Steps:
    1. invoices, oldest first, consume the open value of the order (or of the delivery)
       they reference, never more than is left;
    2. payments and credit notes, oldest allocation first, are applied to invoices up to
       each invoice's open balance; the rest stays unapplied credit;
    3. every open value is converted into the account currency and summed;
    4. invoices with an open balance past their due date plus grace are overdue.
    """
    pos = Position(currency=currency)
    if currency is None:
        return pos
    conv = _Converter(fx, currency, pos)

    # 1. What each invoice consumes of its order or delivery.
    order_consumed: dict[str, Decimal] = {}
    delivery_consumed: dict[str, Decimal] = {}
    for inv in invoices.values():
        if inv.cancelled:
            continue
        source, consumed = _source_of(inv, orders, deliveries, order_consumed,
                                      delivery_consumed)
        if source is None:
            continue
        amount = inv.amount
        if source.currency != inv.currency:
            converted = fx.convert(inv.amount, inv.currency, source.currency)
            if converted is None:
                continue
            amount = converted
        already = consumed.get(_doc_id(source), ZERO)
        room = source.amount - already
        if room > 0:
            consumed[_doc_id(source)] = already + min(amount, room)
    pos.order_consumed = order_consumed

    # 2. Money applied to invoices, oldest allocation first.
    applied: list[tuple[int, str, str, Decimal, str]] = []
    for pay in payments.values():
        if not pay.reversed:
            for a in pay.allocations:
                applied.append((a.seq, "payment", pay.payment_id, a.amount, a.invoice_id))
    for note in credit_notes.values():
        if note.invoice_id is not None:
            applied.append(
                (note.seq, "credit_note", note.credit_note_id, note.amount, note.invoice_id)
            )
    applied.sort(key=lambda item: item[0])

    invoice_open = {
        inv.invoice_id: inv.amount for inv in invoices.values() if not inv.cancelled
    }
    used: dict[tuple[str, str], Decimal] = {}
    for _seq, kind, payer_id, amount, invoice_id in applied:
        open_value = invoice_open.get(invoice_id)
        if not open_value:
            continue
        payer_currency = (
            payments[payer_id].currency if kind == "payment" else credit_notes[payer_id].currency
        )
        inv = invoices[invoice_id]
        in_invoice_currency = fx.convert(amount, payer_currency, inv.currency)
        if in_invoice_currency is None or not in_invoice_currency:
            continue
        take = min(in_invoice_currency, open_value)
        invoice_open[invoice_id] = open_value - take
        taken = amount if take == in_invoice_currency else amount * take / in_invoice_currency
        used[(kind, payer_id)] = used.get((kind, payer_id), ZERO) + taken
    pos.invoice_open = invoice_open

    # 3. Open values in the account currency.
    for order in orders.values():
        if order.state != "open":
            continue
        value = order.amount - order.held - order_consumed.get(order.order_id, ZERO)
        if value > 0:
            pos.order_open[order.order_id] = value
            pos.open_orders += conv(value, order.currency, "order", order.order_id)

    for dlv in deliveries.values():
        if dlv.order_id is not None and dlv.order_id in orders:
            continue  # the goods are in the order, whatever became of it
        # A delivery whose order has not arrived yet counts until the order does.
        value = dlv.amount - delivery_consumed.get(dlv.delivery_id, ZERO)
        if value > 0:
            pos.delivery_open[dlv.delivery_id] = value
            pos.uninvoiced_deliveries += conv(value, dlv.currency, "delivery", dlv.delivery_id)

    for invoice_id, value in invoice_open.items():
        if value > 0:
            inv = invoices[invoice_id]
            pos.open_receivables += conv(value, inv.currency, "invoice", invoice_id)

    for pay in payments.values():
        if pay.reversed:
            continue
        value = pay.amount - used.get(("payment", pay.payment_id), ZERO)
        if value > 0:
            pos.payment_unapplied[pay.payment_id] = value
            pos.unapplied_credit += conv(value, pay.currency, "payment", pay.payment_id)
    for note in credit_notes.values():
        value = note.amount - used.get(("credit_note", note.credit_note_id), ZERO)
        if value > 0:
            pos.note_unapplied[note.credit_note_id] = value
            pos.unapplied_credit += conv(
                value, note.currency, "credit_note", note.credit_note_id
            )

    # 4. Overdue, in the account's own calendar.
    for invoice_id, value in invoice_open.items():
        if value <= 0:
            continue
        inv = invoices[invoice_id]
        days = (today - inv.due_date).days
        if days <= grace_days or days <= 0:
            continue
        overdue = fx.convert(value, inv.currency, currency)
        if overdue is None:
            continue  # already listed as unconverted
        pos.overdue_amount += overdue
        pos.buckets[bucket_of(days)] += overdue
        pos.oldest_overdue_days = max(pos.oldest_overdue_days, days)
    return pos


def _doc_id(doc: Order | Delivery) -> str:
    return doc.order_id if isinstance(doc, Order) else doc.delivery_id


def _source_of(
    inv: Invoice,
    orders: dict[str, Order],
    deliveries: dict[str, Delivery],
    order_consumed: dict[str, Decimal],
    delivery_consumed: dict[str, Decimal],
) -> tuple[Order | Delivery | None, dict[str, Decimal]]:
    """The order or delivery whose value an invoice consumes, and its ledger."""
    if inv.order_id is not None and inv.order_id in orders:
        return orders[inv.order_id], order_consumed
    if inv.delivery_id is not None and inv.delivery_id in deliveries:
        dlv = deliveries[inv.delivery_id]
        linked = orders.get(dlv.order_id) if dlv.order_id is not None else None
        if linked is not None:
            # The delivered goods are part of the order: the invoice consumes the order.
            return linked, order_consumed
        return dlv, delivery_consumed
    return None, order_consumed
