"""The credit score (CONTRACT 10): a sum of explained points, a grade, and a
recommended credit limit.

Every factor turns a few figures of the account into a fraction from 0 (worst) to 1
(best) by a straight line between a "best" and a "zero points" value; its points are
that fraction times its weight, rounded half-even to 0.01, and the score is the sum of
the points; the fraction is first rounded half-even to 4 decimals (as the snapshot shows
it). Everything a factor used is in the snapshot, so anyone can recompute it:

| factor | inputs | fraction |
| --- | --- | --- |
| payment_history | the last `invoices_considered` settled invoices, each with its days late; the i-th oldest weighs i | 1/2 x (1 - min(1, weighted mean days late / late_days_for_zero)) + 1/2 x (1 - weighted share paid late); 1/2 with no settled invoice yet |
| overdue | overdue amount, open receivables, oldest overdue days | 1/2 x (1 - overdue / open receivables) + 1/2 x (1 - min(1, oldest days / overdue_days_for_zero)) |
| utilization | exposure, credit limit | 1 - min(1, exposure / limit); 0 without a limit |
| tenure | days since the account's first event | min(1, days / tenure_days_for_full) |
| disputes | open disputed invoices | 1 - min(1, count / disputes_for_zero) |
| reversals | payments reversed in the last 365 days | 1 - min(1, count / reversals_for_zero) |
| credit_notes | credit notes and invoices of the last 12 months | 1 - min(1, credited / invoiced / credit_note_share_for_zero); 1 with no invoice |

Grade: `A` from `grade_a` points, `B` from `grade_b`, `C` from `grade_c`, else `D`.
Recommended limit: the mean monthly invoiced amount of the last `limit_months` calendar
months (this one included) x (1 + payment terms days / 30) x the grade's multiplier,
rounded down to a multiple of `limit_round`; none while nothing was invoiced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from .money import ZERO, quantized

CENT = Decimal("0.01")
FRACTION_PLACES = Decimal("0.0001")
ONE = Decimal(1)
HALF = Decimal("0.5")
DEFAULT_TERMS_DAYS = 30
FACTORS = ("payment_history", "overdue", "utilization", "tenure", "disputes", "reversals",
           "credit_notes")


@dataclass(frozen=True, slots=True)
class ScorePolicy:
    """The `[score]` table of the policy file."""

    weights: dict[str, Decimal]
    late_days_for_zero: int
    overdue_days_for_zero: int
    tenure_days_for_full: int
    disputes_for_zero: int
    reversals_for_zero: int
    credit_note_share_for_zero: Decimal
    invoices_considered: int
    grade_bands: dict[str, Decimal]
    """lowest score of grades A, B and C"""
    limit_months: int
    limit_multipliers: dict[str, Decimal]
    limit_round: Decimal
    review_difference: Decimal
    """a limit review is suggested when |recommended - limit| / limit exceeds this"""


@dataclass(frozen=True, slots=True)
class Settlement:
    """An invoice that was paid in full: when it was due and when it was settled."""

    invoice_id: str
    due_date: dt.date
    settled_on: dt.date

    @property
    def days_late(self) -> int:
        return max(0, (self.settled_on - self.due_date).days)


@dataclass(frozen=True, slots=True)
class ScoreInputs:
    """The account's figures the score is computed from, at one moment."""

    today: dt.date
    settlements: tuple[Settlement, ...]
    """the most recent settled invoices, oldest first"""
    overdue_amount: Decimal
    open_receivables: Decimal
    oldest_overdue_days: int
    exposure: Decimal
    limit: Decimal | None
    first_day: dt.date | None
    open_disputes: int
    reversals_last_year: int
    invoiced_12m: Decimal
    credited_12m: Decimal
    monthly_invoiced: tuple[Decimal, ...]
    """invoiced amount of each of the last `limit_months` months, oldest first"""
    payment_terms_days: int | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class Score:
    score: Decimal
    grade: str
    points: tuple[Decimal, ...]
    """points of each factor, in the order of FACTORS"""
    fractions: tuple[Decimal, ...]
    recommended_limit: Decimal | None
    inputs: ScoreInputs
    policy: ScorePolicy

    def factors(self) -> list[dict[str, Any]]:
        """Each factor with its inputs, weight, fraction and points (for the snapshot);
        built only when asked for, since most assessments need just the score."""
        return [
            {"name": name, "weight": format(self.policy.weights[name], "f"),
             "fraction": _text(fraction), "points": format(points, "f"),
             "inputs": _explain(name, self.inputs, self.policy)}
            for name, fraction, points in zip(FACTORS, self.fractions, self.points)
        ]

    def limit_figures(self) -> dict[str, Any]:
        x, p = self.inputs, self.policy
        monthly = x.monthly_invoiced
        return {
            "monthly_invoiced": [_text(m, "0.01") for m in monthly],
            "mean_monthly_invoiced": _text(_mean(monthly), "0.01"),
            "payment_terms_days": _terms(x),
            "grade_multiplier": format(p.limit_multipliers[self.grade], "f"),
            "rounded_down_to": format(p.limit_round, "f"),
            "formula": "mean_monthly_invoiced x (1 + payment_terms_days / 30) x "
                       "grade_multiplier",
        }


def _fraction(value: Decimal) -> Decimal:
    return min(ONE, max(ZERO, value))


def _ratio(a: Decimal, b: Decimal) -> Decimal:
    return a / b if b else ZERO


def _text(value: Decimal, places: str = "0.0001") -> str:
    return format(quantized(value, Decimal(places)), "f")


