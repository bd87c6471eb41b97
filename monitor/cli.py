"""`credit-monitor`: the command line."""

from __future__ import annotations

import argparse
import sys

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
    sub.add_parser(
        "worker",
        help="run the streaming service (settings from CREDIT_MONITOR_* variables)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "evaluate":
            from monitor.evaluate import run

            run(args.events, _policy(args.policy), snapshots=args.snapshots,
                out=sys.stdout.buffer)
            return 0
        if args.command == "worker":
            from monitor.worker import run_worker

            return run_worker()
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
