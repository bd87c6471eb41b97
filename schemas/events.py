"""The event contract: every input and output event as a pydantic v2 model.

Every event travels in a CloudEvents 1.0 envelope (structured JSON). Money is `Decimal`
from the wire to the ledger: amounts arrive as strings (numbers are read through their
decimal text by `parse_event_json`) and leave as strings rounded to the currency's minor
unit. Currency codes are checked against ISO 4217 through the `iso4217` package.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

import iso4217
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)


@lru_cache(maxsize=512)
def _known_currency(code: str) -> bool:
    try:
        iso4217.Currency(code)
    except ValueError:
        return False
    return True


def _check_currency(value: str) -> str:
    code = value.strip().upper()
    if not _known_currency(code):
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return code


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone name") from exc
    return value


def _decimal_text(value: Any) -> Any:
    # A JSON number that reached us as float is read through its shortest decimal text,
    # so 0.1 stays 0.1 instead of 0.1000000000000000055511151231257827.
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bool):
        raise ValueError("an amount must be a decimal number, not true/false")
    return value


CurrencyCode = Annotated[str, AfterValidator(_check_currency)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
# Bounds that no real document reaches and that keep every sum, conversion and rounding
# of the ledger inside the 28 significant digits of decimal arithmetic: without them one
# absurd amount would stop the account's partition.
MAX_AMOUNT = Decimal("1e15")
MIN_RATE, MAX_RATE = Decimal("1e-9"), Decimal("1e9")
Amount = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False,
          description="Decimal amount as a string, at most 10^15"),
]
Rate = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    Field(ge=MIN_RATE, le=MAX_RATE, allow_inf_nan=False,
          description="Exchange rate as a decimal string, from 10^-9 to 10^9"),
]
DocumentId = Annotated[str, Field(min_length=1, max_length=200)]

# Dates and times outside these years are typing errors in an ERP, and at the ends of the
# calendar (year 1, year 9999) a time zone or a year's window would run off it.
FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1), dt.date(2199, 12, 31)


def _check_date(value: dt.date) -> dt.date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"{value.isoformat()} is outside the dates this monitor accepts "
                         f"({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()})")
    return value


BusinessDate = Annotated[dt.date, AfterValidator(_check_date),
                         Field(description="a date from 1900-01-01 to 2199-12-31")]


class _Data(BaseModel):
    # ERPs add fields of their own; they are carried, never rejected.
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class _AccountData(_Data):
    company: Annotated[str, Field(min_length=1, max_length=100)] = "main"
    customer_id: Annotated[str, Field(min_length=1, max_length=200)]


# ---- input payloads ---------------------------------------------------------------


class CreditProfileSetData(_AccountData):
    currency: CurrencyCode
    credit_limit: Amount
    risk_class: Literal["A", "B", "C", "D", "auto"]
    valid_until: BusinessDate | None = None
    timezone: TimeZoneName = "UTC"
    blocked: bool = False
    payment_terms_days: Annotated[int, Field(ge=0, le=3650)] | None = None


class OrderPlacedData(_AccountData):
    order_id: DocumentId
    amount: Amount
    currency: CurrencyCode
    sold_to: str | None = None


class OrderAmendedData(_AccountData):
    order_id: DocumentId
    amount: Amount = Field(description="the order's new total, in the order's currency")


class OrderRefData(_AccountData):
    order_id: DocumentId


class DeliveryPostedData(_AccountData):
    delivery_id: DocumentId
    amount: Amount
    currency: CurrencyCode
    order_id: DocumentId | None = None


class InvoiceIssuedData(_AccountData):
    invoice_id: DocumentId
    amount: Amount
    currency: CurrencyCode
    due_date: BusinessDate
    order_id: DocumentId | None = None
    delivery_id: DocumentId | None = None


class InvoiceRefData(_AccountData):
    invoice_id: DocumentId


class InvoiceDisputedData(InvoiceRefData):
    reason: str | None = None


class CreditNoteIssuedData(_AccountData):
    credit_note_id: DocumentId
    amount: Amount = Field(description="positive: the credit given to the customer")
    currency: CurrencyCode
    invoice_id: DocumentId | None = None


class Allocation(_Data):
    invoice_id: DocumentId
    amount: Amount


class PaymentReceivedData(_AccountData):
    payment_id: DocumentId
    amount: Amount
    currency: CurrencyCode
    allocations: list[Allocation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _allocations_fit_payment(self) -> PaymentReceivedData:
        allocated = sum((a.amount for a in self.allocations), Decimal(0))
        if allocated > self.amount:
            raise ValueError(
                f"allocations add up to {allocated}, more than the payment's "
                f"{self.amount}"
            )
        return self


class PaymentAllocatedData(_AccountData):
    payment_id: DocumentId
    invoice_id: DocumentId
    amount: Amount


class PaymentReversedData(_AccountData):
    payment_id: DocumentId


class FxRateSetData(_Data):
    currency: CurrencyCode
    quote_currency: CurrencyCode
    rate: Rate

    @model_validator(mode="after")
    def _two_currencies(self) -> FxRateSetData:
        if self.currency == self.quote_currency:
            raise ValueError("a rate needs two different currencies")
        return self


class ReleaseOrderData(_AccountData):
    order_id: DocumentId
    by: Annotated[str, Field(min_length=1, max_length=200)]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class ClockTickData(_Data):
    pass


# ---- the envelope -------------------------------------------------------------------


class Envelope(BaseModel):
    """CloudEvents 1.0 attributes shared by every event, in and out."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=500)]
    source: Annotated[str, Field(min_length=1, max_length=500)]
    time: AwareDatetime = Field(description="business time with its UTC offset, from "
                                            "1900-01-01 to 2199-12-31")
    subject: str | None = None
    datacontenttype: str | None = None

    @field_validator("time")
    @classmethod
    def _in_utc(cls, value: dt.datetime) -> dt.datetime:
        # Checked on the UTC date and the local date alike: either could run off the
        # calendar in an account's time zone otherwise.
        _check_date(value.date())
        utc = value.astimezone(dt.timezone.utc)
        _check_date(utc.date())
        return utc


