"""UCI Online Retail and Online Retail II (`data/online_retail*.csv.gz`) as contract
events, with invented payments.

The two files are joined as the data README says: the 2009-10 file for lines stamped
before 2010-12-01 00:00, the 2010-11 file from then on (they overlap for nine days).
Lines without a customer id and `A` ("adjust bad debt") documents are left out.
Exact duplicate lines are kept, as the shop recorded them. The lines of one document
number form one document; it takes the earliest timestamp of its lines (about 40
documents per file have two timestamps a minute apart).

Timestamps carry no zone. They are read as Europe/London wall-clock time (the shop is in
the UK) and converted to UTC, so British Summer Time shifts them by an hour; profiles
say `timezone: Europe/London`, so due dates and overdue days count London days.

Per document:

- a sale (number without prefix): `erp.order.placed` (order `SO<number>`) and
  `erp.invoice.issued` (invoice `<number>`, referencing the order) at the document's
  time, both for Σ Quantity × Price rounded half-even to pence. They are the same goods:
  the invoice consumes the order, so exposure counts them once. Documents whose
  rounded total is not above zero are skipped (6 in all).
- a `C` document: `erp.credit_note.issued` (id `C<number>`) for minus its total. The
  data does not say which sale it reverses, so it names no invoice and lowers exposure
  as unapplied credit. Customers are still invented to pay their invoices in full (see
  below), so a customer with credit notes ends with a credit balance: the refund that
  would clear it is not in the data.

Invented (source `synthetic/online-retail`, `"synthetic": true` in `data`):

- due dates: invoice day (London) + 30 days. The invoice carries
  `"synthetic_fields": ["due_date"]`; its other fields are real.
- one `erp.payment.received` per sale, for the full amount, allocated to its invoice,
  at 08:00 London on the invoice day + D days, D drawn from the IBM sample's
  `DaysToSettle` values (its empirical distribution, 0 to 75 days, 35.6% late). Each
  document draws from its own `random.Random(f"{seed}:{number}")`, so a draw does not
  depend on which other documents are converted. When D is 0 the payment comes one
  hour after the invoice.
  With `behaviour="per-customer"` each customer is first paired, by a seeded draw,
  with one of the 100 IBM customers and draws only from that customer's values. The
  overall distribution stays the IBM one, but customers then differ as real payers do
  (IBM late shares run from 0 to 1); with the default pooled draw every customer has
  the same one-in-three chance of paying late and classes differ by luck alone.
- one `erp.credit_profile.set` per customer at 00:00 London on the day of their first
  document: GBP, Europe/London, 30 days' terms; the limit from a `LimitRule` (default
  `median-invoice:4,round=100,min=200`: four typical orders of that customer) and the
  risk class from a `RiskRule` over the share of that customer's invented payments that
  are late.
- one `clock.tick` at 00:05 UTC every day from the first event's day to the day after
  the last.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from . import ibm
from .common import (
    CENT,
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
    iso_utc,
    money,
    profile_data,
    render,
    tick_event,
)

FILE_2009 = "online_retail_ii_2009-12_2010-12.csv.gz"
FILE_2010 = "online_retail_2010-12_2011-12.csv.gz"
CUT_OVER = "2010-12-01 00:00:00"
SOURCE = "uci/online-retail"
SYNTHETIC_SOURCE = "synthetic/online-retail"
CURRENCY = "GBP"
TIMEZONE = "Europe/London"
LONDON = ZoneInfo(TIMEZONE)
PAYMENT_TERMS_DAYS = 30
DEFAULT_LIMIT_RULE = LimitRule.parse("median-invoice:4,round=100,min=200")

PROFILE_TIME = dt.time(0, 0)
PAYMENT_TIME = dt.time(8, 0)
SAME_DAY_PAYMENT_DELAY = dt.timedelta(hours=1)


def default_paths() -> tuple[Path, Path]:
    return data_dir() / FILE_2009, data_dir() / FILE_2010


class Line(NamedTuple):
    """One transaction line, in the column names of Online Retail II."""

    invoice: str
    quantity: str
    invoice_date: str
    price: str
    customer_id: str
    country: str


def read_lines(path: Path | str, *, max_rows: int | None = None) -> Iterator[Line]:
    """The lines of one csv.gz file, whichever of the two column namings it uses."""
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        i_doc = col.get("Invoice", col.get("InvoiceNo"))
        i_qty, i_date = col["Quantity"], col["InvoiceDate"]
        i_price = col.get("Price", col.get("UnitPrice"))
        i_cust = col.get("Customer ID", col.get("CustomerID"))
        i_country = col["Country"]
        if i_doc is None or i_price is None or i_cust is None:
            raise ValueError(f"{path}: not an Online Retail file (header {header})")
        pick = itemgetter(i_doc, i_qty, i_date, i_price, i_cust, i_country)
        make = Line._make
        rows = reader if max_rows is None else islice(reader, max_rows)
        for rec in rows:
            yield make(pick(rec))


def joined_lines(
    paths: Sequence[Path | str] | None = None, *, max_rows: int | None = None
) -> Iterator[Line]:
    """Both files as one history: the first up to 2010-11-30 23:59, the second after.

    `max_rows` limits the rows read from *each* file (for small test slices).
    """
    first, second = paths or default_paths()
    for line in read_lines(first, max_rows=max_rows):
        if line.invoice_date < CUT_OVER:
            yield line
    for line in read_lines(second, max_rows=max_rows):
        if line.invoice_date >= CUT_OVER:
            yield line


@dataclass(slots=True)
class Document:
    """The lines of one document number: a sale, or a credit note (`C` prefix)."""

    number: str
    customer_id: str
    local_time: str
    total: Decimal
    lines: int = 1

    @property
    def is_credit_note(self) -> bool:
        return self.number.startswith("C")

    @property
    def amount(self) -> Decimal:
        """What the event carries: positive, in pence, rounded half-even."""
        value = -self.total if self.is_credit_note else self.total
        return value.quantize(CENT, rounding=ROUND_HALF_EVEN)

    @property
    def time(self) -> dt.datetime:
        naive = dt.datetime.fromisoformat(self.local_time)
        return naive.replace(tzinfo=LONDON)


def documents(lines: Iterable[Line]) -> list[Document]:
    """Lines grouped by document number, in order of first appearance.

    Lines without a customer and `A` documents are dropped; a document's total is the
    exact Σ Quantity × Price of its lines.
    """
    docs: dict[str, Document] = {}
    for line in lines:
        if not line.customer_id or line.invoice.startswith("A"):
            continue
        value = Decimal(line.quantity) * Decimal(line.price)
        doc = docs.get(line.invoice)
        if doc is None:
            docs[line.invoice] = Document(
                line.invoice, line.customer_id, line.invoice_date, value
            )
            continue
        doc.total += value
        doc.lines += 1
        doc.local_time = min(doc.local_time, line.invoice_date)
    return list(docs.values())


@dataclass(frozen=True, slots=True)
class Sale:
    """A sale as planned: the document, its due date and its invented settlement."""

    doc: Document
    amount: Decimal
    due_date: dt.date
    days_to_settle: int


PaymentBehaviour = Literal["pooled", "per-customer"]


def payment_behaviours(
    ibm_rows: Iterable[ibm.Row], behaviour: PaymentBehaviour
) -> list[list[int]]:
    """The IBM `DaysToSettle` values to draw from: one pool, or one per IBM customer."""
    if behaviour == "pooled":
        pool = [row.days_to_settle for row in ibm_rows]
        return [pool] if pool else []
    by_customer: dict[str, list[int]] = {}
    for row in ibm_rows:
        by_customer.setdefault(row.customer_id, []).append(row.days_to_settle)
    return list(by_customer.values())


def settlement_draw(
    seed: int, customer_id: str, number: str, behaviours: Sequence[Sequence[int]]
) -> int:
    """Days from invoice to payment for one document.

    The customer first picks a behaviour (always the same one for a customer and seed;
    with one pool there is nothing to pick), then the document draws one value from it.
    Both draws use their own `random.Random`, seeded by the seed and the customer or
    document number, so a draw does not depend on which other documents are converted.
    """
    days = behaviours[0]
    if len(behaviours) > 1:
        days = random.Random(f"{seed}:customer:{customer_id}").choice(behaviours)
    return random.Random(f"{seed}:{number}").choice(days)


def events(
    docs: Iterable[Document] | None = None,
    *,
    seed: int = 0,
    behaviour: PaymentBehaviour = "pooled",
    ibm_rows: Iterable[ibm.Row] | None = None,
    limit_rule: LimitRule = DEFAULT_LIMIT_RULE,
    risk_rule: RiskRule = DEFAULT_RISK_RULE,
    customers: int | None = None,
) -> Iterator[Event]:
    """The contract events of the documents (default: both files joined), by time.

    Steps: group the lines into documents; draw each sale's settlement from the IBM
    sample's `DaysToSettle` (`ibm_rows`, default the whole IBM file), pooled or per IBM
    customer (`behaviour`); gather each customer's history for the profile rules; plan
    every event as a `(time, kind, payload)` tuple; sort the plan by time (stable);
    build envelopes one by one as the caller iterates.
    """
    docs = documents(joined_lines()) if docs is None else list(docs)
    behaviours = payment_behaviours(
        ibm.read_rows() if ibm_rows is None else ibm_rows, behaviour
    )
    if not behaviours:
        raise ValueError("no IBM rows: nothing to draw payment delays from")

    sales: list[Sale] = []
    credits: list[Document] = []
    histories: dict[str, CustomerHistory] = {}
    for doc in docs:
        amount = doc.amount
        if amount <= 0:
            continue
        moment = doc.time
        history = histories.get(doc.customer_id)
        if history is None:
            history = histories[doc.customer_id] = CustomerHistory(
                doc.customer_id, moment, []
            )
        elif moment < history.first_seen:
            history.first_seen = moment
        if doc.is_credit_note:
            credits.append(doc)
            continue
        settle = settlement_draw(seed, doc.customer_id, doc.number, behaviours)
        history.invoice_amounts.append(amount)
        history.late += settle > PAYMENT_TERMS_DAYS
        due = moment.date() + dt.timedelta(days=PAYMENT_TERMS_DAYS)
        sales.append(Sale(doc, amount, due, settle))

    chosen = first_customers(histories.values(), customers)
    plan: list[PlanEntry] = []
    for cid, history in histories.items():
        if cid in chosen:
            data = profile_data(
                history,
                currency=CURRENCY,
                timezone=TIMEZONE,
                limit_rule=limit_rule,
                risk_rule=risk_rule,
                payment_terms_days=PAYMENT_TERMS_DAYS,
            )
            plan.append(
                (at(history.first_seen.date(), PROFILE_TIME, LONDON), "profile", data)
            )
    for sale in sales:
        if sale.doc.customer_id not in chosen:
            continue
        time = iso_utc(sale.doc.time)
        plan.append((time, "order", sale))
        plan.append((time, "invoice", sale))
        plan.append((payment_time(sale), "payment", sale))
    for doc in credits:
        if doc.customer_id in chosen:
            plan.append((iso_utc(doc.time), "credit_note", doc))
    if not plan:
        return
    first = min(entry[0] for entry in plan)
    last = max(entry[0] for entry in plan)
    plan.extend(
        clock_ticks(
            dt.date.fromisoformat(first[:10]),
            dt.date.fromisoformat(last[:10]) + dt.timedelta(days=1),
            SYNTHETIC_SOURCE,
        )
    )

    yield from render(plan, _BUILDERS)


def payment_time(sale: Sale) -> str:
    """08:00 London on the settlement day; an hour after the invoice if that is today."""
    invoiced = sale.doc.time
    if sale.days_to_settle == 0:
        return iso_utc(invoiced + SAME_DAY_PAYMENT_DELAY)
    day = invoiced.date() + dt.timedelta(days=sale.days_to_settle)
    return at(day, PAYMENT_TIME, LONDON)


# ---- envelopes --------------------------------------------------------------------


def _account(customer_id: str) -> dict[str, Any]:
    return {"company": COMPANY, "customer_id": customer_id}


def _profile(time: str, data: dict[str, Any]) -> Event:
    return envelope(
        SYNTHETIC_SOURCE,
        f"profile-{data['customer_id']}",
        "erp.credit_profile.set",
        time,
        data,
    )


def _order(time: str, sale: Sale) -> Event:
    doc = sale.doc
    data = _account(doc.customer_id) | {
        "order_id": f"SO{doc.number}",
        "amount": money(sale.amount),
        "currency": CURRENCY,
    }
    return envelope(SOURCE, f"order-{doc.number}", "erp.order.placed", time, data)


def _invoice(time: str, sale: Sale) -> Event:
    doc = sale.doc
    data = _account(doc.customer_id) | {
        "invoice_id": doc.number,
        "amount": money(sale.amount),
        "currency": CURRENCY,
        "due_date": sale.due_date.isoformat(),
        "order_id": f"SO{doc.number}",
        "synthetic_fields": ["due_date"],
    }
    return envelope(SOURCE, f"invoice-{doc.number}", "erp.invoice.issued", time, data)


def _payment(time: str, sale: Sale) -> Event:
    doc = sale.doc
    amount = money(sale.amount)
    data = _account(doc.customer_id) | {
        "payment_id": f"P{doc.number}",
        "amount": amount,
        "currency": CURRENCY,
        "allocations": [{"invoice_id": doc.number, "amount": amount}],
        "synthetic": True,
        "days_to_settle": sale.days_to_settle,
    }
    return envelope(
        SYNTHETIC_SOURCE, f"payment-{doc.number}", "erp.payment.received", time, data
    )


def _credit_note(time: str, doc: Document) -> Event:
    data = _account(doc.customer_id) | {
        "credit_note_id": doc.number,
        "amount": money(doc.amount),
        "currency": CURRENCY,
    }
    return envelope(
        SOURCE, f"credit-note-{doc.number}", "erp.credit_note.issued", time, data
    )


_BUILDERS: dict[str, Callable[[str, Any], Event]] = {
    "profile": _profile,
    "order": _order,
    "invoice": _invoice,
    "payment": _payment,
    "credit_note": _credit_note,
    "tick": tick_event,
}
