"""What the domain decides, before an adapter puts it in an envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["OK", "WARNING", "HOLD"]

# Blocks that lift by themselves once the account has room again (CONTRACT 7).
AUTO_RELEASABLE = frozenset({"LIMIT_EXCEEDED", "ACCOUNT_ON_HOLD", "FX_RATE_MISSING"})


@dataclass(frozen=True, slots=True)
class Decision:
    """One output of the domain: its event type and payload."""

    type: str
    data: dict[str, Any]


def reason(code: str, detail: str, **values: Any) -> dict[str, Any]:
    """A reason in the contract's shape: a code, a sentence and the numbers behind it."""
    return {"code": code, "detail": detail, "values": values}


def codes(reasons: list[dict[str, Any]]) -> tuple[str, ...]:
    if not reasons:
        return ()
    if len(reasons) == 1:
        return (reasons[0]["code"],)
    return tuple(sorted(r["code"] for r in reasons))


class EventRejected(Exception):
    """An input event that cannot be applied; the message tells a person what to fix."""


class DuplicateDocument(EventRejected):
    pass


class AllocationExceedsPayment(EventRejected):
    pass


class AllocationOfReversedPayment(EventRejected):
    pass


class OrderNotBlocked(EventRejected):
    pass


class UnknownDocument(EventRejected):
    pass
