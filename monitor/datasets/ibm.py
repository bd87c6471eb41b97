"""IBM accounts-receivable sample (`data/WA_Fn-UseC_-Accounts-Receivable.csv`) as
contract events.

The file has one row per invoice, each paid in full once. Per row:

- `erp.invoice.issued` on `InvoiceDate` at 09:00 UTC, due `DueDate` (net 30), USD.
- `erp.payment.received` on `SettledDate` at 08:00 UTC, for the full amount, with one
  allocation to that invoice. 08:00 is before the 09:00 of invoices, so a payment
  lands before the invoices issued on its day; the data set's own exposure figures
  are computed that way. An invoice settled on its own issue day (4 rows) is paid at
  10:00 instead, after it exists.
- For `Disputed=Yes`: the file says *that* the invoice was disputed, not when. The
  dates are invented: `erp.invoice.disputed` at 09:30 UTC on `DueDate` when the invoice
  was paid after its due date, otherwise halfway between issue and settlement (day
  `InvoiceDate + DaysToSettle // 2`), so the dispute is always open before it is paid;
  `erp.invoice.dispute_resolved` at the time of the payment, right after it.

Per customer, an invented `erp.credit_profile.set` at 00:00 UTC on the day of their
first invoice: USD, timezone UTC, payment terms 30 days, credit limit from a
`LimitRule` (default `fixed:250`: the data README finds that 37% of customers peak above
250) and risk class from a `RiskRule` over the customer's share of late invoices
(default `late-share:0.1,0.3,0.6`). Plus one `clock.tick` at 00:05 UTC every day from the
first event's day to the day after the last event.

Rows from the file keep the source `ibm-ar`; everything invented (profiles, dispute
events, ticks) has source `synthetic/ibm-ar` and `"synthetic": true` in `data`.
Invoice numbers are read as text, so their leading zeros stay.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from .common import (
    COMPANY,
    DEFAULT_RISK_RULE,
    CustomerHistory,
    Event,
    LimitRule,
    PlanEntry,
    RiskRule,
    at,
    clock_ticks,
    data_dir,
    envelope,
    first_customers,
    money,
    profile_data,
    render,
    tick_event,
)

FILE_NAME = "WA_Fn-UseC_-Accounts-Receivable.csv"
SOURCE = "ibm-ar"
SYNTHETIC_SOURCE = "synthetic/ibm-ar"
CURRENCY = "USD"
DEFAULT_LIMIT_RULE = LimitRule.parse("fixed:250")

PROFILE_TIME = dt.time(0, 0)
PAYMENT_TIME = dt.time(8, 0)
INVOICE_TIME = dt.time(9, 0)
DISPUTE_TIME = dt.time(9, 30)
SAME_DAY_PAYMENT_TIME = dt.time(10, 0)


def default_path() -> Path:
    return data_dir() / FILE_NAME


@dataclass(frozen=True, slots=True)
class Row:
    """One invoice of the file, typed."""

    customer_id: str
    country_code: str
    invoice_id: str
    invoice_date: dt.date
    due_date: dt.date
    amount: Decimal
    disputed: bool
    settled_date: dt.date
    days_to_settle: int
    days_late: int


def _us_date(text: str) -> dt.date:
    month, day, year = text.split("/")
    return dt.date(int(year), int(month), int(day))


def read_rows(
    path: Path | str | None = None, *, max_rows: int | None = None
) -> Iterator[Row]:
    """The rows of the IBM file in file order (the first `max_rows` only, if given)."""
    with open(path or default_path(), newline="", encoding="utf-8") as f:
        for n, rec in enumerate(csv.DictReader(f)):
            if max_rows is not None and n >= max_rows:
                return
            yield Row(
                customer_id=rec["customerID"],
                country_code=rec["countryCode"],
                invoice_id=rec["invoiceNumber"],
                invoice_date=_us_date(rec["InvoiceDate"]),
                due_date=_us_date(rec["DueDate"]),
                amount=Decimal(rec["InvoiceAmount"]),
                disputed=rec["Disputed"] == "Yes",
                settled_date=_us_date(rec["SettledDate"]),
                days_to_settle=int(rec["DaysToSettle"]),
                days_late=int(rec["DaysLate"]),
            )


def days_to_settle(path: Path | str | None = None) -> list[int]:
    """`DaysToSettle` of every row, in file order: the empirical payment behaviour."""
    return [row.days_to_settle for row in read_rows(path)]


def events(
    rows: Iterable[Row] | None = None,
    *,
    limit_rule: LimitRule = DEFAULT_LIMIT_RULE,
    risk_rule: RiskRule = DEFAULT_RISK_RULE,
    customers: int | None = None,
) -> Iterator[Event]:
    """The contract events of the IBM rows, sorted by time.

    Steps: read the rows and each customer's history; plan every event as a small
    `(time, kind, payload)` tuple; sort the plan by time (stable); build the envelopes
    one by one as the caller iterates.
    """
    rows = list(read_rows() if rows is None else rows)

    histories: dict[str, CustomerHistory] = {}
    for row in rows:
        first = dt.datetime.combine(row.invoice_date, PROFILE_TIME)
        history = histories.get(row.customer_id)
        if history is None:
            history = histories[row.customer_id] = CustomerHistory(
                row.customer_id, first, []
            )
        history.first_seen = min(history.first_seen, first)
        history.invoice_amounts.append(row.amount)
        history.late += row.days_late > 0
    chosen = first_customers(histories.values(), customers)
    rows = [row for row in rows if row.customer_id in chosen]
    if not rows:
        return

    plan: list[PlanEntry] = []
    for cid, history in histories.items():
        if cid in chosen:
            data = profile_data(
                history,
                currency=CURRENCY,
                timezone="UTC",
                limit_rule=limit_rule,
                risk_rule=risk_rule,
            )
            plan.append((at(history.first_seen.date(), PROFILE_TIME), "profile", data))
    for row in rows:
        paid_at = (
            SAME_DAY_PAYMENT_TIME
            if row.settled_date == row.invoice_date
            else PAYMENT_TIME
        )
        plan.append((at(row.invoice_date, INVOICE_TIME), "invoice", row))
        plan.append((at(row.settled_date, paid_at), "payment", row))
        if row.disputed:
            plan.append((at(dispute_date(row), DISPUTE_TIME), "disputed", row))
            plan.append((at(row.settled_date, paid_at), "resolved", row))
    first_day = min(row.invoice_date for row in rows)
    last_day = max(row.settled_date for row in rows) + dt.timedelta(days=1)
    plan.extend(clock_ticks(first_day, last_day, SYNTHETIC_SOURCE))

    yield from render(plan, _BUILDERS)


def dispute_date(row: Row) -> dt.date:
    """The invented day a disputed invoice was disputed: always before it was paid."""
    if row.settled_date > row.due_date:
        return row.due_date
    return row.invoice_date + dt.timedelta(days=row.days_to_settle // 2)


# ---- envelopes --------------------------------------------------------------------


def _account(row: Row) -> dict[str, Any]:
    return {"company": COMPANY, "customer_id": row.customer_id}


def _profile(time: str, data: dict[str, Any]) -> Event:
    return envelope(
        SYNTHETIC_SOURCE,
        f"profile-{data['customer_id']}",
        "erp.credit_profile.set",
        time,
        data,
    )


def _invoice(time: str, row: Row) -> Event:
    data = _account(row) | {
        "invoice_id": row.invoice_id,
        "amount": money(row.amount),
        "currency": CURRENCY,
        "due_date": row.due_date.isoformat(),
    }
    return envelope(
        SOURCE, f"invoice-{row.invoice_id}", "erp.invoice.issued", time, data
    )


def _payment(time: str, row: Row) -> Event:
    amount = money(row.amount)
    data = _account(row) | {
        "payment_id": f"P{row.invoice_id}",
        "amount": amount,
        "currency": CURRENCY,
        "allocations": [{"invoice_id": row.invoice_id, "amount": amount}],
    }
    return envelope(
        SOURCE, f"payment-{row.invoice_id}", "erp.payment.received", time, data
    )


def _disputed(time: str, row: Row) -> Event:
    data = _account(row) | {
        "invoice_id": row.invoice_id,
        "reason": "Disputed=Yes in the IBM sample; the date is invented",
        "synthetic": True,
    }
    return envelope(
        SYNTHETIC_SOURCE,
        f"dispute-{row.invoice_id}",
        "erp.invoice.disputed",
        time,
        data,
    )


def _resolved(time: str, row: Row) -> Event:
    data = _account(row) | {"invoice_id": row.invoice_id, "synthetic": True}
    return envelope(
        SYNTHETIC_SOURCE,
        f"dispute-resolved-{row.invoice_id}",
        "erp.invoice.dispute_resolved",
        time,
        data,
    )


_BUILDERS: dict[str, Callable[[str, Any], Event]] = {
    "profile": _profile,
    "invoice": _invoice,
    "payment": _payment,
    "disputed": _disputed,
    "resolved": _resolved,
    "tick": tick_event,
}