class CreditProfileSet(Envelope):
    type: Literal["erp.credit_profile.set"]
    data: CreditProfileSetData


class OrderPlaced(Envelope):
    type: Literal["erp.order.placed"]
    data: OrderPlacedData


class OrderAmended(Envelope):
    type: Literal["erp.order.amended"]
    data: OrderAmendedData


class OrderCancelled(Envelope):
    type: Literal["erp.order.cancelled"]
    data: OrderRefData


class OrderClosed(Envelope):
    type: Literal["erp.order.closed"]
    data: OrderRefData


class OrderReopened(Envelope):
    type: Literal["erp.order.reopened"]
    data: OrderRefData


class DeliveryPosted(Envelope):
    type: Literal["erp.delivery.posted"]
    data: DeliveryPostedData


class InvoiceIssued(Envelope):
    type: Literal["erp.invoice.issued"]
    data: InvoiceIssuedData


class InvoiceCancelled(Envelope):
    type: Literal["erp.invoice.cancelled"]
    data: InvoiceRefData


class CreditNoteIssued(Envelope):
    type: Literal["erp.credit_note.issued"]
    data: CreditNoteIssuedData


class PaymentReceived(Envelope):
    type: Literal["erp.payment.received"]
    data: PaymentReceivedData


class PaymentAllocated(Envelope):
    type: Literal["erp.payment.allocated"]
    data: PaymentAllocatedData


class PaymentReversed(Envelope):
    type: Literal["erp.payment.reversed"]
    data: PaymentReversedData


class InvoiceDisputed(Envelope):
    type: Literal["erp.invoice.disputed"]
    data: InvoiceDisputedData


class InvoiceDisputeResolved(Envelope):
    type: Literal["erp.invoice.dispute_resolved"]
    data: InvoiceRefData


class FxRateSet(Envelope):
    type: Literal["fx.rate.set"]
    data: FxRateSetData


class ReleaseOrderCommanded(Envelope):
    type: Literal["credit.command.release_order"]
    data: ReleaseOrderData


class ClockTicked(Envelope):
    type: Literal["clock.tick"]
    data: ClockTickData = Field(default_factory=ClockTickData)


AccountEvent = Union[
    CreditProfileSet,
    OrderPlaced,
    OrderAmended,
    OrderCancelled,
    OrderClosed,
    OrderReopened,
    DeliveryPosted,
    InvoiceIssued,
    InvoiceCancelled,
    CreditNoteIssued,
    PaymentReceived,
    PaymentAllocated,
    PaymentReversed,
    InvoiceDisputed,
    InvoiceDisputeResolved,
    ReleaseOrderCommanded,
]
InputEvent = Annotated[
    Union[AccountEvent, FxRateSet, ClockTicked], Field(discriminator="type")
]
INPUT_TYPES: dict[str, type[Envelope]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # type: ignore[union-attr,unused-ignore]
    for cls in (*AccountEvent.__args__, FxRateSet, ClockTicked)  # type: ignore[attr-defined]
}
ACCOUNT_EVENT_TYPES = frozenset(INPUT_TYPES) - {"fx.rate.set", "clock.tick"}


# ---- output payloads ----------------------------------------------------------------

Money = Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$", description="decimal string")]


class Reason(BaseModel):
    """Why a rule fired, with the numbers that made it fire."""

    model_config = ConfigDict(frozen=True)
    code: str
    detail: str
    values: dict[str, Any]


class OrderApprovedData(BaseModel):
    account: str
    company: str
    customer_id: str
    order_id: str
    amount: Money
    currency: str
    exposure_after: Money
    limit: Money | None
    reasons: list[Reason] = Field(default_factory=list)


