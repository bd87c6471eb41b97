"""Exposure and overdue of a few accounts, day by day, by replaying the history.

The history goes through `CreditEngine` (the evaluator's domain code) once; at the
end of every UTC day that has events, the chosen accounts' snapshots are read. The
figures depend only on the events and the policy (blocked orders do not count in
exposure), so the live run and the evaluator give the same series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy

from .history import Event, parse_time


@dataclass(frozen=True, slots=True)
class AccountSeries:
    account: str
    currency: str
    days: tuple[str, ...]
    """ISO dates (UTC) the values are read at, at the end of the day"""
    exposure: tuple[Decimal, ...]
    overdue: tuple[Decimal, ...]
    limit: tuple[Decimal, ...]


def _decimal(text: object) -> Decimal:
    try:
        return Decimal(str(text))
    except ArithmeticError:
        return Decimal(0)


def daily_series(
    events: Sequence[Event], policy: Policy, accounts: Sequence[str]
) -> list[AccountSeries]:
    """Each account's end-of-day exposure, overdue amount and effective limit."""
    engine = CreditEngine(policy, retention=dt.timedelta(days=36500))
    wanted = list(accounts)
    days: list[str] = []
    values: dict[str, list[tuple[Decimal, Decimal, Decimal]]] = {a: [] for a in wanted}
    currencies: dict[str, str] = {}

    def read(day: str) -> None:
        days.append(day)
        for account in wanted:
            snap = engine.snapshot(account)
            if snap is None:
                values[account].append((Decimal(0), Decimal(0), Decimal(0)))
                continue
            currencies[account] = str(snap.get("currency") or "")
            values[account].append(
                (
                    _decimal(snap["exposure"]["total"]),
                    _decimal(snap["overdue"]["amount"]),
                    _decimal(snap.get("effective_limit") or 0),
                )
            )

    current: str | None = None
    for number, event in enumerate(events, start=1):
        moment = parse_time(event.get("time"))
        day = moment.astimezone(dt.UTC).date().isoformat() if moment else current
        if current is not None and day is not None and day > current:
            read(current)
        current = day if current is None or (day and day > current) else current
        engine.process(event, {"file": "backtest", "line": number})
    if current is not None:
        read(current)

    return [
        AccountSeries(
            account=account,
            currency=currencies.get(account, ""),
            days=tuple(days),
            exposure=tuple(v[0] for v in values[account]),
            overdue=tuple(v[1] for v in values[account]),
            limit=tuple(v[2] for v in values[account]),
        )
        for account in wanted
    ]
