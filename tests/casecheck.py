"""Checks the output of a scenario case against its expectations.

The rules are those of tests/cases/shared/README.md: order decisions and rejections match
as a multiset; the expected status changes appear in order among those that came out;
snapshot fields match by dotted name, amounts compared as decimals.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

CASE_DIRS = [Path(__file__).parent / "cases" / "shared", Path(__file__).parent / "cases" / "extra"]
ORDER_TYPES = {"credit.order.approved", "credit.order.blocked", "credit.order.released",
               "credit.event.rejected"}


def load_cases() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for d in CASE_DIRS for p in sorted(d.glob("*.json"))]


def _codes(reasons: list[Any] | None) -> tuple[str, ...]:
    return tuple(sorted(r["code"] if isinstance(r, dict) else r for r in reasons or []))


def _decision_key(type_: str, fields: dict[str, Any], by: Any) -> tuple[Any, ...]:
    if type_ == "credit.event.rejected":
        return (type_, None, None, None)
    reasons = _codes(fields.get("reasons")) if type_ == "credit.order.blocked" else None
    return (type_, fields.get("order_id"), reasons, by)


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, str) and isinstance(want, str):
        try:
            return Decimal(got) == Decimal(want)
        except InvalidOperation:
            return got == want
    return bool(got == want)


def _dig(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return "<missing>"
        doc = doc[part]
    return doc


def problems(case: dict[str, Any], outputs: list[dict[str, Any]]) -> list[str]:
    """Every way the outputs fall short of the case; empty when the case holds."""
    expect = case["expect"]
    want, got = Counter(), Counter()
    want_status, got_status, snapshots = [], [], {}
    for e in expect["decisions"]:
        if e["type"] in ORDER_TYPES:
            want[_decision_key(e["type"], e, e.get("by"))] += 1
        else:
            want_status.append((e["status"], _codes(e.get("reasons"))))
    pinned_by = {k[1] for k in want if k[0] == "credit.order.released" and k[3] is not None}
    for o in outputs:
        t, d = o["type"], o["data"]
        if t in ORDER_TYPES:
            by = d.get("by") if t == "credit.order.released" and d.get("order_id") in pinned_by else None
            got[_decision_key(t, d, by)] += 1
        elif t == "credit.account.status_changed":
            got_status.append((d["status"], _codes(d["reasons"])))
        elif t == "credit.account.snapshot":
            snapshots[f"{d['company']}/{d['customer_id']}"] = d

    found = []
    if got != want:
        found.append(f"decisions: missing {dict(want - got)}, extra {dict(got - want)}")
    remaining = iter(got_status)
    if not all(any(s == w for s in remaining) for w in want_status):
        found.append(f"status changes {got_status} do not contain {want_status} in order")
    for account, fields in expect["snapshots"].items():
        snap = snapshots.get(account)
        if snap is None:
            found.append(f"no snapshot for {account}")
            continue
        for name, value in fields.items():
            actual = _dig(snap, name)
            if name == "blocked_orders":
                actual, value = sorted(o["order_id"] for o in actual), sorted(value)
            elif name == "reasons":
                actual, value = list(_codes(actual)), sorted(value)
            if not _same(actual, value):
                found.append(f"{account} {name}: got {actual!r}, want {value!r}")
    return found


def events_jsonl(case: dict[str, Any]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in case["events"]).encode()
