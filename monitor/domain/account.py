"""The credit account: applies one event, gates orders, keeps its status (CONTRACT 4-8).

An `Account` holds the documents of one `(company, customer_id)`. `CreditEngine` in
`engine.py` routes events to it, keeps the idempotency keys and wraps its decisions in
envelopes; everything that decides credit happens here and in `position.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from schemas import events as ev

from .decisions import (
    AUTO_RELEASABLE,
    AllocationExceedsPayment,
    AllocationOfReversedPayment,
    Decision,
    DuplicateDocument,
    EventRejected,
    OrderNotBlocked,
    Status,
    UnknownDocument,
    codes,
    reason,
)
from .documents import (
    CreditNote,
    Delivery,
    Invoice,
    MoneyAllocation,
    Order,
    Payment,
    Profile,
)
from .fx import FxBook
from .money import ZERO, plain, quantized, report
from .policy import Policy, Thresholds
from .position import BUCKETS, Position, compute_position
from .score import Score, ScoreInputs, Settlement, compute_score

UTC = dt.UTC
_UNSET = object()


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(slots=True)
class Context:
    """What every account of one partition (or of the evaluator) shares."""

    policy: Policy
    fx: FxBook
    clock: dt.datetime | None = None
    retention: dt.timedelta = dt.timedelta(days=7)
    seen: dict[str, dt.datetime] = field(default_factory=dict)
    """idempotency keys of the FX rates applied, with the clock then (oldest first)"""


@dataclass(slots=True)
class Assessment:
    """The account's position and the status it earns at `as_of`."""

    position: Position
    status: Status
    reasons: list[dict[str, Any]]
    thresholds: Thresholds
    today: dt.date
    effective_limit: Decimal | None
    wake: object = None
    score: Score | None = None


@dataclass(slots=True)
class Pending:
    """An event that refers to a document not seen yet, kept until it arrives."""

    waits_for: tuple[str, str]
    time: dt.datetime
    seq: int
    event: Any


