"""Output events, as read from Kafka, turned into rows of the store's tables.

Only what the store cannot do without is required: JSON, an `id`, a `data`
object and, for decisions and snapshots, the account. Everything else feeds
columns that are conveniences for queries (times, amounts, reason codes); when
one of those cannot be read it is stored as NULL and the event is kept whole in
the row's JSON, because an audit trail with a gap is worse than one with a
blank column.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, ClassVar, Literal

import orjson

__all__ = [
    "AuditRow",
    "MalformedRecord",
    "RejectedRow",
    "Row",
    "SnapshotRow",
    "TableName",
    "read_output",
]

TableName = Literal["audit_log", "account_snapshots", "rejected_events"]
TABLES: tuple[TableName, ...] = ("audit_log", "account_snapshots", "rejected_events")

_MONEY = re.compile(r"^-?\d{1,30}(\.\d{1,30})?$")
_INT32_MAX = 2**31 - 1


class MalformedRecord(ValueError):
    """A record on an output topic that is not an output event the store can keep."""


@dataclass(frozen=True, slots=True)
class _Row:
    table: ClassVar[TableName]

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """Column names, in the order of `values()`."""
        return tuple(f.name for f in fields(cls))

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True, slots=True)
class AuditRow(_Row):
    table: ClassVar[TableName] = "audit_log"

    output_id: str
    type: str
    source: str | None
    account: str
    company: str
    customer_id: str
    order_id: str | None
    status: str | None
    reason_codes: list[str]
    reasons: str  # JSON text
    cause_id: str | None
    event_time: dt.datetime | None
    data: str  # JSON text
    kafka_partition: int
    kafka_offset: int


@dataclass(frozen=True, slots=True)
class SnapshotRow(_Row):
    table: ClassVar[TableName] = "account_snapshots"

    account: str
    company: str
    customer_id: str
    status: str | None
    reason_codes: list[str]
    currency: str | None
    risk_class: str | None
    exposure_total: Decimal | None
    overdue_amount: Decimal | None
    oldest_overdue_days: int | None
    credit_limit: Decimal | None
    effective_limit: Decimal | None
    available_credit: Decimal | None
    utilization: Decimal | None
    blocked_orders_count: int
    as_of: dt.datetime | None
    output_id: str
    data: str  # JSON text
    kafka_partition: int
    kafka_offset: int

    def is_newer_than(self, other: SnapshotRow) -> bool:
        """True when this snapshot should replace `other` of the same account.

        Within a partition the offset decides: it is the order the service
        wrote them in. Across partitions (only after the topic was given more
        partitions) offsets say nothing, so the account's clock decides.
        The SQL upsert in `monitor.store.writer` applies the same rule.
        """
        if self.kafka_partition == other.kafka_partition:
            return self.kafka_offset > other.kafka_offset
        if self.as_of is None or other.as_of is None:
            return False
        return self.as_of >= other.as_of


@dataclass(frozen=True, slots=True)
class RejectedRow(_Row):
    table: ClassVar[TableName] = "rejected_events"

    output_id: str
    error: str
    event: str | None  # JSON text
    origin: str | None  # JSON text
    cause_id: str | None
    event_time: dt.datetime | None
    kafka_partition: int
    kafka_offset: int


Row = AuditRow | SnapshotRow | RejectedRow


def read_output(table: TableName, value: bytes, partition: int, offset: int) -> Row:
    """The row for one output record, or `MalformedRecord` saying what is wrong."""
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedRecord(f"not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise MalformedRecord(f"not a JSON object but {type(envelope).__name__}")
    if b"\\u0000" in value:
        # PostgreSQL text and jsonb cannot hold NUL; U+FFFD marks where one was.
        envelope = _without_nul(envelope)

    output_id = envelope.get("id")
    if not isinstance(output_id, str) or not output_id:
        raise MalformedRecord("no id")
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise MalformedRecord(f"output {output_id}: data is not an object")

    try:
        if table == "audit_log":
            return _audit_row(envelope, output_id, data, partition, offset)
        if table == "account_snapshots":
            return _snapshot_row(envelope, output_id, data, partition, offset)
        return _rejected_row(envelope, output_id, data, partition, offset)
    except orjson.JSONEncodeError as exc:
        # Lone surrogates and the like: JSON that PostgreSQL would refuse.
        raise MalformedRecord(f"output {output_id}: {exc}") from exc


def _audit_row(
    envelope: dict[str, Any],
    output_id: str,
    data: dict[str, Any],
    partition: int,
    offset: int,
) -> AuditRow:
    kind = envelope.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedRecord(f"output {output_id}: no type")
    account = _text(data.get("account")) or _text(envelope.get("subject"))
    if account is None:
        raise MalformedRecord(f"output {output_id}: no account in data or subject")
    company, customer_id = _account_parts(account, data)
    reasons = data.get("reasons")
    reasons = reasons if isinstance(reasons, list) else []
    return AuditRow(
        output_id=output_id,
        type=kind,
        source=_text(envelope.get("source")),
        account=account,
        company=company,
        customer_id=customer_id,
        order_id=_text(data.get("order_id")),
        status=_text(data.get("status")),
        reason_codes=_codes(reasons),
        reasons=_json(reasons),
        cause_id=_text(envelope.get("causationid")),
        event_time=_time(envelope.get("time")),
        data=_json(data),
        kafka_partition=partition,
        kafka_offset=offset,
    )


def _snapshot_row(
    envelope: dict[str, Any],
    output_id: str,
    data: dict[str, Any],
    partition: int,
    offset: int,
) -> SnapshotRow:
    company, customer_id = _text(data.get("company")), _text(data.get("customer_id"))
    account = _text(envelope.get("subject"))
    if account is None and company is not None and customer_id is not None:
        account = f"{company}/{customer_id}"
    if account is None:
        raise MalformedRecord(
            f"snapshot {output_id}: no subject and no company/customer_id"
        )
    company, customer_id = _account_parts(account, data)
    exposure = _object(data.get("exposure"))
    overdue = _object(data.get("overdue"))
    reasons = data.get("reasons")
    blocked = data.get("blocked_orders")
    return SnapshotRow(
        account=account,
        company=company,
        customer_id=customer_id,
        status=_text(data.get("status")),
        reason_codes=_codes(reasons if isinstance(reasons, list) else []),
        currency=_text(data.get("currency")),
        risk_class=_text(data.get("risk_class")),
        exposure_total=_money(exposure.get("total")),
        overdue_amount=_money(overdue.get("amount")),
        oldest_overdue_days=_int32(overdue.get("oldest_days")),
        credit_limit=_money(data.get("credit_limit")),
        effective_limit=_money(data.get("effective_limit")),
        available_credit=_money(data.get("available_credit")),
        utilization=_money(data.get("utilization")),
        blocked_orders_count=len(blocked) if isinstance(blocked, list) else 0,
        as_of=_time(data.get("as_of")) or _time(envelope.get("time")),
        output_id=output_id,
        data=_json(data),
        kafka_partition=partition,
        kafka_offset=offset,
    )


def _rejected_row(
    envelope: dict[str, Any],
    output_id: str,
    data: dict[str, Any],
    partition: int,
    offset: int,
) -> RejectedRow:
    error = data.get("error")
    event = data.get("event")
    origin = data.get("origin")
    return RejectedRow(
        output_id=output_id,
        error=error if isinstance(error, str) else _json(error),
        event=None if event is None else _json(event),
        origin=None if origin is None else _json(origin),
        cause_id=_text(envelope.get("causationid")),
        event_time=_time(envelope.get("time")),
        kafka_partition=partition,
        kafka_offset=offset,
    )


# ---- lenient readers: a value that does not fit becomes None ------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _account_parts(account: str, data: dict[str, Any]) -> tuple[str, str]:
    """(company, customer_id) from data, else from the `company/customer_id` key."""
    company, sep, customer = account.partition("/")
    if not sep:
        company, customer = "main", account
    return _text(data.get("company")) or company, _text(
        data.get("customer_id")
    ) or customer


def _codes(reasons: list[Any]) -> list[str]:
    return [
        r["code"]
        for r in reasons
        if isinstance(r, dict) and isinstance(r.get("code"), str)
    ]


def _money(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if isinstance(value, str) and _MONEY.match(value):
        return Decimal(value)
    return None


def _int32(value: Any) -> int | None:
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and abs(value) <= _INT32_MAX
    ):
        return value
    return None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # The contract's times are UTC with Z; a bare one can only mean UTC.
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value
