"""The backtest's figures: what a policy's decisions said, against what happened.

Decisions are output events as dicts (`type`, `time`, `subject`, `causationid`,
`data`), from the offline evaluator or rebuilt from the audit log. Every figure is
computed per account and then summed over the accounts in sorted order, so it does not
depend on how the outputs of different accounts were interleaved (the audit log keeps
no order across accounts, the evaluator writes them as they come).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from monitor.domain.policy import Policy

from .history import History, account_of, parse_time

STATUS_CHANGED = "credit.account.status_changed"
STATUSES = ("OK", "WARNING", "HOLD")
LATE_DAYS = (0, 10)
"""an invoice is late when paid more than this many days after its due date"""
RELEASE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 1 hour", 3600),
    ("1 hour to 1 day", 86400),
    ("1 to 7 days", 7 * 86400),
    ("7 to 30 days", 30 * 86400),
    ("over 30 days", math.inf),
)

Decision = dict[str, Any]
Position = tuple[int, int]


def ratio(part: int, whole: int) -> Decimal | None:
    """part / whole to 4 places, or None when there is nothing to divide by."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_EVEN
    )


def _days(seconds: float) -> Decimal:
    return (Decimal(int(seconds)) / Decimal(86400)).quantize(Decimal("0.1"))


def _hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / Decimal(3600)).quantize(Decimal("0.1"))


def nearest_rank(values: Sequence[int], share: float) -> int | None:
    """The nearest-rank percentile of sorted `values` (share 0.5 = median)."""
    if not values:
        return None
    return values[max(0, math.ceil(share * len(values)) - 1)]


# ---- figures ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Predictor:
    """How well "status at issue in `statuses`" foretold "paid > `late_days` late"."""

    signal: str
    late_days: int
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int
    precision: Decimal | None
    recall: Decimal | None


@dataclass(frozen=True, slots=True)
class StatusAtIssue:
    status: str
    invoices: int
    late: int
    late_over_10: int
    late_share: Decimal | None


@dataclass(frozen=True, slots=True)
class EarlySigns:
    invoices: int
    late: int
    late_over_10: int
    unpaid: int
    """invoices still open at the end of the history (late counted to the end)"""
    by_status: tuple[StatusAtIssue, ...]
    predictors: tuple[Predictor, ...]


@dataclass(frozen=True, slots=True)
class OrderFigures:
    approved: int
    blocked: int
    blocked_by_reason: tuple[tuple[str, int], ...]
    released: int
    released_auto: int
    released_manual: int
    invoiced_while_blocked: int
    """blocked orders that an invoice took out of the blocked list (the ERP shipped)"""
    still_blocked: int
    median_release_hours: Decimal | None
    p90_release_hours: Decimal | None
    release_buckets: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class AccountRisk:
    account: str
    currency: str
    hold_days: Decimal
    warning_days: Decimal
    status_changes: int
    invoices: int
    late_invoices: int


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """Everything the decisions of one policy say about one history."""

    label: str
    thresholds: tuple[tuple[str, str], ...]
    status_changes: int
    accounts_ever_on_hold: int
    accounts_ever_on_warning: int
    hold_account_days: Decimal
    warning_account_days: Decimal
    early_signs: EarlySigns
    orders: OrderFigures
    accounts: tuple[AccountRisk, ...]


# ---- placing decisions in the history ---------------------------------------------


def place(decision: Decision, history: History) -> Position:
    """Where an output belongs in the history: right after the input that caused it.

    An output whose cause is not in the history (a wall-clock tick of the live
    service) goes after every input of its time or earlier.
    """
    cause = decision.get("causationid")
    if isinstance(cause, str) and cause in history.causes:
        return (history.causes[cause], 1)
    moment = parse_time(decision.get("time"))
    if moment is None:
        return (len(history.times), 2)
    return (bisect.bisect_right(history.times, moment) - 1, 2)


def _account(decision: Decision) -> str | None:
    data = decision.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("account"), str):
            return str(data["account"])
        found = account_of(data)
        if found:
            return found
    subject = decision.get("subject")
    return subject if isinstance(subject, str) else None


@dataclass(frozen=True, slots=True)
class Placed:
    position: Position
    time: dt.datetime
    decision: Decision


