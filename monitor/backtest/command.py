"""`credit-monitor backtest`: the report for a history, written to one HTML file."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import IO

from monitor.domain.policy import Policy

from .html import render_html
from .report import Report, build_report, builtin_policies


class BacktestError(Exception):
    """The report cannot be made; the message says why and what to do."""


def policies_for(
    paths: list[str] | None, in_use: Path | None
) -> list[tuple[str, Policy]]:
    """The policies to compare: the files given, or the policy in use (the
    worker's `CREDIT_MONITOR_POLICY_PATH` or the built-in one) beside a stricter and
    a looser one."""
    if paths:
        return [(Path(p).stem, Policy.from_file(p)) for p in paths]
    first = (
        (in_use.stem, Policy.from_file(in_use))
        if in_use
        else ("default", Policy.default_policy())
    )
    return [first, *builtin_policies()]


def _audit_decisions() -> tuple[list[dict[str, object]], Path | None, str]:
    from monitor.settings import SettingsError, load_settings
    from monitor.store.errors import StoreError

    from .audit import read_decisions

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise BacktestError(str(exc)) from exc
    shown = settings.pg_dsn_for_logs()
    try:
        decisions = asyncio.run(read_decisions(settings.pg_dsn.get_secret_value()))
    except StoreError as exc:
        hint = (
            "start it with `bash deploy/services.sh start`"
            if exc.retryable
            else "check that the worker has run with this CREDIT_MONITOR_PG_DSN (its "
            "audit sink creates the tables in the schema named by search_path)"
        )
        raise BacktestError(
            f"cannot read the audit log in PostgreSQL at {shown}: {exc}; {hint}"
        ) from exc
    if not decisions:
        raise BacktestError(
            f"the audit log at {shown} holds no decisions: replay the history through "
            "a worker first (`credit-monitor replay ... --wait`)"
        )
    return decisions, settings.policy_path, shown


def make_report(args: argparse.Namespace, err: IO[str]) -> Report:
    """Load the history and the decisions named by the arguments; build the report."""
    from monitor.replay import ReplayError, load_history

    try:
        history = load_history(
            args.dataset,
            limit_rule=args.limit_rule,
            risk_rule=args.risk_rule,
            seed=args.seed,
            customers=args.customers,
        )
    except ReplayError as exc:
        raise BacktestError(str(exc)) from exc
    events = list(history.events)

    decisions = None
    in_use = None
    if args.from_audit:
        decisions, in_use, shown = _audit_decisions()
        print(f"decisions: {len(decisions):,} from the audit log at {shown}", file=err)
    policies = policies_for(args.policy, in_use)
    report = build_report(
        history.name, events, policies, decisions=decisions, top=args.top
    )
    if args.from_audit and report.decisions != report.comparison[0]:
        print(
            "credit-monitor backtest: warning: the audit log's decisions differ from "
            f"the evaluator's under the policy {policies[0][0]!r}; was the worker run "
            "with another policy, another history, or has it not finished?",
            file=err,
        )
    return report


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    try:
        report = make_report(args, err)
    except BacktestError as exc:
        print(f"credit-monitor backtest: {exc}", file=err)
        return 2
    path = Path(args.out).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    print(f"Report: file://{path}", file=out)
    return 0
