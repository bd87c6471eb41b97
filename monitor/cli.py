"""`credit-monitor`: the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable

from monitor.domain.engine import DEFAULT_RETENTION
from monitor.domain.policy import Policy, PolicyError


def _policy(path: str | None) -> Policy:
    return Policy.from_file(path) if path else Policy.default_policy()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credit-monitor", description="Real-time customer-credit monitor."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser(
        "evaluate",
        help="run the credit rules over a file of events and print every output event",
    )
    ev.add_argument("events", help="JSON-lines file of input events, or - for stdin")
    ev.add_argument("--policy", help="policy TOML file (default: the built-in policy)")
    ev.add_argument(
        "--snapshots", action="store_true",
        help="after the decisions, print one snapshot per account",
    )
    ev.add_argument(
        "--retention-days", type=_whole_number(0), default=DEFAULT_RETENTION.days,
        metavar="DAYS",
        help="event-time window in which a redelivered event is recognised and finished "
             "documents are kept (default %(default)s, like CREDIT_MONITOR_RETENTION_DAYS)",
    )
    sub.add_parser(
        "worker",
        help="run the streaming service (settings from CREDIT_MONITOR_* variables)",
    )
    _add_replay(sub)
    _add_summary(sub)
    _add_backtest(sub)
    from monitor.api.command import add_commands

    add_commands(sub)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _whole_number(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least`."""
    def parse(text: str) -> int:
        value = int(text) if text.strip().isdigit() else -1
        if value < least:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of at least {least}, got {text}")
        return value
    return parse


_positive_int = _whole_number(1)


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser(
        "replay",
        help="publish a data set or a file of events to Kafka, in event-time order",
        description="Publish a history to the monitor's input topic as contract "
        "events (settings from CREDIT_MONITOR_* variables). Events the monitor has "
        "seen within CREDIT_MONITOR_RETENTION_DAYS of event time change nothing.",
    )
    rp.add_argument(
        "dataset", metavar="DATASET",
        help="ibm, online-retail (from data/, with a daily clock tick), or a "
        "JSON-lines file of contract events in time order",
    )
    rp.add_argument(
        "--speed", type=_positive_float, metavar="X",
        help="seconds of event time per wall-clock second, e.g. 86400 for a day a "
        "second (default: as fast as possible)",
    )
    rp.add_argument(
        "--limit-rule", metavar="R",
        help="credit limits: fixed:N, mean-invoice:K, median-invoice:K or "
        "max-invoice:K, optionally ,round=R,min=M (default: fixed:250 for ibm, "
        "median-invoice:4,round=100,min=200 for online-retail)",
    )
    rp.add_argument(
        "--risk-rule", metavar="R",
        help="risk classes: late-share:A,B,C or fixed:X (default: late-share:0.1,0.3,0.6)",
    )
    rp.add_argument(
        "--seed", type=int, metavar="N",
        help="seed of the invented payment delays, online-retail only (default: 0)",
    )
    rp.add_argument(
        "--customers", type=_positive_int, metavar="N",
        help="only the N customers seen first (default: all)",
    )
    rp.add_argument(
        "--wait", action="store_true",
        help="then wait until the worker has processed every event and the audit "
        "store in PostgreSQL is up to date",
    )
    rp.add_argument(
        "--wait-timeout", type=_positive_float, default=600.0, metavar="SECONDS",
        help="give up waiting after this long (default: %(default).0f)",
    )
    rp.add_argument("--quiet", action="store_true", help="no progress output")


def _add_summary(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sm = sub.add_parser(
        "summary",
        help="print accounts by status, holds, blocked orders, exposures and overdue "
        "aging from PostgreSQL",
    )
    sm.add_argument(
        "--top", type=_positive_int, default=10, metavar="N",
        help="how many exposures and held accounts to list (default: %(default)s)",
    )
    sm.add_argument("--json", action="store_true", help="print JSON instead of text")


def _add_backtest(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bt = sub.add_parser(
        "backtest",
        help="write an HTML report of how the credit rules did on a history",
        description="Early signs of late payment, blocked and released orders, the "
        "riskiest accounts' exposure over time, and policies side by side, as one "
        "HTML file. Decisions come from the offline evaluator, or with --from-audit "
        "from the live service's audit log in PostgreSQL (CREDIT_MONITOR_PG_DSN).",
    )
    bt.add_argument(
        "dataset", metavar="DATASET",
        help="ibm, online-retail (from data/, as `replay` converts them), or a "
        "JSON-lines file of contract events in time order",
    )
    bt.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    bt.add_argument(
        "--from-audit", action="store_true",
        help="take the decisions from the audit log the worker wrote (settings from "
        "CREDIT_MONITOR_* variables) instead of evaluating",
    )
    bt.add_argument(
        "--policy", action="append", metavar="P.toml",
        help="a policy to compare; repeat for up to three, the first is the policy in "
        "use (default: the worker's policy or the built-in one, beside a stricter "
        "and a looser one)",
    )
    bt.add_argument(
        "--top", type=_positive_int, default=5, metavar="N",
        help="how many of the riskiest accounts to chart (default: %(default)s)",
    )
    bt.add_argument("--limit-rule", metavar="R", help="as for replay")
    bt.add_argument("--risk-rule", metavar="R", help="as for replay")
    bt.add_argument("--seed", type=int, metavar="N", help="as for replay")
    bt.add_argument(
        "--customers", type=_positive_int, metavar="N",
        help="only the N customers seen first, as for replay (default: all)",
    )


def _run_replay(args: argparse.Namespace) -> int:
    from monitor.kafka_config import KafkaUnavailable
    from monitor.replay import MonitorBehind, ReplayError, run
    from monitor.settings import SettingsError, load_settings

    try:
        return run(args, load_settings())
    except (SettingsError, ReplayError, KafkaUnavailable) as exc:
        print(f"credit-monitor replay: {exc}", file=sys.stderr)
        return 2
    except MonitorBehind as exc:
        print(f"credit-monitor replay: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("credit-monitor replay: interrupted; replaying again is harmless",
              file=sys.stderr)
        return 130


def _run_summary(args: argparse.Namespace) -> int:
    from monitor.settings import SettingsError, load_settings
    from monitor.summary import SummaryUnavailable, run

    try:
        return run(load_settings(), top=args.top, as_json_output=args.json,
                   out=sys.stdout)
    except (SettingsError, SummaryUnavailable) as exc:
        print(f"credit-monitor summary: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "evaluate":
            from monitor.evaluate import run

            run(args.events, _policy(args.policy), snapshots=args.snapshots,
                out=sys.stdout.buffer,
                retention=dt.timedelta(days=args.retention_days))
            return 0
        if args.command == "worker":
            from monitor.worker import run_worker

            return run_worker()
        if args.command == "replay":
            return _run_replay(args)
        if args.command == "summary":
            return _run_summary(args)
        if args.command == "backtest":
            from monitor.backtest.command import run as run_backtest

            return run_backtest(args, sys.stdout, sys.stderr)
        if args.command in ("api", "account", "accounts", "orders"):
            from monitor.api.command import run as run_api

            return run_api(args)
    except PolicyError as exc:
        print(f"credit-monitor: bad policy: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"credit-monitor: {exc.filename}: no such file", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