def by_account(
    decisions: Iterable[Decision], history: History
) -> dict[str, list[Placed]]:
    """Each account's decisions in history order (ties keep their given order)."""
    out: dict[str, list[Placed]] = {}
    for decision in decisions:
        account = _account(decision)
        moment = parse_time(decision.get("time"))
        if account is None or moment is None:
            continue
        out.setdefault(account, []).append(
            Placed(place(decision, history), moment, decision)
        )
    for placed in out.values():
        placed.sort(key=lambda p: p.position)
    return out


# ---- computing ----------------------------------------------------------------------


def thresholds_of(policy: Policy) -> tuple[tuple[str, str], ...]:
    """The keys a credit manager compares, for the default class and class D."""
    rows = []
    for name, th in (("", policy.default), ("D: ", policy.for_class("D"))):
        rows += [
            (f"{name}warn at utilization", str(th.warn_utilization)),
            (f"{name}block above utilization", str(th.block_utilization)),
            (f"{name}release at utilization", str(th.release_utilization)),
            (f"{name}warn at days overdue", str(th.warn_overdue_days)),
            (f"{name}hold at days overdue", str(th.hold_overdue_days)),
        ]
    return tuple(rows)


def policy_figures(
    label: str,
    policy: Policy,
    history: History,
    decisions: Iterable[Decision],
) -> PolicyFigures:
    """The figures of one policy's decisions over `history`.

    Steps: group the decisions by account in history order; per account, follow
    its status through time (for time on WARNING and HOLD) and read the status
    each invoice found when it was issued; pair blocked orders with their release
    or the invoice that took them over; add the accounts up in sorted order.
    """
    placed = by_account(decisions, history)
    end = history.end or dt.datetime.min.replace(tzinfo=dt.UTC)
    invoices_of: dict[str, list[Any]] = {}
    for invoice in history.invoices:
        if not invoice.cancelled:
            invoices_of.setdefault(invoice.account, []).append(invoice)

    accounts = sorted(set(placed) | set(invoices_of))
    risks: list[AccountRisk] = []
    issued: list[tuple[str, int]] = []  # (status at issue, days late) per invoice
    unpaid = 0
    orders = _OrderTally()
    for account in accounts:
        items = placed.get(account, [])
        changes = [p for p in items if p.decision.get("type") == STATUS_CHANGED]

        # Status through time.
        seconds = {"WARNING": 0.0, "HOLD": 0.0}
        status, since = "OK", None
        for change in changes:
            if since is not None and status in seconds:
                seconds[status] += (change.time - since).total_seconds()
            status, since = str(change.decision["data"].get("status")), change.time
        if since is not None and status in seconds:
            seconds[status] += max(0.0, (end - since).total_seconds())

        # The status each invoice found: the latest change placed before it.
        positions = [c.position for c in changes]
        late_here = 0
        for invoice in invoices_of.get(account, []):
            before = bisect.bisect_left(positions, (invoice.position, 0))
            found = (
                str(changes[before - 1].decision["data"].get("status"))
                if before
                else "OK"
            )
            days = invoice.days_late(end)
            issued.append((found, days))
            late_here += days > 0
            unpaid += invoice.paid_at is None

        orders.add(account, items, history)
        risks.append(
            AccountRisk(
                account=account,
                currency=history.currencies.get(account, ""),
                hold_days=_days(seconds["HOLD"]),
                warning_days=_days(seconds["WARNING"]),
                status_changes=len(changes),
                invoices=len(invoices_of.get(account, [])),
                late_invoices=late_here,
            )
        )

    return PolicyFigures(
        label=label,
        thresholds=thresholds_of(policy),
        status_changes=sum(r.status_changes for r in risks),
        accounts_ever_on_hold=sum(
            1 for a in accounts if _ever(placed.get(a, []), "HOLD")
        ),
        accounts_ever_on_warning=sum(
            1 for a in accounts if _ever(placed.get(a, []), "WARNING")
        ),
        hold_account_days=sum((r.hold_days for r in risks), Decimal("0.0")),
        warning_account_days=sum((r.warning_days for r in risks), Decimal("0.0")),
        early_signs=early_signs(issued, unpaid),
        orders=orders.figures(),
        accounts=tuple(risks),
    )


def _ever(items: list[Placed], status: str) -> bool:
    return any(
        p.decision.get("type") == STATUS_CHANGED
        and p.decision["data"].get("status") == status
        for p in items
    )


