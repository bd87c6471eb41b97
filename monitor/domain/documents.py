"""The documents a credit account holds: orders, deliveries, invoices, credit notes,
payments and the allocations that tie money to invoices.

Documents record facts only (amounts, references, states). What is open, consumed,
applied or overdue is never stored: `position.compute_position` derives it from these
facts every time, so cancelling, reversing or re-delivering a document cannot leave a
stale counter behind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from .money import ZERO

OrderState = Literal["open", "closed", "cancelled"]


@dataclass(slots=True)
class Order:
    """A sales order. `held` is the part not (yet) approved by the gate."""

    order_id: str
    amount: Decimal
    currency: str
    seq: int
    placed_at: dt.datetime
    changed_at: dt.datetime
    state: OrderState = "open"
    held: Decimal = ZERO
    block_code: str | None = None
    block_reason: dict[str, Any] | None = None
    blocked_at: dt.datetime | None = None
    block_seq: int = 0

    @property
    def is_blocked(self) -> bool:
        return self.state == "open" and self.held > 0


@dataclass(slots=True)
class Delivery:
    delivery_id: str
    amount: Decimal
    currency: str
    seq: int
    order_id: str | None
    changed_at: dt.datetime


@dataclass(slots=True)
class Invoice:
    invoice_id: str
    amount: Decimal
    currency: str
    due_date: dt.date
    seq: int
    issued_at: dt.datetime
    changed_at: dt.datetime
    order_id: str | None = None
    delivery_id: str | None = None
    cancelled: bool = False
    disputed: bool = False
    settled_on: dt.date | None = None
    """local date on which it was last seen paid in full (for the credit score)"""


@dataclass(slots=True)
class MoneyAllocation:
    """Part of a payment or credit note applied to an invoice, in the payer's currency."""

    invoice_id: str
    amount: Decimal
    seq: int


@dataclass(slots=True)
class Payment:
    payment_id: str
    amount: Decimal
    currency: str
    seq: int
    received_at: dt.datetime
    changed_at: dt.datetime
    allocations: list[MoneyAllocation] = field(default_factory=list)
    reversed: bool = False

    def allocated(self) -> Decimal:
        return sum((a.amount for a in self.allocations), ZERO)


@dataclass(slots=True)
class CreditNote:
    credit_note_id: str
    amount: Decimal
    currency: str
    seq: int
    issued_at: dt.datetime
    changed_at: dt.datetime
    invoice_id: str | None = None


@dataclass(slots=True)
class Profile:
    """The credit profile the ERP set for the account."""

    currency: str
    credit_limit: Decimal
    risk_class: str
    valid_until: dt.date | None
    timezone: str
    blocked: bool
    payment_terms_days: int | None
