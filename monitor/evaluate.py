"""The offline evaluator (CONTRACT 9): events file in, output events out, in file order."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from monitor.domain.engine import DEFAULT_RETENTION, CreditEngine
from monitor.domain.policy import Policy


def dumps(event: dict[str, Any]) -> bytes:
    """One output event as a JSON line; key order is the envelope's, so bytes are stable."""
    return orjson.dumps(event) + b"\n"


def evaluate_lines(
    lines: Iterable[bytes], policy: Policy, *, snapshots: bool = False, name: str = "-",
    retention: dt.timedelta = DEFAULT_RETENTION,
) -> Iterator[dict[str, Any]]:
    """Every output event of the events in `lines`, in order; then snapshots if asked."""
    engine = CreditEngine(policy, retention=retention)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        yield from engine.process(line, {"file": name, "line": number}, number)
    if snapshots:
        yield from engine.snapshots()


def run(path: str, policy: Policy, *, snapshots: bool, out: IO[bytes],
        retention: dt.timedelta = DEFAULT_RETENTION) -> None:
    source = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        write = out.write
        for event in evaluate_lines(source, policy, snapshots=snapshots, name=path,
                                    retention=retention):
            write(dumps(event))
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    out.flush()
