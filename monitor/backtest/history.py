"""What the input history says about invoices: when each was issued, due and paid.

The history is a list of contract events (dicts) in the order they were applied. Only
the fields a credit controller would look at are read; an event that cannot be read
(no time, a bad amount) is skipped here, as the monitor rejects it too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Event = dict[str, Any]


@dataclass(slots=True)
class Invoice:
    """One invoice of the history and how it was settled."""

    account: str
    invoice_id: str
    position: int
    """index of its `erp.invoice.issued` in the history"""
    issued_at: dt.datetime
    due_date: dt.date
    amount: Decimal
    timezone: str
    order_id: str | None
    open_amount: Decimal
    paid_at: dt.datetime | None = None
    cancelled: bool = False

    def days_late(self, end: dt.datetime) -> int:
        """Local days from the due date to full payment (or to `end` if never paid)."""
        settled = self.paid_at or end
        return (_local_date(settled, self.timezone) - self.due_date).days


@dataclass(slots=True)
class History:
    """The input events, indexed for the backtest."""

    events: Sequence[Event]
    times: list[dt.datetime]
    """event time of each event, made non-decreasing (a late event counts at the
    latest time seen before it)"""
    causes: dict[str, int]
    """`source/id` of each event -> its first position: how outputs name their cause"""
    invoices: list[Invoice]
    invoice_positions_by_order: dict[tuple[str, str], list[int]] = field(
        default_factory=dict
    )
    """(account, order_id) -> positions of invoices that reference the order"""
    accounts: list[str] = field(default_factory=list)
    currencies: dict[str, str] = field(default_factory=dict)

    @property
    def start(self) -> dt.datetime | None:
        return self.times[0] if self.times else None

    @property
    def end(self) -> dt.datetime | None:
        return self.times[-1] if self.times else None


def parse_time(text: Any) -> dt.datetime | None:
    """An aware datetime from an ISO-8601 text, or None."""
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _local_date(moment: dt.datetime, timezone: str) -> dt.date:
    try:
        return moment.astimezone(ZoneInfo(timezone)).date()
    except (ZoneInfoNotFoundError, ValueError):
        return moment.astimezone(dt.UTC).date()


def _amount(raw: Any) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def account_of(data: dict[str, Any]) -> str | None:
    customer = data.get("customer_id")
    if not isinstance(customer, str):
        return None
    company = data.get("company")
    return f"{company if isinstance(company, str) else 'main'}/{customer}"


def read_history(events: Sequence[Event]) -> History:
    """Invoices with due dates and the moment each was paid in full.

    Steps: walk the events in order, keeping each account's time zone (from its
    profile) and currency; record every invoice; apply payment allocations,
    allocated credit notes, payment reversals and invoice cancellations to the
    invoices' open amounts. An allocation to an invoice not seen yet waits for it
    and counts from the moment the invoice arrives.
    """
    times: list[dt.datetime] = []
    causes: dict[str, int] = {}
    invoices: dict[tuple[str, str], Invoice] = {}
    waiting: dict[tuple[str, str], list[tuple[str, Decimal]]] = {}
    by_payment: dict[tuple[str, str], list[tuple[str, Decimal]]] = {}
    zones: dict[str, str] = {}
    currencies: dict[str, str] = {}
    by_order: dict[tuple[str, str], list[int]] = {}
    latest = dt.datetime.min.replace(tzinfo=dt.UTC)

    def allocate(
        account: str, invoice_id: str, amount: Decimal, at: dt.datetime, payer: str
    ) -> None:
        invoice = invoices.get((account, invoice_id))
        if invoice is None:
            waiting.setdefault((account, invoice_id), []).append((payer, amount))
            return
        invoice.open_amount -= amount
        if invoice.paid_at is None and invoice.open_amount <= 0:
            invoice.paid_at = at

    for position, event in enumerate(events):
        moment = parse_time(event.get("time"))
        latest = max(latest, moment) if moment else latest
        times.append(latest)
        source, ident = event.get("source"), event.get("id")
        if isinstance(source, str) and isinstance(ident, str):
            causes.setdefault(f"{source}/{ident}", position)
        data = event.get("data")
        if moment is None or not isinstance(data, dict):
            continue
        account = account_of(data)
        if account is None:
            continue
        kind = event.get("type")

        if kind == "erp.credit_profile.set":
            zones[account] = str(data.get("timezone") or "UTC")
            if isinstance(data.get("currency"), str):
                currencies[account] = data["currency"]
        elif kind == "erp.invoice.issued":
            amount = _amount(data.get("amount"))
            invoice_id = data.get("invoice_id")
            try:
                due = dt.date.fromisoformat(str(data.get("due_date")))
            except ValueError:
                continue
            if amount is None or not isinstance(invoice_id, str):
                continue
            if (account, invoice_id) in invoices:
                continue  # a document id used twice is rejected by the monitor
            order_id = data.get("order_id")
            invoice = Invoice(
                account,
                invoice_id,
                position,
                moment,
                due,
                amount,
                zones.get(account, "UTC"),
                order_id if isinstance(order_id, str) else None,
                amount,
            )
            invoices[(account, invoice_id)] = invoice
            currencies.setdefault(account, str(data.get("currency") or ""))
            if invoice.order_id:
                by_order.setdefault((account, invoice.order_id), []).append(position)
            for payer, amount in waiting.pop((account, invoice_id), []):
                allocate(account, invoice_id, amount, moment, payer)
        elif kind in ("erp.payment.received", "erp.payment.allocated"):
            payment_id = str(data.get("payment_id"))
            allocations = (
                data.get("allocations") or []
                if kind == "erp.payment.received"
                else [data]
            )
            for item in allocations if isinstance(allocations, list) else []:
                amount = _amount(item.get("amount")) if isinstance(item, dict) else None
                invoice_id = item.get("invoice_id") if isinstance(item, dict) else None
                if amount is None or not isinstance(invoice_id, str):
                    continue
                by_payment.setdefault((account, payment_id), []).append(
                    (invoice_id, amount)
                )
                allocate(account, invoice_id, amount, moment, payment_id)
        elif kind == "erp.credit_note.issued" and isinstance(
            data.get("invoice_id"), str
        ):
            amount = _amount(data.get("amount"))
            if amount is not None:
                allocate(account, data["invoice_id"], amount, moment, "credit-note")
        elif kind == "erp.payment.reversed":
            for invoice_id, amount in by_payment.pop(
                (account, str(data.get("payment_id"))), []
            ):
                reopened = invoices.get((account, invoice_id))
                if reopened is not None:
                    reopened.open_amount += amount
                    if reopened.open_amount > 0:
                        reopened.paid_at = None
        elif kind == "erp.invoice.cancelled":
            cancelled = invoices.get((account, str(data.get("invoice_id"))))
            if cancelled is not None:
                cancelled.cancelled = True

    return History(
        events=events,
        times=times,
        causes=causes,
        invoices=sorted(invoices.values(), key=lambda i: i.position),
        invoice_positions_by_order=by_order,
        accounts=sorted(set(zones) | {i.account for i in invoices.values()}),
        currencies=currencies,
    )