def _mean(values: tuple[Decimal, ...]) -> Decimal:
    return sum(values, ZERO) / len(values) if values else ZERO


def _terms(x: ScoreInputs) -> int:
    return x.payment_terms_days if x.payment_terms_days is not None else DEFAULT_TERMS_DAYS


def _used(x: ScoreInputs, p: ScorePolicy) -> tuple[Settlement, ...]:
    return x.settlements[-p.invoices_considered:] if p.invoices_considered else ()


def _history(used: tuple[Settlement, ...]) -> tuple[Decimal, Decimal]:
    """Weighted mean days late and weighted share paid late; the i-th oldest weighs i."""
    total_w = Decimal(len(used) * (len(used) + 1) // 2)
    late = [s.days_late for s in used]
    mean_late = Decimal(sum(w * d for w, d in enumerate(late, start=1))) / total_w
    share_late = Decimal(sum(w for w, d in enumerate(late, start=1) if d > 0)) / total_w
    return mean_late, share_late


def _tenure_days(x: ScoreInputs) -> int:
    return max(0, (x.today - x.first_day).days) if x.first_day else 0


def compute_score(x: ScoreInputs, p: ScorePolicy) -> Score:
    """The score, its grade and the recommended limit for `x` under `p`."""
    used = _used(x, p)
    if used:
        mean_late, share_late = _history(used)
        history = (HALF * (ONE - _fraction(_ratio(mean_late, Decimal(p.late_days_for_zero))))
                   + HALF * (ONE - share_late))
    else:
        history = HALF
    overdue = (HALF * (ONE - _fraction(_ratio(x.overdue_amount, x.open_receivables)))
               + HALF * (ONE - _fraction(_ratio(Decimal(x.oldest_overdue_days),
                                                Decimal(p.overdue_days_for_zero)))))
    utilization = ONE - _fraction(x.exposure / x.limit) if x.limit else ZERO
    tenure = _fraction(_ratio(Decimal(_tenure_days(x)), Decimal(p.tenure_days_for_full)))
    disputes = ONE - _fraction(_ratio(Decimal(x.open_disputes), Decimal(p.disputes_for_zero)))
    reversals = ONE - _fraction(_ratio(Decimal(x.reversals_last_year),
                                       Decimal(p.reversals_for_zero)))
    if x.invoiced_12m > 0:
        credit_notes = ONE - _fraction(_ratio(x.credited_12m / x.invoiced_12m,
                                              p.credit_note_share_for_zero))
    else:
        credit_notes = ONE
    # Rounded to the 4 places the snapshot shows, so that points can be recomputed
    # from it exactly.
    fractions = tuple(quantized(f, FRACTION_PLACES) for f in (
        history, overdue, utilization, tenure, disputes, reversals, credit_notes))
    points = tuple((f * p.weights[name]).quantize(CENT, rounding=ROUND_HALF_EVEN)
                   for name, f in zip(FACTORS, fractions))
    score = sum(points, ZERO)
    grade = grade_of(score, p)

    recommended: Decimal | None = None
    mean_monthly = _mean(x.monthly_invoiced)
    if mean_monthly > 0:
        raw = mean_monthly * (ONE + Decimal(_terms(x)) / 30) * p.limit_multipliers[grade]
        recommended = (raw / p.limit_round).to_integral_value(ROUND_DOWN) * p.limit_round
    return Score(score=score, grade=grade, points=points, fractions=fractions,
                 recommended_limit=recommended, inputs=x, policy=p)


def _explain(name: str, x: ScoreInputs, p: ScorePolicy) -> dict[str, Any]:
    """The figures factor `name` was computed from, as the snapshot shows them."""
    if name == "payment_history":
        used = _used(x, p)
        mean_late, share_late = _history(used) if used else (ZERO, ZERO)
        return {
            "invoices": [{"invoice_id": s.invoice_id, "due_date": s.due_date.isoformat(),
                          "settled_on": s.settled_on.isoformat(), "days_late": s.days_late}
                         for s in used],
            "weighted_mean_days_late": _text(mean_late),
            "weighted_share_paid_late": _text(share_late),
            "late_days_for_zero": p.late_days_for_zero,
        }
    if name == "overdue":
        return {"overdue_amount": _text(x.overdue_amount, "0.01"),
                "open_receivables": _text(x.open_receivables, "0.01"),
                "oldest_overdue_days": x.oldest_overdue_days,
                "overdue_days_for_zero": p.overdue_days_for_zero}
    if name == "utilization":
        return {"exposure": _text(x.exposure, "0.01"),
                "limit": None if x.limit is None else _text(x.limit, "0.01")}
    if name == "tenure":
        return {"first_day": x.first_day.isoformat() if x.first_day else None,
                "days": _tenure_days(x), "tenure_days_for_full": p.tenure_days_for_full}
    if name == "disputes":
        return {"open_disputed_invoices": x.open_disputes,
                "disputes_for_zero": p.disputes_for_zero}
    if name == "reversals":
        return {"reversed_payments_last_365_days": x.reversals_last_year,
                "reversals_for_zero": p.reversals_for_zero}
    return {"credited_12_months": _text(x.credited_12m, "0.01"),
            "invoiced_12_months": _text(x.invoiced_12m, "0.01"),
            "credit_note_share_for_zero": format(p.credit_note_share_for_zero, "f")}


def grade_of(score: Decimal, p: ScorePolicy) -> str:
    for grade in ("A", "B", "C"):
        if score >= p.grade_bands[grade]:
            return grade
    return "D"
