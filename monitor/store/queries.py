"""Read helpers over the store, for the operator API and the command line.

Each takes an asyncpg pool (see `monitor.store.connection.create_pool`) and
returns frozen values; amounts are `Decimal` in the account's own currency.
Driver errors come out as `StoreUnavailable` (retry helps) or `StoreError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from monitor.store.errors import translate

__all__ = [
    "AuditEntry",
    "BlockedOrder",
    "Exposure",
    "HeldAccount",
    "StoreSummary",
    "StoredSnapshot",
    "accounts_on_hold",
    "audit_for_account",
    "blocked_orders",
    "get_snapshot",
    "summary",
]

BUCKETS = ("1-30", "31-60", "61-90", "90+")


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    account: str
    status: str | None
    as_of: dt.datetime | None
    data: Mapping[str, Any]
    """The whole `credit.account.snapshot` data, as published."""
    output_id: str
    kafka_partition: int
    kafka_offset: int
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class HeldAccount:
    account: str
    company: str
    customer_id: str
    reason_codes: tuple[str, ...]
    currency: str | None
    exposure_total: Decimal | None
    credit_limit: Decimal | None
    effective_limit: Decimal | None
    overdue_amount: Decimal | None
    oldest_overdue_days: int | None
    blocked_orders_count: int
    hold_since: dt.datetime | None
    """When the account last moved into HOLD, if the audit log has that event."""
    as_of: dt.datetime | None


@dataclass(frozen=True, slots=True)
class BlockedOrder:
    account: str
    company: str
    customer_id: str
    order_id: str | None
    amount: Decimal | None
    currency: str | None
    reason_codes: tuple[str, ...]
    blocked_at: dt.datetime | None
    account_status: str | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    output_id: str
    type: str
    account: str
    order_id: str | None
    status: str | None
    reason_codes: tuple[str, ...]
    cause_id: str | None
    event_time: dt.datetime | None
    recorded_at: dt.datetime
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Exposure:
    account: str
    status: str | None
    currency: str | None
    exposure_total: Decimal | None
    credit_limit: Decimal | None
    effective_limit: Decimal | None
    utilization: Decimal | None
    available_credit: Decimal | None


@dataclass(frozen=True, slots=True)
class StoreSummary:
    accounts: int
    accounts_by_status: Mapping[str, int]
    on_hold: int
    blocked_orders: int
    top_exposures: Sequence[Exposure]
    """The largest exposures, across currencies (each row says its own)."""
    overdue_by_bucket: Mapping[str, Mapping[str, Decimal]]
    """Overdue totals per currency, then per aging bucket (`1-30` ... `90+`)."""


async def get_snapshot(pool: asyncpg.Pool, account: str) -> StoredSnapshot | None:
    """The latest snapshot of `account` (`company/customer_id`), or None."""
    row = await _fetchrow(
        pool,
        "snapshot of an account",
        """SELECT account, status, as_of, data, output_id, kafka_partition,
                  kafka_offset, updated_at
             FROM account_snapshots WHERE account = $1""",
        account,
    )
    if row is None:
        return None
    return StoredSnapshot(**{**dict(row), "data": orjson.loads(row["data"])})


async def accounts_on_hold(pool: asyncpg.Pool) -> list[HeldAccount]:
    """Accounts on HOLD, the longest held first."""
    rows = await _fetch(
        pool,
        "accounts on hold",
        """SELECT account, company, customer_id, reason_codes, currency,
                  exposure_total, credit_limit, effective_limit, overdue_amount,
                  oldest_overdue_days, blocked_orders_count, hold_since, as_of
             FROM accounts_on_hold
            ORDER BY hold_since NULLS LAST, account""",
    )
    return [
        HeldAccount(**{**dict(r), "reason_codes": tuple(r["reason_codes"])})
        for r in rows
    ]


async def blocked_orders(
    pool: asyncpg.Pool, account: str | None = None
) -> list[BlockedOrder]:
    """Orders waiting on credit, the longest waiting first; all accounts or one."""
    rows = await _fetch(
        pool,
        "blocked orders",
        """SELECT account, company, customer_id, order_id, amount, currency,
                  reason_codes, blocked_at, account_status
             FROM blocked_orders
            WHERE $1::text IS NULL OR account = $1
            ORDER BY blocked_at NULLS LAST, account, order_id""",
        account,
    )
    return [
        BlockedOrder(**{**dict(r), "reason_codes": tuple(r["reason_codes"])})
        for r in rows
    ]


async def audit_for_account(
    pool: asyncpg.Pool, account: str, limit: int = 100
) -> list[AuditEntry]:
    """The account's decisions and status changes, newest first."""
    rows = await _fetch(
        pool,
        "audit log of an account",
        """SELECT output_id, type, account, order_id, status, reason_codes, cause_id,
                  event_time, recorded_at, data
             FROM audit_log
            WHERE account = $1
            ORDER BY event_time DESC NULLS LAST, kafka_offset DESC
            LIMIT $2""",
        account,
        limit,
    )
    return [
        AuditEntry(
            **{
                **dict(r),
                "reason_codes": tuple(r["reason_codes"]),
                "data": orjson.loads(r["data"]),
            }
        )
        for r in rows
    ]


async def summary(pool: asyncpg.Pool, top: int = 10) -> StoreSummary:
    """Accounts by status, holds, blocked orders, top exposures, overdue aging.

    Read in one repeatable-read transaction so the figures agree with each other.
    """
    try:
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            by_status = await conn.fetch(
                "SELECT coalesce(status, 'UNKNOWN') AS status, count(*) AS n "
                "FROM account_snapshots GROUP BY 1 ORDER BY 1"
            )
            blocked = await conn.fetchval("SELECT count(*) FROM blocked_orders")
            largest = await conn.fetch(
                """SELECT account, status, currency, exposure_total, credit_limit,
                          effective_limit, utilization, available_credit
                     FROM largest_exposures LIMIT $1""",
                top,
            )
            aging = await conn.fetch(
                "SELECT currency, bucket, amount FROM overdue_aging "
                "WHERE currency IS NOT NULL ORDER BY currency"
            )
    except Exception as exc:
        raise translate(exc, "reading the store summary") from exc

    counts = {r["status"]: r["n"] for r in by_status}
    overdue: dict[str, dict[str, Decimal]] = {}
    for r in aging:
        buckets = overdue.setdefault(r["currency"], dict.fromkeys(BUCKETS, Decimal(0)))
        if r["bucket"] in buckets and r["amount"] is not None:
            buckets[r["bucket"]] = r["amount"]
    return StoreSummary(
        accounts=sum(counts.values()),
        accounts_by_status=counts,
        on_hold=counts.get("HOLD", 0),
        blocked_orders=blocked,
        top_exposures=tuple(Exposure(**dict(r)) for r in largest),
        overdue_by_bucket=overdue,
    )


async def _fetch(
    pool: asyncpg.Pool, what: str, query: str, *args: Any
) -> list[asyncpg.Record]:
    try:
        return list(await pool.fetch(query, *args))
    except Exception as exc:
        raise translate(exc, f"reading {what}") from exc


async def _fetchrow(
    pool: asyncpg.Pool, what: str, query: str, *args: Any
) -> asyncpg.Record | None:
    try:
        return await pool.fetchrow(query, *args)
    except Exception as exc:
        raise translate(exc, f"reading {what}") from exc