@dataclass(slots=True)
class Account:
    company: str
    customer_id: str
    profile: Profile | None = None
    currency: str | None = None
    last_time: dt.datetime | None = None
    status: Status = "OK"
    reasons: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    credit_notes: dict[str, CreditNote] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    seen: dict[str, dt.datetime] = field(default_factory=dict)
    seq: int = 0
    wake_at: dt.datetime | None = None
    next_prune_at: dt.datetime | None = None
    overdue: bool = False
    # What the credit score needs beyond the documents, which are forgotten once done:
    first_time: dt.datetime | None = None
    settlements: list[Settlement] = field(default_factory=list)
    """invoices paid in full, oldest first, the last SETTLEMENTS_KEPT"""
    months: dict[str, dict[str, list[Decimal]]] = field(default_factory=dict)
    """"YYYY-MM" -> currency -> [invoiced, credited], the last MONTHS_KEPT months"""
    reversal_days: list[dt.date] = field(default_factory=list)
    grade: str | None = None
    last_review: Decimal | None = None
    """the recommended limit last suggested for review, while it stays far off"""
    record: int | None = None
    """the input position (Kafka offset, file line) of the last record that changed the
    account: a record at or before it is already part of the account. A restarted
    worker can restore an account newer than the partition's clock (a crash cut the
    changelog between the two) and then reads clock ticks and rates again that this
    account has already been through; it must leave such an account alone."""
    # Every change bumps `rev`; an assessment is reused while nothing it depends on
    # (documents, status, rates, local date) has changed.
    rev: int = field(default=0, compare=False, repr=False)
    _assessed: tuple[tuple[Any, ...], Assessment] | None = field(
        default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.company}/{self.customer_id}"

    def as_of(self, ctx: Context) -> dt.datetime | None:
        if ctx.clock is None or (self.last_time is not None and self.last_time > ctx.clock):
            return self.last_time
        return ctx.clock

    # ---- applying one event -------------------------------------------------------

    def handle(self, event: Any, ctx: Context) -> list[Decision]:
        """Apply one account event and return what it decides, in contract order.

        Steps:
        1. check and apply the event (raises `EventRejected` before changing anything);
           order-gate decisions are collected as it goes;
        2. apply events that were waiting for a document this event brought;
        3. re-assess the status, release blocked orders that now fit, re-assess again.
        """
        gate: list[Decision] = []
        self._apply(event, ctx, gate)

        self._apply_pending(ctx, gate)

        return gate + self.settle(ctx)

    def settle(self, ctx: Context) -> list[Decision]:
        """Status change, releases, and the status change the releases cause.

        An account known only from rejected events has accepted nothing: it is not
        judged (no status of its own) until its first accepted event, whatever else
        is re-assessed meanwhile."""
        out: list[Decision] = []
        if self.last_time is None:
            return out
        assessment = self.assess(ctx)
        if self._track_settlements(assessment):
            assessment = self.assess(ctx)
        self._record_status(assessment, out)
        if self._release_blocked(ctx, assessment, out):
            assessment = self.assess(ctx)
            self._record_status(assessment, out)
        self._record_grade(assessment, ctx, out)
        if assessment.wake is _UNSET:
            assessment.wake = self._next_wake(assessment)
        self.wake_at = assessment.wake  # type: ignore[assignment]
        self.overdue = assessment.position.overdue_amount > 0
        return out

    def _apply(self, event: Any, ctx: Context, gate: list[Decision]) -> None:
        handler = _HANDLERS[event.type]
        handler(self, event, ctx, gate)

    def _advance(self, time: dt.datetime) -> int:
        if self.last_time is None or time > self.last_time:
            self.last_time = time
        if self.first_time is None or time < self.first_time:
            self.first_time = time
        self.seq += 1
        self.rev += 1
        return self.seq

    def _timezone(self) -> str:
        return self.profile.timezone if self.profile else "UTC"

    def _add_volume(self, time: dt.datetime, currency: str, column: int,
                    amount: Decimal) -> None:
        """Invoiced (column 0) or credited (1) in the local month of `time`."""
        month = _local_date(time, self._timezone()).isoformat()[:7]
        sums = self.months.setdefault(month, {}).setdefault(currency, [ZERO, ZERO])
        sums[column] += amount

    def _adopt_currency(self, currency: str) -> None:
        if self.currency is None:
            self.currency = currency  # an account without a profile reports in it

    def _pend(self, kind: str, doc_id: str, event: Any) -> None:
        self._advance(event.time)
        self.pending.append(Pending((kind, doc_id), event.time, self.seq, event))

    def _apply_pending(self, ctx: Context, gate: list[Decision]) -> None:
        while True:
            ready = [p for p in self.pending if self._has(*p.waits_for)]
            if not ready:
                return
            ready.sort(key=lambda p: (p.time, p.seq))
            first = ready[0]
            self.pending.remove(first)
            try:
                self._apply(first.event, ctx, gate)
            except EventRejected as exc:
                gate.append(_late_rejection(first.event, str(exc)))

    def _has(self, kind: str, doc_id: str) -> bool:
        if kind == "order":
            return doc_id in self.orders
        if kind == "invoice":
            return doc_id in self.invoices
        return doc_id in self.payments

    # ---- handlers, one per input type --------------------------------------------

    def _on_profile(self, e: ev.CreditProfileSet, ctx: Context, gate: list[Decision]) -> None:
        d = e.data
        self._advance(e.time)
        self.profile = Profile(
            currency=d.currency,
            credit_limit=d.credit_limit,
            risk_class=d.risk_class,
            valid_until=d.valid_until,
            timezone=d.timezone,
            blocked=d.blocked,
            payment_terms_days=d.payment_terms_days,
        )
        self.currency = d.currency

    def _on_order_placed(self, e: ev.OrderPlaced, ctx: Context, gate: list[Decision]) -> None:
        d = e.data
        if d.order_id in self.orders:
            raise DuplicateDocument(
                f"order {d.order_id} already exists in account {self.key}; "
                "send erp.order.amended to change it"
            )
        pre = self._pre_gate(e.time, ctx)
        seq = self._advance(e.time)
        self._adopt_currency(d.currency)
        order = Order(
            order_id=d.order_id,
            amount=d.amount,
            currency=d.currency,
            seq=seq,
            placed_at=e.time,
            changed_at=e.time,
            held=d.amount,
        )
        self.orders[d.order_id] = order
        gate.append(self._gate(order, d.amount, pre, ctx, e.time))

    def _on_order_amended(self, e: ev.OrderAmended, ctx: Context, gate: list[Decision]) -> None:
        d = e.data
        order = self.orders.get(d.order_id)
        if order is None:
            self._pend("order", d.order_id, e)
            return
        pre = self._pre_gate(e.time, ctx)
        self._advance(e.time)
        change = d.amount - order.amount
        order.amount = d.amount
        order.changed_at = e.time
        if order.state != "open" or change == 0:
            return
        if change < 0:
            # A lower order never waits: the cut comes off the part still held first.
            order.held = max(ZERO, order.held + change)
            order.held = min(order.held, order.amount)
            return
        if order.held > 0:
            order.held += change  # the order is still waiting; the raise waits with it
            return
        order.held = change
        gate.append(self._gate(order, change, pre, ctx, e.time))

    def _on_order_state(self, e: Any, ctx: Context, gate: list[Decision]) -> None:
        d = e.data
        order = self.orders.get(d.order_id)
        if order is None:
            self._pend("order", d.order_id, e)
            return
        if e.type == "erp.order.reopened":
            if order.state == "open":
                self._advance(e.time)
                return  # nothing to reopen
            pre = self._pre_gate(e.time, ctx)
            self._advance(e.time)
            order.state = "open"
            order.changed_at = e.time
            # Reopening brings the value back: it passes the same gate as a new order.
            order.held = order.amount
            gate.append(self._gate(order, order.amount, pre, ctx, e.time))
            return
        self._advance(e.time)
        order.state = "cancelled" if e.type == "erp.order.cancelled" else "closed"
        order.held = ZERO
        order.changed_at = e.time

    def _on_delivery(self, e: ev.DeliveryPosted, ctx: Context, gate: list[Decision]) -> None:
        d = e.data
        if d.delivery_id in self.deliveries:
            raise DuplicateDocument(
                f"delivery {d.delivery_id} already exists in account {self.key}"
            )
        seq = self._advance(e.time)
        self._adopt_currency(d.currency)
        self.deliveries[d.delivery_id] = Delivery(
            d.delivery_id, d.amount, d.currency, seq, d.order_id, e.time
        )

    def _on_invoice(self, e: ev.InvoiceIssued, ctx: Context, gate: list[Decision]) -> None:
        d = e.data
        if d.invoice_id in self.invoices:
            raise DuplicateDocument(
                f"invoice {d.invoice_id} already exists in account {self.key}; "
                "cancel it and issue a new number to change it"
            )
        seq = self._advance(e.time)
        self._adopt_currency(d.currency)
        self.invoices[d.invoice_id] = Invoice(
            invoice_id=d.invoice_id,
            amount=d.amount,
            currency=d.currency,
            due_date=d.due_date,
            seq=seq,
            issued_at=e.time,
            changed_at=e.time,
            order_id=d.order_id,
            delivery_id=d.delivery_id,
        )
        self._add_volume(e.time, d.currency, 0, d.amount)
        order_id = d.order_id
        if order_id is None and d.delivery_id in self.deliveries:
            order_id = self.deliveries[d.delivery_id].order_id
        order = self.orders.get(order_id) if order_id is not None else None
        if order is not None and order.held > 0:
            # The goods were invoiced anyway: the order counts like an approved one.
            order.held = ZERO
            order.changed_at = e.time

    def _on_invoice_cancelled(
        self, e: ev.InvoiceCancelled, ctx: Context, gate: list[Decision]
    ) -> None:
        inv = self.invoices.get(e.data.invoice_id)
        if inv is None:
            self._pend("invoice", e.data.invoice_id, e)
            return
        self._advance(e.time)
        if not inv.cancelled:
            self._add_volume(inv.issued_at, inv.currency, 0, -inv.amount)
        inv.cancelled = True
        inv.changed_at = e.time

    def _on_dispute(self, e: Any, ctx: Context, gate: list[Decision]) -> None:
        inv = self.invoices.get(e.data.invoice_id)
        if inv is None:
            self._pend("invoice", e.data.invoice_id, e)
            return
        self._advance(e.time)
        inv.disputed = e.type == "erp.invoice.disputed"
        inv.changed_at = e.time

    def _on_credit_note(
        self, e: ev.CreditNoteIssued, ctx: Context, gate: list[Decision]
    ) -> None:
        d = e.data
        if d.credit_note_id in self.credit_notes:
            raise DuplicateDocument(
                f"credit note {d.credit_note_id} already exists in account {self.key}"
            )
        seq = self._advance(e.time)
        self._adopt_currency(d.currency)
        self.credit_notes[d.credit_note_id] = CreditNote(
            d.credit_note_id, d.amount, d.currency, seq, e.time, e.time, d.invoice_id
        )
        self._add_volume(e.time, d.currency, 1, d.amount)

    def _on_payment(self, e: ev.PaymentReceived, ctx: Context, gate: list[Decision]) -> None:
        d = e.data
        if d.payment_id in self.payments:
            raise DuplicateDocument(
                f"payment {d.payment_id} already exists in account {self.key}"
            )
        seq = self._advance(e.time)
        self._adopt_currency(d.currency)
        self.payments[d.payment_id] = Payment(
            payment_id=d.payment_id,
            amount=d.amount,
            currency=d.currency,
            seq=seq,
            received_at=e.time,
            changed_at=e.time,
            allocations=[MoneyAllocation(a.invoice_id, a.amount, seq) for a in d.allocations],
        )

    def _on_allocation(
        self, e: ev.PaymentAllocated, ctx: Context, gate: list[Decision]
    ) -> None:
        d = e.data
        pay = self.payments.get(d.payment_id)
        if pay is None:
            self._pend("payment", d.payment_id, e)
            return
        if pay.reversed:
            raise AllocationOfReversedPayment(
                f"payment {d.payment_id} was reversed; its money cannot be allocated"
            )
        allocated = pay.allocated() + d.amount
        if allocated > pay.amount:
            raise AllocationExceedsPayment(
                f"allocations of payment {d.payment_id} would add up to {allocated}, "
                f"more than its amount {pay.amount} {pay.currency}"
            )
        seq = self._advance(e.time)
        pay.allocations.append(MoneyAllocation(d.invoice_id, d.amount, seq))
        pay.changed_at = e.time

    def _on_reversal(self, e: ev.PaymentReversed, ctx: Context, gate: list[Decision]) -> None:
        pay = self.payments.get(e.data.payment_id)
        if pay is None:
            self._pend("payment", e.data.payment_id, e)
            return
        self._advance(e.time)
        if not pay.reversed:
            self.reversal_days.append(_local_date(e.time, self._timezone()))
        pay.reversed = True
        pay.changed_at = e.time

    def _on_release(
        self, e: ev.ReleaseOrderCommanded, ctx: Context, gate: list[Decision]
    ) -> None:
        d = e.data
        order = self.orders.get(d.order_id)
        if order is None:
            raise UnknownDocument(
                f"order {d.order_id} is not known in account {self.key}; nothing to release"
            )
        if not order.is_blocked:
            raise OrderNotBlocked(
                f"order {d.order_id} of account {self.key} is not blocked; "
                "nothing to release"
            )
        self._advance(e.time)
        gate.append(self._release(order, by=d.by, why=d.reason, time=e.time))

    # ---- the order gate -----------------------------------------------------------

    def _pre_gate(self, time: dt.datetime, ctx: Context) -> Assessment:
        """The account as it stands when the order arrives, at the order's time."""
        saved = self.last_time
        if saved is None or time > saved:
            self.last_time = time
        try:
            return self.assess(ctx)
        finally:
            self.last_time = saved

    def _gate(
        self,
        order: Order,
        checked: Decimal,
        pre: Assessment,
        ctx: Context,
        time: dt.datetime,
    ) -> Decision:
        """Approve or block `checked` (the order, or its raise), first rule wins.

        `order.held` equals `checked` on entry; approval clears it.
        """
        th = pre.thresholds
        account_currency = self.currency or order.currency
        in_account = ctx.fx.convert(checked, order.currency, account_currency)
        total_in_account = ctx.fx.convert(order.amount, order.currency, account_currency)

        if self.profile is None and th.on_missing_profile == "block":
            return self._block(order, checked, time, reason(
                "NO_CREDIT_PROFILE",
                f"account {self.key} has no credit profile; orders wait until one is set",
            ))
        if pre.status == "HOLD":
            return self._block(order, checked, time, reason(
                "ACCOUNT_ON_HOLD",
                "the account is on credit hold: " + ", ".join(codes(pre.reasons)),
                account_reasons=list(codes(pre.reasons)),
            ))
        if in_account is None or total_in_account is None:
            return self._block(order, checked, time, reason(
                "FX_RATE_MISSING",
                f"no exchange rate from {order.currency} into {account_currency}",
                currency=order.currency,
                account_currency=account_currency,
            ))
        if th.max_order_amount is not None and total_in_account > th.max_order_amount:
            return self._block(order, checked, time, reason(
                "APPROVAL_REQUIRED",
                f"order of {report(total_in_account, account_currency)} "
                f"{account_currency} is above the {report(th.max_order_amount, account_currency)} "
                "that may pass without approval",
                amount=report(total_in_account, account_currency),
                max_order_amount=report(th.max_order_amount, account_currency),
            ))

        order.held = ZERO
        self.rev += 1
        after = self.assess(ctx)
        exposure_after = after.position.total
        limit = pre.effective_limit
        if limit is not None and self.profile is not None:
            block_at = limit * th.block_utilization
            if exposure_after > block_at:
                order.held = checked
                self.rev += 1
                before = pre.position.total
                return self._block(order, checked, time, reason(
                    "LIMIT_EXCEEDED",
                    f"exposure would be {report(exposure_after, account_currency)} "
                    f"{account_currency}, above {report(block_at, account_currency)} "
                    f"({plain(th.block_utilization * 100)}% of the limit "
                    f"{report(limit, account_currency)})",
                    exposure=report(before, account_currency),
                    amount=report(in_account, account_currency),
                    exposure_after=report(exposure_after, account_currency),
                    limit=report(limit, account_currency),
                    block_utilization=plain(th.block_utilization),
                ))
        order.block_code = None
        order.block_reason = None
        order.blocked_at = None
        return Decision("credit.order.approved", {
            **self._ids(),
            "order_id": order.order_id,
            "amount": report(checked, order.currency),
            "currency": order.currency,
            "exposure_after": report(exposure_after, account_currency),
            "limit": None if limit is None else report(limit, account_currency),
        })

    def _block(
        self, order: Order, checked: Decimal, time: dt.datetime, why: dict[str, Any]
    ) -> Decision:
        self.seq += 1
        self.rev += 1
        order.held = checked if order.held == 0 else order.held
        order.block_code = why["code"]
        order.block_reason = why
        order.blocked_at = time
        order.block_seq = self.seq
        return Decision("credit.order.blocked", {
            **self._ids(),
            "order_id": order.order_id,
            "amount": report(checked, order.currency),
            "currency": order.currency,
            "reasons": [why],
        })

    def _release(self, order: Order, *, by: str, why: str, time: dt.datetime) -> Decision:
        amount = order.held
        order.held = ZERO
        self.rev += 1
        order.block_code = None
        order.block_reason = None
        order.blocked_at = None
        order.changed_at = time
        return Decision("credit.order.released", {
            **self._ids(),
            "order_id": order.order_id,
            "amount": report(amount, order.currency),
            "currency": order.currency,
            "by": by,
            "reason": why,
        })

    def _release_blocked(
        self, ctx: Context, assessment: Assessment, out: list[Decision]
    ) -> bool:
        """Release, oldest first, blocked orders that now pass rules 2, 3 and 5."""
        if assessment.status == "HOLD":
            return False
        waiting = sorted(
            (o for o in self.orders.values() if o.is_blocked and o.block_code in AUTO_RELEASABLE),
            key=lambda o: o.block_seq,
        )
        if not waiting:
            return False
        released = False
        time = self.as_of(ctx) or dt.datetime.min.replace(tzinfo=UTC)
        th = assessment.thresholds
        for order in waiting:
            account_currency = self.currency or order.currency
            if ctx.fx.quote(order.currency, account_currency) is None and (
                order.currency != account_currency
            ):
                continue
            held = order.held
            order.held = ZERO
            self.rev += 1
            after = self.assess(ctx).position.total
            order.held = held
            self.rev += 1
            limit = assessment.effective_limit
            if limit is not None and self.profile is not None:
                if after > limit * th.block_utilization:
                    continue
            out.append(self._release(
                order,
                by="auto",
                why=(
                    f"fits again: exposure after release "
                    f"{report(after, account_currency)} {account_currency}"
                    + (
                        ""
                        if limit is None or self.profile is None
                        else f" within {report(limit * th.block_utilization, account_currency)}"
                    )
                ),
                time=time,
            ))
            released = True
        return released

    # ---- status ------------------------------------------------------------------

    def assess(self, ctx: Context) -> Assessment:
        """The position and the status rules that fire at `as_of` (CONTRACT 7)."""
        today = _local_date(self.as_of(ctx), self.profile.timezone if self.profile else "UTC")
        key = (self.rev, today, self.status, codes(self.reasons), id(ctx.policy),
               id(ctx.fx), ctx.fx.version)
        cached = self._assessed
        if cached is not None and cached[0] == key:
            return cached[1]
        assessment = self._assess(ctx, today)
        self._assessed = (key, assessment)
        return assessment

    def _assess(self, ctx: Context, today: dt.date) -> Assessment:
        profile = self.profile
        limit: Decimal | None = None
        if profile is not None:
            expired = profile.valid_until is not None and today > profile.valid_until
            limit = ZERO if expired else profile.credit_limit
        risk = profile.risk_class if profile else None
        th = ctx.policy.for_class(None if risk == "auto" else risk)
        pos = self._position(ctx, today, th.grace_days)
        score = self._score(ctx, pos, today, limit)
        if risk == "auto":
            # The grade chooses the thresholds; the score itself is computed with the
            # default grace days, so it does not depend on what it chooses.
            graded = ctx.policy.for_class("auto", score.grade)
            if graded.grace_days != th.grace_days:
                pos = self._position(ctx, today, graded.grace_days)
            th = graded
        assessment = self._judge(today, th, pos)
        assessment.score = score
        return assessment

    def _position(self, ctx: Context, today: dt.date, grace_days: int) -> Position:
        return compute_position(
            currency=self.currency,
            orders=self.orders,
            deliveries=self.deliveries,
            invoices=self.invoices,
            payments=self.payments,
            credit_notes=self.credit_notes,
            fx=ctx.fx,
            today=today,
            grace_days=grace_days,
        )

    def _judge(self, today: dt.date, th: Thresholds, pos: Position) -> Assessment:
        profile = self.profile
        cur = self.currency
        exposure = pos.total
        hold: list[dict[str, Any]] = []
        warn: list[dict[str, Any]] = []
        limit: Decimal | None = None

        if profile is None:
            if th.on_missing_profile == "block":
                hold.append(reason(
                    "NO_CREDIT_PROFILE", f"account {self.key} has no credit profile"
                ))
        else:
            expired = profile.valid_until is not None and today > profile.valid_until
            limit = ZERO if expired else profile.credit_limit
            if profile.blocked:
                hold.append(reason("MANUAL_BLOCK", "blocked in the ERP credit profile"))
            block_at = limit * th.block_utilization
            release_at = limit * th.release_utilization
            was_limit_hold = self.status == "HOLD" and any(
                r["code"] == "LIMIT_EXCEEDED" for r in self.reasons
            )
            if exposure > block_at:
                hold.append(reason(
                    "LIMIT_EXCEEDED",
                    f"exposure {report(exposure, cur)} {cur} is above "
                    f"{report(block_at, cur)} ({plain(th.block_utilization * 100)}% of the "
                    f"limit {report(limit, cur)})",
                    exposure=report(exposure, cur),
                    limit=report(limit, cur),
                    block_utilization=plain(th.block_utilization),
                ))
            elif was_limit_hold and exposure > release_at:
                hold.append(reason(
                    "LIMIT_EXCEEDED",
                    f"exposure {report(exposure, cur)} {cur} has not yet come down to "
                    f"{report(release_at, cur)} ({plain(th.release_utilization * 100)}% of "
                    f"the limit {report(limit, cur)}) that ends a limit hold",
                    exposure=report(exposure, cur),
                    limit=report(limit, cur),
                    release_utilization=plain(th.release_utilization),
                ))
            if expired:
                hold.append(reason(
                    "LIMIT_EXPIRED",
                    f"the credit limit was valid until {profile.valid_until}",
                    valid_until=str(profile.valid_until),
                    today=str(today),
                ))
        overdue_counts = (
            pos.oldest_overdue_days > 0 and pos.overdue_amount >= th.overdue_min_amount
        )
        if overdue_counts and pos.oldest_overdue_days >= th.hold_overdue_days:
            hold.append(self._overdue_reason(pos, th.hold_overdue_days, cur))

        if hold:
            return Assessment(pos, "HOLD", hold, th, today, limit, _UNSET)

        if profile is not None and limit is not None:
            if exposure > 0 and exposure >= limit * th.warn_utilization:
                warn.append(reason(
                    "UTILIZATION_HIGH",
                    f"exposure is {_percent(exposure, limit)} of the limit",
                    exposure=report(exposure, cur),
                    limit=report(limit, cur),
                    warn_at=plain(th.warn_utilization),
                ))
        if overdue_counts and pos.oldest_overdue_days >= th.warn_overdue_days:
            warn.append(self._overdue_reason(pos, th.warn_overdue_days, cur))
        if profile is not None and profile.valid_until is not None:
            days_left = (profile.valid_until - today).days
            if days_left <= th.warn_expiry_days:
                warn.append(reason(
                    "LIMIT_EXPIRING",
                    f"the credit limit expires on {profile.valid_until}, in {days_left} days",
                    valid_until=str(profile.valid_until),
                    days_left=days_left,
                    warn_expiry_days=th.warn_expiry_days,
                ))
        if pos.unconverted:
            missing = pos.missing_fx
            warn.append(reason(
                "FX_RATE_MISSING",
                f"no exchange rate from {', '.join(missing)} into {cur}",
                currencies=missing,
                account_currency=cur,
            ))
        return Assessment(pos, "WARNING" if warn else "OK", warn, th, today, limit, _UNSET)

    @staticmethod
    def _overdue_reason(pos: Position, threshold: int, cur: str | None) -> dict[str, Any]:
        return reason(
            "OVERDUE",
            f"{report(pos.overdue_amount, cur)} {cur} overdue, the oldest for "
            f"{pos.oldest_overdue_days} days (threshold {threshold} days)",
            overdue_amount=report(pos.overdue_amount, cur),
            oldest_days=pos.oldest_overdue_days,
            threshold_days=threshold,
        )

    def _record_status(self, a: Assessment, out: list[Decision]) -> None:
        # The reasons kept are those of the last change: their figures (overdue days)
        # move with the clock, and an account must not change without a decision or a
        # new event, or what a tick did to it would exist only in memory. Views show
        # the current assessment's reasons.
        changed = a.status != self.status or codes(a.reasons) != codes(self.reasons)
        previous = self.status
        if changed:
            self.status = a.status
            self.reasons = a.reasons
            out.append(Decision("credit.account.status_changed", {
                **self._ids(),
                "status": a.status,
                "previous_status": previous,
                "reasons": a.reasons,
            }))

    def _track_settlements(self, a: Assessment) -> bool:
        """Note invoices paid in full since the last look (and ones reopened by a
        reversal); True when anything changed."""
        changed = False
        for inv in self.invoices.values():
            if inv.cancelled:
                continue
            paid = a.position.invoice_open.get(inv.invoice_id, ZERO) <= 0
            if paid and inv.settled_on is None:
                inv.settled_on = a.today
                self.settlements.append(Settlement(inv.invoice_id, inv.due_date, a.today))
                del self.settlements[:-SETTLEMENTS_KEPT]
                changed = True
            elif not paid and inv.settled_on is not None:
                inv.settled_on = None
                self.settlements = [s for s in self.settlements
                                    if s.invoice_id != inv.invoice_id]
                changed = True
        if changed:
            self.rev += 1
        return changed

    def _score(self, ctx: Context, pos: Position, today: dt.date,
               limit: Decimal | None) -> Score:
        """The score's inputs at the account's latest own event (overdue at `today`).

        Tenure and the 12-month windows are measured to the account's latest event, not
        to the clock: a score that moved with every tick would make the last snapshot of
        a quiet account stale the next day. Overdue does move with the clock, and an
        overdue account's snapshot is refreshed on every tick.
        """
        cur = self.currency
        if self.last_time is not None:
            today = _local_date(self.last_time, self._timezone())
        months = _last_months(today)
        first = _local_date(self.first_time, self._timezone()) if self.first_time else today
        # Months before the account's first event say nothing about its volume.
        recent = {m for m in months[: ctx.policy.score.limit_months]
                  if m >= first.isoformat()[:7]} or {months[0]}
        invoiced = credited = ZERO
        monthly = {m: ZERO for m in recent}
        for month, by_currency in self.months.items():
            if month not in months:
                continue
            for currency, (inv, cred) in by_currency.items():
                conv_inv = ctx.fx.convert(inv, currency, cur) if cur else inv
                conv_cred = ctx.fx.convert(cred, currency, cur) if cur else cred
                if conv_inv is None or conv_cred is None:
                    continue  # no rate yet: left out until one arrives
                invoiced += conv_inv
                credited += conv_cred
                if month in recent:
                    monthly[month] += conv_inv
        year_ago = _year_before(today)
        inputs = ScoreInputs(
            today=today,
            settlements=tuple(self.settlements),
            overdue_amount=pos.overdue_amount,
            open_receivables=pos.open_receivables,
            oldest_overdue_days=pos.oldest_overdue_days,
            exposure=pos.total,
            limit=limit,
            first_day=_local_date(self.first_time, self._timezone()) if self.first_time
            else None,
            open_disputes=sum(
                1 for i in self.invoices.values()
                if i.disputed and not i.cancelled and pos.invoice_open.get(i.invoice_id, ZERO) > 0
            ),
            reversals_last_year=sum(1 for d in self.reversal_days if d > year_ago),
            invoiced_12m=invoiced,
            credited_12m=credited,
            monthly_invoiced=tuple(monthly[m] for m in sorted(monthly)),
            payment_terms_days=self.profile.payment_terms_days if self.profile else None,
            currency=cur,
        )
        return compute_score(inputs, ctx.policy.score)

    def _record_grade(self, a: Assessment, ctx: Context, out: list[Decision]) -> None:
        """`credit.account.grade_changed` and `credit.limit.review_suggested`."""
        score = a.score
        if score is None:
            return
        previous = self.grade
        self.grade = score.grade
        if previous is not None and previous != score.grade:
            out.append(Decision("credit.account.grade_changed", {
                **self._ids(),
                "grade": score.grade,
                "previous_grade": previous,
                "score": format(score.score, "f"),
                "factors": [{k: f[k] for k in ("name", "weight", "points")}
                            for f in score.factors()],
            }))
        profile = self.profile
        recommended = score.recommended_limit
        if profile is None or recommended is None or profile.credit_limit <= 0:
            self.last_review = None
            return
        limit = profile.credit_limit
        p = ctx.policy.score
        far = abs(recommended - limit) > limit * p.review_difference
        if not far:
            self.last_review = None
            return
        last = self.last_review
        if last is not None and abs(recommended - last) <= last * p.review_difference:
            return  # suggested already, and the suggestion has not moved much since
        self.last_review = recommended
        cur = self.currency
        out.append(Decision("credit.limit.review_suggested", {
            **self._ids(),
            "credit_limit": report(limit, cur),
            "recommended_limit": report(recommended, cur),
            "currency": cur,
            "difference": format(quantized((recommended - limit) / limit,
                                           Decimal("0.0001")), "f"),
            "grade": score.grade,
            "score": format(score.score, "f"),
            "figures": score.limit_figures(),
        }))

    def _next_wake(self, a: Assessment) -> dt.datetime | None:
        """The next instant at which the passing of time alone can change the status."""
        th = a.thresholds
        today = a.today
        candidates: list[dt.date] = []
        for invoice_id, value in a.position.invoice_open.items():
            if value <= 0:
                continue
            due = self.invoices[invoice_id].due_date
            for days in (th.grace_days + 1, th.warn_overdue_days, th.hold_overdue_days):
                try:
                    candidates.append(due + dt.timedelta(days=max(days, 1)))
                except OverflowError:
                    pass
        if self.profile is not None and self.profile.valid_until is not None:
            until = self.profile.valid_until
            for delta in (-th.warn_expiry_days, 1):
                try:
                    candidates.append(until + dt.timedelta(days=delta))
                except OverflowError:
                    pass
        future = [c for c in candidates if c > today]
        if not future:
            return None
        tz = zone(self.profile.timezone if self.profile else "UTC")
        first = min(future)
        return dt.datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC)

    # ---- forgetting what is finished ----------------------------------------------

    def prune(self, ctx: Context) -> int:
        """Forget finished documents and old idempotency keys; return how many went.

        The rule: idempotency keys are kept for `ctx.retention` of the account's event
        time. Documents are dropped as a group (an order with its deliveries and
        invoices, an invoice with the payments and credit notes applied to it) once every
        document of the group is finished (orders closed, cancelled or fully invoiced,
        invoices paid or cancelled, money fully applied or reversed) and none of them
        has changed for `ctx.retention`. A dropped group adds nothing to exposure or
        overdue, so forgetting it changes no figure; an event that refers to it later
        is treated like one for an unknown document.
        """
        as_of = self.as_of(ctx)
        if as_of is None:
            return 0
        horizon = as_of - ctx.retention
        self.seen = {k: t for k, t in self.seen.items() if t >= horizon}
        today = _local_date(self.last_time or as_of, self._timezone())
        oldest_month = _month_before(today, MONTHS_KEPT - 1)
        self.months = {m: v for m, v in self.months.items() if m >= oldest_month}
        year_ago = _year_before(today)
        self.reversal_days = [d for d in self.reversal_days if d > year_ago]
        pos = self.assess(ctx).position

        parent: dict[tuple[str, str], tuple[str, str]] = {}

        def find(node: tuple[str, str]) -> tuple[str, str]:
            root = parent.setdefault(node, node)
            while root != parent[root]:
                root = parent[root]
            parent[node] = root
            return root

        def join(a: tuple[str, str], b: tuple[str, str]) -> None:
            parent[find(a)] = find(b)

        finished: dict[tuple[str, str], bool] = {}
        for oid, order in self.orders.items():
            done = order.state != "open" or (order.held == 0 and oid not in pos.order_open)
            finished[("o", oid)] = done and order.changed_at < horizon
        for did, dlv in self.deliveries.items():
            finished[("d", did)] = did not in pos.delivery_open and dlv.changed_at < horizon
            if dlv.order_id in self.orders:
                join(("d", did), ("o", dlv.order_id))
        for iid, inv in self.invoices.items():
            done = inv.cancelled or not pos.invoice_open.get(iid)
            finished[("i", iid)] = done and inv.changed_at < horizon
            if inv.order_id in self.orders:
                join(("i", iid), ("o", inv.order_id))
            if inv.delivery_id in self.deliveries:
                join(("i", iid), ("d", inv.delivery_id))
        for pid, pay in self.payments.items():
            done = pay.reversed or pid not in pos.payment_unapplied
            finished[("p", pid)] = done and pay.changed_at < horizon
            for alloc in pay.allocations:
                if alloc.invoice_id in self.invoices:
                    join(("p", pid), ("i", alloc.invoice_id))
        for cid, note in self.credit_notes.items():
            finished[("c", cid)] = cid not in pos.note_unapplied and note.changed_at < horizon
            if note.invoice_id in self.invoices:
                join(("c", cid), ("i", note.invoice_id))

        alive = {find(node) for node, done in finished.items() if not done}
        gone = [node for node in finished if find(node) not in alive]
        stores: dict[str, dict[str, Any]] = {
            "o": self.orders, "d": self.deliveries, "i": self.invoices,
            "p": self.payments, "c": self.credit_notes,
        }
        for kind, doc_id in gone:
            del stores[kind][doc_id]
        if gone:
            self.rev += 1
        return len(gone)

    # ---- reporting -----------------------------------------------------------------

    def _ids(self) -> dict[str, str]:
        return {"account": self.key, "company": self.company, "customer_id": self.customer_id}

    def snapshot(self, ctx: Context) -> dict[str, Any]:
        """The whole account state in the contract's `credit.account.snapshot` shape."""
        a = self.assess(ctx)
        pos = a.position
        cur = self.currency
        profile = self.profile
        limit = a.effective_limit
        exposure = pos.total
        as_of = self.as_of(ctx)
        return {
            "company": self.company,
            "customer_id": self.customer_id,
            "currency": cur,
            "risk_class": profile.risk_class if profile else None,
            "credit_limit": report(profile.credit_limit, cur) if profile else None,
            "effective_limit": None if limit is None else report(limit, cur),
            "status": self.status,
            # Fresh numbers for the same rules; the rules themselves change only in settle.
            "reasons": a.reasons if (a.status, codes(a.reasons)) == (
                self.status, codes(self.reasons)) else self.reasons,
            "exposure": {
                "open_orders": report(pos.open_orders, cur),
                "uninvoiced_deliveries": report(pos.uninvoiced_deliveries, cur),
                "open_receivables": report(pos.open_receivables, cur),
                "unapplied_credit": report(pos.unapplied_credit, cur),
                "total": report(exposure, cur),
            },
            "available_credit": None if limit is None else report(limit - exposure, cur),
            "utilization": (
                None if not limit else format(quantized(exposure / limit, Decimal("0.0001")), "f")
            ),
            "overdue": {
                "amount": report(pos.overdue_amount, cur),
                "oldest_days": pos.oldest_overdue_days,
                "buckets": {b: report(pos.buckets[b], cur) for b in BUCKETS},
            },
            "blocked_orders": [
                {
                    "order_id": o.order_id,
                    "amount": report(o.held, o.currency),
                    "currency": o.currency,
                    "reasons": [o.block_reason] if o.block_reason else [],
                    "blocked_at": _iso(o.blocked_at),
                }
                for o in sorted(self.orders.values(), key=lambda o: o.block_seq)
                if o.is_blocked
            ],
            "unconverted": pos.unconverted,
            "rates_used": [
                {"currency": r.base, "quote_currency": r.quote, "rate": str(r.rate),
                 "time": _iso(r.time)}
                for r in sorted(pos.rates_used.values(), key=lambda r: (r.base, r.quote))
            ],
            "documents": self._open_documents(pos),
            "pending_events": len(self.pending),
            "score": _score_view(a.score, cur),
            "as_of": _iso(as_of) if as_of else None,
        }

    def _open_documents(self, pos: Position) -> dict[str, list[dict[str, Any]]]:
        def row(doc_id: str, value: Decimal, currency: str, **extra: Any) -> dict[str, Any]:
            return {"id": doc_id, "open": report(value, currency), "currency": currency,
                    **extra}

        return {
            "orders": [
                row(i, v, self.orders[i].currency, amount=report(
                    self.orders[i].amount, self.orders[i].currency))
                for i, v in pos.order_open.items()
            ],
            "deliveries": [
                row(i, v, self.deliveries[i].currency) for i, v in pos.delivery_open.items()
            ],
            "invoices": [
                row(i, v, self.invoices[i].currency,
                    due_date=str(self.invoices[i].due_date),
                    disputed=self.invoices[i].disputed)
                for i, v in pos.invoice_open.items() if v > 0
            ],
            "unapplied_payments": [
                row(i, v, self.payments[i].currency) for i, v in pos.payment_unapplied.items()
            ],
            "unapplied_credit_notes": [
                row(i, v, self.credit_notes[i].currency)
                for i, v in pos.note_unapplied.items()
            ],
        }


