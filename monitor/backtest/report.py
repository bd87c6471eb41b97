"""The backtest report's content: a history, the decisions on it, and other policies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import orjson

from monitor.domain.policy import Policy
from monitor.evaluate import evaluate_lines

from .exposure import AccountSeries, daily_series
from .figures import Decision, PolicyFigures, policy_figures, riskiest
from .score_power import ScorePower
from .score_power import measure as measure_score_power
from .history import Event, read_history

STRICTER_POLICY_TOML = """\
[default]
warn_utilization = 0.70
hold_overdue_days = 15

[risk_class.D]
warn_utilization = 0.60
block_utilization = 0.80
hold_overdue_days = 10
"""

LOOSER_POLICY_TOML = """\
[default]
warn_utilization = 0.95
block_utilization = 1.10
release_utilization = 1.00
warn_overdue_days = 5
hold_overdue_days = 45

[risk_class.D]
warn_utilization = 0.85
block_utilization = 1.00
hold_overdue_days = 30
"""

DECISION_TYPES = frozenset(
    {
        "credit.account.status_changed",
        "credit.order.approved",
        "credit.order.blocked",
        "credit.order.released",
    }
)


def builtin_policies() -> list[tuple[str, Policy]]:
    """Stricter and looser alternatives to set beside the policy in use."""
    return [
        ("stricter", Policy.from_toml(STRICTER_POLICY_TOML, source="<stricter>")),
        ("looser", Policy.from_toml(LOOSER_POLICY_TOML, source="<looser>")),
    ]


@dataclass(frozen=True, slots=True)
class Report:
    title: str
    events: int
    first_event: str | None
    last_event: str | None
    accounts: int
    invoices: int
    decisions: PolicyFigures
    """the figures of the decisions under test: the live run's or the evaluator's"""
    comparison: tuple[PolicyFigures, ...]
    """the evaluator's figures for each policy, the policy in use first"""
    riskiest: tuple[str, ...]
    series: tuple[AccountSeries, ...]
    score_power: ScorePower | None = None
    """how well the credit score at issue foretold late payment (policy in use)"""

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values: decimals as text."""
        plain: dict[str, Any] = _plain(asdict(self))
        return plain


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def evaluate(events: Sequence[Event], policy: Policy) -> list[Decision]:
    """The evaluator's decisions (no rejections, no snapshots) over `events`."""
    lines = (orjson.dumps(e) for e in events)
    return [
        o
        for o in evaluate_lines(lines, policy, name="backtest")
        if o.get("type") in DECISION_TYPES
    ]


def build_report(
    title: str,
    events: Sequence[Event],
    policies: Sequence[tuple[str, Policy]],
    *,
    decisions: Iterable[Decision] | None = None,
    top: int = 5,
) -> Report:
    """The report for `events`: the decisions given (default: the evaluator's under
    the first policy), and the evaluator's figures under every policy.

    Steps: index the history; evaluate it under each policy; compute the figures of
    the decisions under test; pick the riskiest accounts from them and replay their
    exposure day by day under the first policy.
    """
    if not policies:
        raise ValueError("at least one policy is needed")
    history = read_history(events)

    comparison = []
    for n, (label, policy) in enumerate(policies):
        outputs = evaluate(events, policy)
        comparison.append(policy_figures(label, policy, history, outputs))
        if n == 0 and decisions is None:
            decisions = outputs
    assert decisions is not None

    label, policy = policies[0]
    mine = policy_figures(label, policy, history, decisions)
    chosen = riskiest(mine, top)
    series = daily_series(events, policy, chosen)
    return Report(
        title=title,
        events=len(events),
        first_event=history.start.isoformat() if history.start else None,
        last_event=history.end.isoformat() if history.end else None,
        accounts=len(history.accounts),
        invoices=len(history.invoices),
        decisions=mine,
        comparison=tuple(comparison),
        riskiest=tuple(chosen),
        series=tuple(series),
        score_power=measure_score_power(events, history, policy),
    )
