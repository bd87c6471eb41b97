"""`python -m monitor.datasets {ibm|online-retail} --out FILE.jsonl`: write the events."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import ibm, online_retail
from .common import LimitRule, RiskRule, RuleError, write_jsonl


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.datasets",
        description="Convert a public data set in data/ to contract events (JSON lines).",
    )
    parser.add_argument("dataset", choices=("ibm", "online-retail"))
    parser.add_argument(
        "--out", required=True, help="JSON-lines file to write, - for stdout"
    )
    parser.add_argument(
        "--limit-rule",
        help="credit limit per customer: fixed:N, mean-invoice:K, median-invoice:K or "
        "max-invoice:K, optionally ,round=R,min=M (default: fixed:250 for ibm, "
        "median-invoice:4,round=100,min=200 for online-retail)",
    )
    parser.add_argument(
        "--risk-rule",
        default="late-share:0.1,0.3,0.6",
        help="risk class per customer: late-share:A,B,C (late-share bands) or fixed:X "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the invented payment delays, online-retail only (default: 0)",
    )
    parser.add_argument(
        "--payments",
        choices=("pooled", "per-customer"),
        default="pooled",
        help="online-retail only: draw each invented payment delay from all IBM "
        "DaysToSettle values, or pair each customer with one IBM customer and draw "
        "from theirs (default: %(default)s)",
    )
    parser.add_argument(
        "--customers", type=int, help="only the N customers seen first (default: all)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        risk_rule = RiskRule.parse(args.risk_rule)
        if args.dataset == "ibm":
            limit_rule = LimitRule.parse(args.limit_rule or "fixed:250")
            events = ibm.events(
                limit_rule=limit_rule, risk_rule=risk_rule, customers=args.customers
            )
        else:
            limit_rule = (
                LimitRule.parse(args.limit_rule)
                if args.limit_rule
                else online_retail.DEFAULT_LIMIT_RULE
            )
            events = online_retail.events(
                seed=args.seed,
                behaviour=args.payments,
                limit_rule=limit_rule,
                risk_rule=risk_rule,
                customers=args.customers,
            )
    except RuleError as exc:
        print(f"monitor.datasets: {exc}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    try:
        if args.out == "-":
            counts = write_jsonl(events, sys.stdout.buffer)
        else:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "wb") as out:
                counts = write_jsonl(events, out)
    except FileNotFoundError as exc:
        print(
            f"monitor.datasets: {exc.filename}: no such file; the data files belong in "
            "data/ at the top of the project (or set CREDIT_MONITOR_DATA_DIR)",
            file=sys.stderr,
        )
        return 2
    elapsed = time.perf_counter() - started

    total = sum(counts.values())
    for kind, count in sorted(counts.items()):
        print(f"{count:>9,}  {kind}", file=sys.stderr)
    print(f"{total:>9,}  events in {elapsed:.1f} s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