@lru_cache(maxsize=4096)
def _local_date(as_of: dt.datetime | None, timezone: str) -> dt.date:
    """The calendar date of `as_of` in the account's time zone (CONTRACT 1)."""
    if as_of is None:
        return dt.date.min
    return as_of.astimezone(zone(timezone)).date()


def _percent(exposure: Decimal, limit: Decimal) -> str:
    if not limit:
        return "n/a"
    return f"{quantized(exposure / limit * 100, Decimal(1))}%"


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _late_rejection(event: Any, error: str) -> Decision:
    return Decision("credit.event.rejected", {
        "error": error,
        "event": event.model_dump(mode="json"),
        "origin": {"kept_until_document_arrived": True},
    })


_HANDLERS: dict[str, Callable[[Account, Any, Context, list[Decision]], None]] = {
    "erp.credit_profile.set": Account._on_profile,
    "erp.order.placed": Account._on_order_placed,
    "erp.order.amended": Account._on_order_amended,
    "erp.order.cancelled": Account._on_order_state,
    "erp.order.closed": Account._on_order_state,
    "erp.order.reopened": Account._on_order_state,
    "erp.delivery.posted": Account._on_delivery,
    "erp.invoice.issued": Account._on_invoice,
    "erp.invoice.cancelled": Account._on_invoice_cancelled,
    "erp.invoice.disputed": Account._on_dispute,
    "erp.invoice.dispute_resolved": Account._on_dispute,
    "erp.credit_note.issued": Account._on_credit_note,
    "erp.payment.received": Account._on_payment,
    "erp.payment.allocated": Account._on_allocation,
    "erp.payment.reversed": Account._on_reversal,
    "credit.command.release_order": Account._on_release,
}


