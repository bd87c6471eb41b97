"""`credit-monitor summary`: what the audit store in PostgreSQL says now.

The latest snapshot of every account gives accounts by status, holds, blocked
orders, the largest exposures and overdue aging (`monitor.store.queries`); the
audit log adds what happened on the way there, which is most of the story after
the replay of a finished history, where every invoice ends up paid.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import IO, Any
from urllib.parse import urlsplit

import asyncpg

from monitor.settings import Settings
from monitor.store import queries
from monitor.store.connection import create_pool
from monitor.store.errors import StoreError, translate

STATUSES = ("OK", "WARNING", "HOLD")


class SummaryUnavailable(Exception):
    """The store cannot be read; the message says what to do."""


@dataclass(frozen=True, slots=True)
class AuditHistory:
    """What the audit log holds: every decision and status change ever stored."""

    outputs_by_type: Mapping[str, int]
    accounts_ever_on_hold: int
    hold_reasons: Mapping[str, int]
    """Reason code -> accounts that were on HOLD for it at least once."""
    rejected_events: int
    first_event: dt.datetime | None
    latest_clock: dt.datetime | None
    """The latest `as_of` among the account snapshots: how far the monitor has got."""


@dataclass(frozen=True, slots=True)
class Summary:
    store: queries.StoreSummary
    on_hold: Sequence[queries.HeldAccount]
    blocked: Sequence[queries.BlockedOrder]
    history: AuditHistory


async def read_summary(dsn: str, top: int = 10) -> Summary:
    """The store summary, holds, blocked orders and audit history, from one pool."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = await queries.summary(pool, top=top)
        on_hold = await queries.accounts_on_hold(pool)
        blocked = await queries.blocked_orders(pool)
        history = await _audit_history(pool)
    finally:
        await pool.close()
    return Summary(store, on_hold, blocked, history)


async def _audit_history(pool: asyncpg.Pool) -> AuditHistory:
    # TODO: move into monitor.store.queries with the other read helpers once the
    # operator API wants the same figures.
    try:
        async with pool.acquire() as conn:
            by_type = await conn.fetch(
                "SELECT type, count(*) AS n FROM audit_log GROUP BY type ORDER BY type"
            )
            ever = await conn.fetchval(
                "SELECT count(DISTINCT account) FROM audit_log "
                "WHERE type = 'credit.account.status_changed' AND status = 'HOLD'"
            )
            reasons = await conn.fetch(
                """SELECT code, count(DISTINCT account) AS n
                     FROM audit_log, unnest(reason_codes) AS code
                    WHERE type = 'credit.account.status_changed' AND status = 'HOLD'
                    GROUP BY code ORDER BY n DESC, code"""
            )
            rejected = await conn.fetchval("SELECT count(*) FROM rejected_events")
            first = await conn.fetchval("SELECT min(event_time) FROM audit_log")
            latest = await conn.fetchval("SELECT max(as_of) FROM account_snapshots")
    except Exception as exc:
        raise translate(exc, "reading the audit history") from exc
    return AuditHistory(
        outputs_by_type={r["type"]: r["n"] for r in by_type},
        accounts_ever_on_hold=ever,
        hold_reasons={r["code"]: r["n"] for r in reasons},
        rejected_events=rejected,
        first_event=first,
        latest_clock=latest,
    )


def load(settings: Settings, top: int) -> Summary:
    """`read_summary` for the configured store, with errors a person can act on."""
    dsn = settings.pg_dsn.get_secret_value()
    shown = settings.pg_dsn_for_logs()
    try:
        return asyncio.run(read_summary(dsn, top))
    except StoreError as exc:
        detail = _masked(str(exc), settings)
        if isinstance(exc.__cause__, asyncpg.UndefinedTableError):
            raise SummaryUnavailable(
                f"the audit tables are missing in PostgreSQL at {shown}: start "
                "`credit-monitor worker` once with this CREDIT_MONITOR_PG_DSN (its audit "
                "sink applies the migrations), and make sure the schema named by "
                "search_path in the DSN exists"
            ) from exc
        if exc.retryable:
            raise SummaryUnavailable(
                f"cannot reach PostgreSQL at {shown} (CREDIT_MONITOR_PG_DSN): {detail}; "
                "start it with `bash deploy/services.sh start`"
            ) from exc
        raise SummaryUnavailable(
            f"PostgreSQL at {shown} refused the summary: {detail}"
        ) from exc


def _masked(text: str, settings: Settings) -> str:
    """`text` without the DSN's password, should a driver message ever quote it."""
    secret = urlsplit(settings.pg_dsn.get_secret_value()).password
    return text.replace(secret, "***") if secret else text


# ---- text -------------------------------------------------------------------------


def _money(amount: Decimal | None) -> str:
    return "-" if amount is None else f"{amount:,.2f}"