def early_signs(issued: Sequence[tuple[str, int]], unpaid: int = 0) -> EarlySigns:
    """Precision and recall of the status at issue as a sign of late payment.

    `issued` holds (status at issue, days late) for every invoice.
    """
    by_status = []
    for status in STATUSES:
        mine = [days for found, days in issued if found == status]
        late = sum(1 for d in mine if d > 0)
        by_status.append(
            StatusAtIssue(
                status,
                len(mine),
                late,
                sum(1 for d in mine if d > 10),
                ratio(late, len(mine)),
            )
        )
    predictors = []
    for signal, statuses in (
        ("WARNING or HOLD", {"WARNING", "HOLD"}),
        ("HOLD", {"HOLD"}),
    ):
        for late_days in LATE_DAYS:
            tp = fp = fn = tn = 0
            for found, days in issued:
                said, was = found in statuses, days > late_days
                tp += said and was
                fp += said and not was
                fn += was and not said
                tn += not said and not was
            predictors.append(
                Predictor(
                    signal,
                    late_days,
                    tp,
                    fp,
                    fn,
                    tn,
                    ratio(tp, tp + fp),
                    ratio(tp, tp + fn),
                )
            )
    return EarlySigns(
        invoices=len(issued),
        late=sum(1 for _, d in issued if d > 0),
        late_over_10=sum(1 for _, d in issued if d > 10),
        unpaid=unpaid,
        by_status=tuple(by_status),
        predictors=tuple(predictors),
    )


class _OrderTally:
    """Blocked orders, what ended each block, and after how long."""

    def __init__(self) -> None:
        self.approved = 0
        self.blocked = 0
        self.reasons: dict[str, int] = {}
        self.released_by: dict[str, int] = {"auto": 0, "manual": 0}
        self.invoiced = 0
        self.still = 0
        self.waits: list[int] = []

    def add(self, account: str, items: list[Placed], history: History) -> None:
        open_blocks: dict[str, Placed] = {}
        for item in items:
            kind, data = item.decision.get("type"), item.decision.get("data") or {}
            order_id = str(data.get("order_id"))
            if kind == "credit.order.approved":
                self.approved += 1
            elif kind == "credit.order.blocked":
                self.blocked += 1
                reasons = data.get("reasons") or [{}]
                code = str(reasons[0].get("code", "?")) if reasons else "?"
                self.reasons[code] = self.reasons.get(code, 0) + 1
                open_blocks.setdefault(order_id, item)
            elif kind == "credit.order.released":
                block = open_blocks.pop(order_id, None)
                if block is None:
                    continue
                by = "auto" if data.get("by") == "auto" else "manual"
                self.released_by[by] += 1
                self.waits.append(int((item.time - block.time).total_seconds()))
        for order_id, block in open_blocks.items():
            later = [
                p
                for p in history.invoice_positions_by_order.get((account, order_id), [])
                if p > block.position[0]
            ]
            if later:
                self.invoiced += 1
            else:
                self.still += 1

    def figures(self) -> OrderFigures:
        waits = sorted(self.waits)
        median, p90 = nearest_rank(waits, 0.5), nearest_rank(waits, 0.9)
        buckets = []
        low = 0.0
        for name, high in RELEASE_BUCKETS:
            buckets.append((name, sum(1 for w in waits if low <= w < high)))
            low = high
        return OrderFigures(
            approved=self.approved,
            blocked=self.blocked,
            blocked_by_reason=tuple(sorted(self.reasons.items())),
            released=len(waits),
            released_auto=self.released_by["auto"],
            released_manual=self.released_by["manual"],
            invoiced_while_blocked=self.invoiced,
            still_blocked=self.still,
            median_release_hours=None if median is None else _hours(median),
            p90_release_hours=None if p90 is None else _hours(p90),
            release_buckets=tuple(buckets),
        )


def riskiest(figures: PolicyFigures, n: int) -> list[str]:
    """The `n` accounts longest on HOLD, then on WARNING, then with most late invoices."""
    ranked = sorted(
        figures.accounts,
        key=lambda r: (-r.hold_days, -r.warning_days, -r.late_invoices, r.account),
    )
    return [r.account for r in ranked[:n]]