SETTLEMENTS_KEPT = 50
"""settled invoices remembered for the score (the policy may look at fewer)"""
MONTHS_KEPT = 13
"""months of invoiced and credited volume remembered for the score"""


@lru_cache(maxsize=64)
def _year_before(today: dt.date) -> dt.date:
    """365 days before `today`; for an account known only from rejected events, whose
    `today` is the earliest date there is, that earliest date again."""
    return today - dt.timedelta(days=365) if today.toordinal() > 365 else dt.date.min


@lru_cache(maxsize=64)
def _last_months(today: dt.date) -> tuple[str, ...]:
    """"YYYY-MM" of the month of `today` and the 11 before it, newest first."""
    return tuple(_month_before(today, back) for back in range(12))


def _month_before(today: dt.date, back: int) -> str:
    """"YYYY-MM" of the month `back` months before the month of `today`."""
    index = today.year * 12 + today.month - 1 - back
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _score_view(score: Score | None, cur: str | None) -> dict[str, Any] | None:
    """The snapshot's `score`: enough to recompute it by hand (monitor/domain/score.py)."""
    if score is None:
        return None
    rec = score.recommended_limit
    return {
        "score": format(score.score, "f"),
        "grade": score.grade,
        "factors": score.factors(),
        "recommended_limit": None if rec is None else report(rec, cur),
        "recommended_limit_figures": score.limit_figures(),
    }