def _percent(ratio: Decimal | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.0f}%"


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_text(summary: Summary, *, top: int, source: str) -> str:
    """The summary as a few short sections of plain text."""
    s, h = summary.store, summary.history
    lines = [f"Credit monitor summary ({source})"]
    if s.accounts == 0:
        lines += [
            "",
            "No accounts yet: the audit store is empty. Start `credit-monitor worker`,",
            "replay some events (`credit-monitor replay ibm`), then look again.",
        ]
        return "\n".join(lines) + "\n"
    lines.append(f"Monitor clock: {_when(h.latest_clock)} (latest account as_of)")

    # Accounts by status.
    lines += ["", f"Accounts by status ({s.accounts:,} accounts)"]
    others = sorted(set(s.accounts_by_status) - set(STATUSES))
    for status in (*STATUSES, *others):
        count = s.accounts_by_status.get(status, 0)
        share = count / s.accounts
        lines.append(f"  {status:<8} {count:>7,}  {share:>4.0%}")

    # Holds.
    lines += ["", f"Accounts on hold: {len(summary.on_hold):,}"]
    for held in summary.on_hold[:top]:
        days = (
            f", {held.oldest_overdue_days} days overdue"
            if held.oldest_overdue_days
            else ""
        )
        lines.append(
            f"  {held.account:<22} {', '.join(held.reason_codes) or '-':<28} "
            f"exposure {_money(held.exposure_total)} of {_money(held.effective_limit)} "
            f"{held.currency or ''}{days}"
        )
    if len(summary.on_hold) > top:
        lines.append(f"  ... and {len(summary.on_hold) - top:,} more")

    # Blocked orders.
    blocked = summary.blocked
    total_by_currency: dict[str, Decimal] = {}
    for order in blocked:
        key = order.currency or "?"
        total_by_currency[key] = total_by_currency.get(key, Decimal(0)) + (
            order.amount or Decimal(0)
        )
    totals = ", ".join(f"{_money(v)} {k}" for k, v in sorted(total_by_currency.items()))
    lines += [
        "",
        f"Blocked orders: {len(blocked):,}" + (f" ({totals})" if totals else ""),
    ]
    largest = sorted(blocked, key=lambda o: o.amount or Decimal(0), reverse=True)
    for order in largest[: min(top, 5)]:
        lines.append(
            f"  {order.account:<22} {order.order_id or '-':<14} "
            f"{_money(order.amount):>12} {order.currency or '':<3}  "
            f"{', '.join(order.reason_codes)}"
        )

    # Largest exposures.
    lines += ["", "Largest exposures"]
    if not s.top_exposures:
        lines.append("  none: no account has an exposure above zero")
    else:
        lines.append(
            f"  {'account':<22} {'exposure':>12}     {'limit':>12} {'used':>6}  status"
        )
        for e in s.top_exposures:
            lines.append(
                f"  {e.account:<22} {_money(e.exposure_total):>12} "
                f"{e.currency or '':<3} {_money(e.effective_limit):>12} "
                f"{_percent(e.utilization):>6}  {e.status or '-'}"
            )

    # Overdue aging.
    lines += ["", "Overdue aging"]
    overdue = {
        currency: buckets
        for currency, buckets in s.overdue_by_bucket.items()
        if any(amount for amount in buckets.values())
    }
    if not overdue:
        lines.append("  nothing overdue")
    else:
        lines.append("  " + " " * 8 + "".join(f"{b:>12}" for b in queries.BUCKETS))
        for currency, buckets in sorted(overdue.items()):
            lines.append(
                f"  {currency:<8}"
                + "".join(f"{_money(buckets.get(b)):>12}" for b in queries.BUCKETS)
            )

    # History.
    by_type = h.outputs_by_type
    changes = by_type.get("credit.account.status_changed", 0)
    lines += [
        "",
        "History in the audit log"
        + (f" (since {_when(h.first_event)})" if h.first_event else ""),
        f"  status changes          {changes:>7,}",
        (
            "  order decisions         "
            f"{by_type.get('credit.order.approved', 0):>7,} approved, "
            f"{by_type.get('credit.order.blocked', 0):,} blocked, "
            f"{by_type.get('credit.order.released', 0):,} released"
        ),
        f"  accounts ever on HOLD   {h.accounts_ever_on_hold:>7,} of {s.accounts:,}"
        + (
            "  ("
            + ", ".join(f"{code} {n:,}" for code, n in h.hold_reasons.items())
            + ")"
            if h.hold_reasons
            else ""
        ),
        f"  rejected events         {h.rejected_events:>7,}",
    ]
    return "\n".join(lines) + "\n"


# ---- JSON -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def as_json(summary: Summary) -> dict[str, Any]:
    """The summary as JSON-ready values: amounts as decimal strings, times in UTC."""
    s = summary.store
    return {
        "accounts": s.accounts,
        "accounts_by_status": dict(s.accounts_by_status),
        "on_hold": [_plain(asdict(h)) for h in summary.on_hold],
        "blocked_orders": [_plain(asdict(o)) for o in summary.blocked],
        "top_exposures": [_plain(asdict(e)) for e in s.top_exposures],
        "overdue_by_bucket": _plain(s.overdue_by_bucket),
        "history": _plain(asdict(summary.history)),
    }


def run(settings: Settings, *, top: int, as_json_output: bool, out: IO[str]) -> int:
    """`credit-monitor summary`: print the summary of the configured store."""
    summary = load(settings, top)
    if as_json_output:
        out.write(json.dumps(as_json(summary), indent=2) + "\n")
    else:
        out.write(render_text(summary, top=top, source=settings.pg_dsn_for_logs()))
    return 0
