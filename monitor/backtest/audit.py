"""Decisions read back from the audit log in PostgreSQL, as output events.

Each `audit_log` row becomes the output event it was stored from, reduced to what the
backtest reads: `type`, `time` (the row's `event_time`), `subject` (its account),
`causationid` (its `cause_id`) and `data`. Rows come per account in the order the
service wrote them (Kafka partition and offset), the same order the evaluator
produces an account's outputs in.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from monitor.store.connection import connect
from monitor.store.errors import translate

from .figures import Decision
from .report import DECISION_TYPES

QUERY = """
SELECT output_id, type, account, cause_id, event_time, data
  FROM audit_log
 WHERE type = ANY($1::text[])
 ORDER BY account, kafka_partition, kafka_offset
"""


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def decision_of(row: Any) -> Decision:
    """The output event of one `audit_log` row."""
    data = row["data"]
    return {
        "id": row["output_id"],
        "type": row["type"],
        "time": _iso(row["event_time"]),
        "subject": row["account"],
        "causationid": row["cause_id"],
        "data": orjson.loads(data) if isinstance(data, (str, bytes)) else data,
    }


async def read_decisions(dsn: str) -> list[Decision]:
    """Every order decision and status change in the audit log of `dsn`."""
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(QUERY, sorted(DECISION_TYPES))
    except Exception as exc:
        raise translate(exc, "reading the audit log") from exc
    finally:
        await conn.close()
    return [decision_of(row) for row in rows]