class OrderBlockedData(BaseModel):
    account: str
    company: str
    customer_id: str
    order_id: str
    amount: Money
    currency: str
    reasons: list[Reason]


class OrderReleasedData(BaseModel):
    account: str
    company: str
    customer_id: str
    order_id: str
    amount: Money
    currency: str
    by: str
    reason: str


class StatusChangedData(BaseModel):
    account: str
    company: str
    customer_id: str
    status: Literal["OK", "WARNING", "HOLD"]
    previous_status: Literal["OK", "WARNING", "HOLD"]
    reasons: list[Reason]


class ExposureFigures(BaseModel):
    open_orders: Money
    uninvoiced_deliveries: Money
    open_receivables: Money
    unapplied_credit: Money
    total: Money


class OverdueFigures(BaseModel):
    amount: Money
    oldest_days: int
    buckets: dict[Literal["1-30", "31-60", "61-90", "90+"], Money]


class BlockedOrder(BaseModel):
    order_id: str
    amount: Money
    currency: str
    reasons: list[Reason]
    blocked_at: str


class ScoreFactor(BaseModel):
    name: Literal["payment_history", "overdue", "utilization", "tenure", "disputes",
                  "reversals", "credit_notes"]
    weight: Money
    fraction: Money = Field(description="0 (worst) to 1 (best); points = fraction x weight")
    points: Money
    inputs: dict[str, Any] = Field(description="every figure the fraction was computed from")


class ScoreView(BaseModel):
    """CONTRACT 10: the score is the sum of the factors' points."""

    score: Money
    grade: Literal["A", "B", "C", "D"]
    factors: list[ScoreFactor]
    recommended_limit: Money | None
    recommended_limit_figures: dict[str, Any]


class SnapshotData(BaseModel):
    company: str
    customer_id: str
    currency: str | None
    risk_class: str | None
    credit_limit: Money | None
    effective_limit: Money | None
    status: Literal["OK", "WARNING", "HOLD"]
    reasons: list[Reason]
    exposure: ExposureFigures
    available_credit: Money | None
    utilization: Money | None
    overdue: OverdueFigures
    blocked_orders: list[BlockedOrder]
    unconverted: list[dict[str, Any]]
    rates_used: list[dict[str, Any]]
    documents: dict[str, list[dict[str, Any]]]
    pending_events: int
    score: ScoreView | None = None
    as_of: str | None


class GradeChangedData(BaseModel):
    account: str
    company: str
    customer_id: str
    grade: Literal["A", "B", "C", "D"]
    previous_grade: Literal["A", "B", "C", "D"]
    score: Money
    factors: list[dict[str, Any]] = Field(description="name, weight and points of each")


class LimitReviewSuggestedData(BaseModel):
    account: str
    company: str
    customer_id: str
    credit_limit: Money
    recommended_limit: Money
    currency: str | None
    difference: Money = Field(description="(recommended - limit) / limit")
    grade: Literal["A", "B", "C", "D"]
    score: Money
    figures: dict[str, Any] = Field(description="what the recommendation was computed from")


class EventRejectedData(BaseModel):
    error: str
    event: Any = Field(description="the original event, parsed if it was JSON, else text")
    origin: dict[str, Any] = Field(
        description="where it came from: topic, partition and offset, or file and line"
    )


class _Output(Envelope):
    time: AwareDatetime | None = Field(  # type: ignore[assignment]
        default=None, description="business time of the cause; absent when unknown"
    )
    causationid: str | None = Field(
        default=None, description="id of the input event that caused this output"
    )


class OrderApproved(_Output):
    type: Literal["credit.order.approved"]
    data: OrderApprovedData


class OrderBlocked(_Output):
    type: Literal["credit.order.blocked"]
    data: OrderBlockedData


class OrderReleased(_Output):
    type: Literal["credit.order.released"]
    data: OrderReleasedData


class AccountStatusChanged(_Output):
    type: Literal["credit.account.status_changed"]
    data: StatusChangedData


class AccountGradeChanged(_Output):
    """The account's credit grade changed."""

    type: Literal["credit.account.grade_changed"]
    data: GradeChangedData


class LimitReviewSuggested(_Output):
    """The recommended credit limit is far from the one set in the ERP."""

    type: Literal["credit.limit.review_suggested"]
    data: LimitReviewSuggestedData


class AccountSnapshot(_Output):
    type: Literal["credit.account.snapshot"]
    data: SnapshotData


class EventRejected(_Output):
    type: Literal["credit.event.rejected"]
    data: EventRejectedData


OutputEvent = Annotated[
    Union[
        OrderApproved,
        OrderBlocked,
        OrderReleased,
        AccountStatusChanged,
        AccountGradeChanged,
        LimitReviewSuggested,
        AccountSnapshot,
        EventRejected,
    ],
    Field(discriminator="type"),
]

input_adapter: TypeAdapter[Any] = TypeAdapter(InputEvent)
output_adapter: TypeAdapter[Any] = TypeAdapter(OutputEvent)
