"""How well the credit score warns of late payment, measured on a history.

For every invoice, the score of its account just before the invoice is issued (the
engine has seen only the events before it) is set against what happened: was the
invoice paid more than `LATE_DAYS` days after its due date (or never, by the end of
the history)? Lower scores should mean later payment, so the score's ROC AUC is that of
`-score`. Beside it, a baseline fitted with scikit-learn on the same inputs the score
is computed from (a standardised logistic regression), trained on the invoices of the
first `TRAIN_DAYS` days and tested on the rest, with the score's AUC on the same test
invoices. Precision and recall are given for calling an invoice "late" when the grade
is at or below each grade boundary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy
from monitor.domain.score import Score, _history, _tenure_days, _used

from .history import History

LATE_DAYS = 10
TRAIN_DAYS = 365
GRADES = ("A", "B", "C", "D")
FEATURES = ("weighted_mean_days_late", "weighted_share_paid_late", "settled_invoices",
            "overdue_share", "oldest_overdue_days", "utilization", "tenure_days",
            "open_disputes", "reversals_last_year", "credit_note_share")


@dataclass(frozen=True, slots=True)
class Boundary:
    """Calling an invoice late when its account's grade is `worst_kept` or worse."""

    grades: str
    flagged: int
    precision: float | None
    recall: float | None


@dataclass(frozen=True, slots=True)
class ScorePower:
    invoices: int
    late: int
    auc_all: float | None
    """the score's AUC over every invoice"""
    train: int
    test: int
    split: str | None
    """invoices issued before this date train the baseline"""
    auc_score_test: float | None
    auc_baseline_test: float | None
    boundaries: tuple[Boundary, ...]


@dataclass(frozen=True, slots=True)
class _Scored:
    issued_at: dt.datetime
    score: float
    grade: str
    features: tuple[float, ...]
    late: bool


def features_of(score: Score) -> tuple[float, ...]:
    """The score's own inputs, as numbers for the fitted baseline."""
    x, p = score.inputs, score.policy
    used = _used(x, p)
    mean_late, share_late = _history(used) if used else (Decimal(0), Decimal(0))
    return (
        float(mean_late), float(share_late), float(len(used)),
        float(x.overdue_amount / x.open_receivables) if x.open_receivables else 0.0,
        float(x.oldest_overdue_days),
        float(x.exposure / x.limit) if x.limit else 0.0,
        float(_tenure_days(x)), float(x.open_disputes), float(x.reversals_last_year),
        float(x.credited_12m / x.invoiced_12m) if x.invoiced_12m else 0.0,
    )


def scored_invoices(events: Sequence[dict[str, Any]], history: History,
                    policy: Policy) -> list[_Scored]:
    """Each invoice with its account's score just before it was issued."""
    end = history.end
    by_position = {inv.position: inv for inv in history.invoices if not inv.cancelled}
    engine = CreditEngine(policy)
    out: list[_Scored] = []
    for n, event in enumerate(events):
        inv = by_position.get(n)
        if inv is not None and end is not None:
            account = engine.accounts.get(inv.account)
            score = account.assess(engine.ctx).score if account is not None else None
            if score is not None:
                out.append(_Scored(
                    issued_at=inv.issued_at, score=float(score.score), grade=score.grade,
                    features=features_of(score), late=inv.days_late(end) > LATE_DAYS,
                ))
        engine.process(orjson.dumps(event), {})
    return out


def _auc(labels: list[bool], risk: list[float]) -> float | None:
    if len(set(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, risk))


def measure(events: Sequence[dict[str, Any]], history: History,
            policy: Policy) -> ScorePower:
    rows = scored_invoices(events, history, policy)
    labels = [r.late for r in rows]
    late = sum(labels)
    boundaries = []
    for i, worst in enumerate(GRADES[1:], start=1):
        flagged = [r for r in rows if GRADES.index(r.grade) >= i]
        hits = sum(r.late for r in flagged)
        boundaries.append(Boundary(
            grades="-".join(GRADES[i:]) if i < 3 else "D",
            flagged=len(flagged),
            precision=hits / len(flagged) if flagged else None,
            recall=hits / late if late else None,
        ))

    split = None
    train: list[_Scored] = []
    test: list[_Scored] = []
    auc_score_test = auc_baseline_test = None
    if rows:
        cut = min(r.issued_at for r in rows) + dt.timedelta(days=TRAIN_DAYS)
        split = cut.date().isoformat()
        train = [r for r in rows if r.issued_at < cut]
        test = [r for r in rows if r.issued_at >= cut]
        test_labels = [r.late for r in test]
        if len({r.late for r in train}) == 2 and len(set(test_labels)) == 2:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            model.fit([r.features for r in train], [r.late for r in train])
            predicted = model.predict_proba([r.features for r in test])[:, 1]
            auc_baseline_test = _auc(test_labels, [float(v) for v in predicted])
            auc_score_test = _auc(test_labels, [-r.score for r in test])
    return ScorePower(
        invoices=len(rows), late=late, auc_all=_auc(labels, [-r.score for r in rows]),
        train=len(train), test=len(test), split=split,
        auc_score_test=auc_score_test, auc_baseline_test=auc_baseline_test,
        boundaries=tuple(boundaries),
    )
